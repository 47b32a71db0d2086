"""One input row -> what the router takes (text, step type, domains, budget), and the fixed output schema.

Every check here raises ValueError with a reason; the chunk scorer catches it and marks that row bad in the
``error`` column, so a malformed row is reported at its index instead of failing (or silently leaving) the run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from aco_bert.data.messages import messages_to_text
from aco_bert.data.text import clean_text_error, is_blank
from aco_bert.score.config import ScoreConfig
from aco_bert.score.sources import InputError, TableSource

ID_CANDIDATES = ("prompt_id", "id")
FIXED_COLUMNS = ("row", "step_type", "tier", "model", "p_success", "exp_cost", "min_tier", "policy", "n_tokens",
                 "truncated", "reasons", "error")
# --cascade: the tiers whose answers were judged, the tier whose answer was kept (null: stopped on `cascade_error`),
# its model, the verifier's P(correct) of that answer, the number of runs, why the replay stopped short.
CASCADE_COLUMNS = ("cascade_tiers", "cascade_tier", "cascade_model", "cascade_p_correct", "cascade_runs",
                   "cascade_error")


def is_missing(v: Any) -> bool:
    """None or NaN: how csv/parquet/pandas spell an absent cell."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def row_text(text: Any, messages: Any, text_col: str, msg_col: str) -> str:
    """The row's routed text: the text column when it holds text, else the chat messages' text. Text that is not
    valid Unicode or has nothing visible (:func:`aco_bert.data.text.clean_text_error`) is refused, not routed."""
    if isinstance(text, str) and not is_blank(text):
        why = clean_text_error(text)
        if why is not None:
            raise ValueError(f"column {text_col!r}: {why}")
        return text
    if not is_missing(messages) and not (isinstance(messages, str) and not messages.strip()):
        out = messages_to_text(messages)
        why = clean_text_error(out)
        if why is not None:
            raise ValueError(f"column {msg_col!r}: {why}")
        return out
    if isinstance(text, str):
        raise ValueError(f"empty text in column {text_col!r}" + ("" if not text.strip() else
                                                                  " (only zero-width, BOM or control characters)"))
    if is_missing(text):
        raise ValueError(f"no text: neither column {text_col!r} nor {msg_col!r} has a value")
    raise ValueError(f"column {text_col!r} holds a {type(text).__name__}, not text")


def row_step_type(v: Any, allowed: frozenset[str]) -> str | None:
    if is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    if not isinstance(v, str) or v.strip() not in allowed:
        raise ValueError(f"unknown step_type {v!r}; expected one of {sorted(allowed)}")
    return v.strip()


def row_domain(v: Any) -> str | list[str] | None:
    """One domain, a comma-separated list (csv) or a list of domains."""
    if is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, str):
        return [d.strip() for d in v.split(",") if d.strip()] if "," in v else v.strip()
    if isinstance(v, (list, tuple)) and all(isinstance(d, str) for d in v):
        return list(v)
    raise ValueError(f"domain {v!r} is not a string or a list of strings")


def row_budget(v: Any) -> float | None:
    if is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"budget {v!r} is not a number") from None
    if math.isnan(b) or b < 0:
        raise ValueError(f"budget {v!r} must be a number >= 0")
    return b


# --- which input columns a run reads ---------------------------------------------------------------------------


@dataclass
class Columns:
    """Which input columns a run reads (resolved once, shipped to workers, part of the resume identity)."""

    text: str
    messages: str
    step_type: str | None
    id: str | None
    domain: str | None
    budget: str | None
    responses: list[str] | None = None  # --cascade, wide: one answer column per tier
    responses_long: str | None = None  # --cascade, long: one column of {model or tier: answer}
    traces: list[str] | None = None  # --cascade --evaluate: one column per tier of that run's trace mapping

    @property
    def cascade(self) -> bool:
        return self.responses is not None or self.responses_long is not None

    def wanted(self) -> list[str]:
        extra = [*(self.responses or []), self.responses_long, *(self.traces or [])]
        return [c for c in (self.text, self.messages, self.step_type, self.id, self.domain, self.budget, *extra) if c]


