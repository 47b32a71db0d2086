"""Real outcome data: canonical table, adapters for published formats, named datasets."""

from aco_bert.data.registry import DATA_DIR_ENV, DATASETS, load_outcomes, resolve_data_dir
from aco_bert.data.schema import (
    CANONICAL_COLUMNS,
    DataError,
    OutcomeMatrix,
    OutcomeTable,
    validate_table,
)

__all__ = [
    "CANONICAL_COLUMNS", "DATASETS", "DATA_DIR_ENV", "DataError", "OutcomeMatrix", "OutcomeTable",
    "load_outcomes", "resolve_data_dir", "validate_table",
]