def resolve_columns(cfg: ScoreConfig, src: TableSource, models: Sequence[str] = ()) -> Columns:
    """The run's columns, checked against what the input declares (a named column that is absent is an error
    for the whole input, not for every row); with ``--cascade`` also where each tier of ``models`` answered."""
    has_text, has_msgs = src.has_column(cfg.text_column), src.has_column(cfg.messages_column)
    if has_text is False and has_msgs is False:
        raise InputError(f"{src.location}: no text column {cfg.text_column!r} and no messages column "
                         f"{cfg.messages_column!r}; columns are {src.columns} (use --text-column / --messages-column)")
    for flag, col in (("--id-column", cfg.id_column), ("--domain-column", cfg.domain_column),
                      ("--budget-column", cfg.budget_column)):
        if col is not None and src.has_column(col) is False:
            raise InputError(f"{src.location}: {flag} {col!r} is not a column; columns are {src.columns}")
    id_col = cfg.id_column
    known = src.columns if src.columns is not None else src.first_keys
    if id_col is None and known is not None:
        id_col = next((c for c in ID_CANDIDATES if c in known), None)
    step = cfg.step_type_column if src.has_column(cfg.step_type_column) is not False else None
    cols = Columns(cfg.text_column, cfg.messages_column, step, id_col, cfg.domain_column, cfg.budget_column)
    if cfg.cascade:
        from aco_bert.score.cascade import resolve_responses

        wide, long = resolve_responses(cfg.response_columns, models, known, src.location)
        cols.responses, cols.responses_long = wide, long
    return cols


def first_record_check(src: TableSource, cols: Columns) -> None:
    """jsonl declares no columns: if its first parseable record has neither text nor messages, every row would be
    bad -- say so at once instead of marking the whole file."""
    keys = src.first_keys
    if src.kind == "jsonl" and keys is not None and cols.text not in keys and cols.messages not in keys:
        raise InputError(f"{src.location}: the first record has neither {cols.text!r} nor {cols.messages!r} "
                         f"(it has {keys}; use --text-column / --messages-column)")


# --- the output table ----------------------------------------------------------------------------------------


def out_id_name(id_column: str | None) -> str | None:
    """The id's output column name (prefixed when it would clash with a fixed column)."""
    if id_column is None:
        return None
    return f"input_{id_column}" if id_column in FIXED_COLUMNS + CASCADE_COLUMNS else id_column


def output_schema(models: Sequence[str], id_column: str | None = None, cascade: bool = False):
    """The fixed output schema: row, [id], step_type, decision, per-tier ``p:<model>`` / ``cost:<model>``, error,
    then with ``cascade`` the :data:`CASCADE_COLUMNS`.

    Fixed (not inferred per chunk) so every part file and the assembled output agree even when a chunk is all
    errors."""
    import pyarrow as pa

    fields = [pa.field("row", pa.int64(), nullable=False)]
    if id_column is not None:
        fields.append(pa.field(out_id_name(id_column), pa.string()))
    fields += [pa.field("step_type", pa.string()), pa.field("tier", pa.int32()), pa.field("model", pa.string()),
               pa.field("p_success", pa.float64()), pa.field("exp_cost", pa.float64())]
    fields += [pa.field(f"p:{m}", pa.float64()) for m in models]
    fields += [pa.field(f"cost:{m}", pa.float64()) for m in models]
    fields += [pa.field("min_tier", pa.int32()), pa.field("policy", pa.string()), pa.field("n_tokens", pa.int32()),
               pa.field("truncated", pa.bool_()), pa.field("reasons", pa.list_(pa.string())),
               pa.field("error", pa.string())]
    if cascade:
        fields += [pa.field("cascade_tiers", pa.list_(pa.int32())), pa.field("cascade_tier", pa.int32()),
                   pa.field("cascade_model", pa.string()), pa.field("cascade_p_correct", pa.float64()),
                   pa.field("cascade_runs", pa.int32()), pa.field("cascade_error", pa.string())]
    return pa.schema(fields, metadata={"aco_bert.tiers": json.dumps(list(models))})


def finite(v: float) -> float | None:
    """A float for the output, None (null) for inf/NaN (jsonl must stay valid JSON)."""
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class ChunkResult:
    """One scored chunk: its rows in :func:`output_schema`, in input order, and its bad rows."""

    index: int
    start: int
    n: int
    table: Any  # pyarrow.Table in output_schema
    errors: list[tuple[int, str]]  # (input row, reason) for every bad row of the chunk
    n_errors: int = 0
    cascade_errors: list[tuple[int, str]] = field(default_factory=list)  # routed rows whose replay stopped short
