"""What a scoring run is given (:class:`ScoreConfig`, also its command line) and what it reports back.

The config is the whole run: the CLI flags are generated from its fields (:func:`aco_bert.config.run_verb`), and
the fields marked (resume) make up the identity that decides whether an earlier run's part files may be reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ON_ERROR = ("mark", "stop")
FORMATS = ("parquet", "jsonl")
INPUT_FORMATS = ("jsonl", "csv", "parquet")
MAX_REPORTED_ERRORS = 20  # printed; every bad row is still marked in the output's `error` column


class ScoreError(RuntimeError):
    """A run that stopped: ``--on-error stop`` hit a bad row (``row`` is its 0-based input index)."""

    def __init__(self, message: str, row: int | None = None):
        self.row = row
        super().__init__(message)


@dataclass
class ScoreConfig:
    """Everything a scoring run depends on; the fields marked (resume) decide whether old parts may be reused."""

    bundle: str  # router bundle folder (from python -m aco_bert.export)
    input: str  # jsonl/csv/parquet file, a folder of them, a `datasets` folder, or a Hub dataset name
    output: str  # output file: .parquet (default) or .jsonl
    text_column: str = "prompt"  # (resume)
    messages_column: str = "messages"  # (resume) chat messages: [{role, content}], used when the text is absent
    step_type_column: str = "step_type"  # (resume) optional; one of aco_bert.data.schema.STEP_TYPES when set
    id_column: str | None = None  # (resume) copied to the output; default: prompt_id or id when the input has one
    domain_column: str | None = None  # (resume) optional domain(s) per row -> the spec's safety floors
    budget_column: str | None = None  # (resume) optional per-row USD budget
    split: str | None = None  # split of a `datasets` folder / Hub dataset
    hf_config: str | None = None  # config name of a Hub dataset
    input_format: str | None = None  # jsonl | csv | parquet when the suffix does not say
    chunk_size: int = 2048  # (resume) rows per chunk = per part file = the memory bound
    batch_size: int = 32  # (resume) prompts per forward pass
    workers: int = 0  # worker processes, each loading the bundle once (0: score in this process)
    threads: int | None = None  # ONNX Runtime intra-op threads per process (default: cores / workers)
    on_error: str = "mark"  # mark: bad rows get an `error` and no decision | stop: stop at the first bad row
    evaluate: bool = False  # (resume) input is a canonical outcome table: score each prompt once, replay it
    cascade: bool = False  # (resume) replay the bundle's response-aware cascade on each tier's recorded answer
    response_columns: str | None = None  # (resume) --cascade answers: "{model}|response"-like template or a dict column
    format: str | None = None  # (resume) parquet | jsonl; default from the output suffix
    int8: bool | None = None  # (resume) true/false force the int8/fp32 model; None: int8 when the bundle has it
    fresh: bool = False  # discard earlier progress for this output
    keep_parts: bool = False  # keep <output>.parts/ after assembling
    progress: bool = True  # tqdm bar on stderr
    plot: str | None = None  # --evaluate: PNG path (default <output stem>.cost_quality.png)
    report_json: str | None = None  # --evaluate: JSON report path (default <output stem>.eval.json)
    engine: str = "local"  # local: this machine's processes (--workers) | ray: Ray Data actors (pip install '.[ray]')
    ray_address: str | None = None  # --engine ray: None starts a local Ray; "auto" or ray://host:10001 joins a cluster
    ray_actors: int | None = None  # --engine ray: actors, each loading the bundle once (default: CPUs / threads)
    ray_block_chunks: int = 4  # --engine ray: at most this many chunks per Ray task (fewer rather than idle actors)
    # --evaluate on a table with tokens or turns but no cost_usd: the rule deriving it (aco_bert.data.costs), e.g.
    # "{prices: litellm}"; without one, the bundle spec's tier prices derive it when they are set
    cost: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        for name in ("chunk_size", "batch_size", "workers", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"{name} must be an integer, got {v!r}")
        if self.chunk_size < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("chunk_size and batch_size must be >= 1, workers >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.input_format is not None and self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.response_columns is not None:
            if not self.cascade:
                raise ValueError("response_columns is only read with cascade (--cascade true)")
            if self.evaluate:
                raise ValueError("with evaluate the answers are the outcome table's `response` column: drop "
                                 "response_columns")
            from aco_bert.score.cascade import check_response_columns

            check_response_columns(self.response_columns)
        self._check_engine()
        fmt = self.format or output_format(self.output)
        if fmt not in FORMATS:
            raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
        self.format = fmt


    def _check_engine(self) -> None:
        from aco_bert.score.engines.registry import ENGINES

        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {sorted(ENGINES)}, got {self.engine!r}")
        for name in ("ray_actors", "ray_block_chunks"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.engine != "ray":
            if self.ray_address is not None or self.ray_actors is not None:
                raise ValueError("ray_address / ray_actors are read only with --engine ray")
            return
        if self.evaluate:
            raise ValueError("--engine ray scores files, not --evaluate runs (one row per unique prompt of an "
                             "outcome table): use --engine local for --evaluate")
        if self.workers:
            raise ValueError("--workers are local processes; with --engine ray set --ray-actors instead")


def output_format(path: str | Path) -> str:
    """parquet unless the output's name ends in .jsonl/.ndjson/.json."""
    return "jsonl" if str(path).lower().endswith((".jsonl", ".ndjson", ".json")) else "parquet"


@dataclass
class ScoreSummary:
    """What a finished run did: row and error counts, chunks resumed, and the --evaluate report when asked."""

    output: str
    format: str
    n_rows: int
    n_errors: int
    errors: list[tuple[int, str]]  # first MAX_REPORTED_ERRORS (row, reason)
    n_chunks: int
    chunks_resumed: int
    seconds: float
    blank_lines: int = 0
    n_cascade_errors: int = 0  # --cascade: routed rows whose replay stopped on a missing answer (`cascade_error`)
    cascade_errors: list[tuple[int, str]] = field(default_factory=list)  # first MAX_REPORTED_ERRORS
    evaluation: Any = None  # EvalReport when --evaluate
    plot: str | None = None
    report_json: str | None = None

    @property
    def n_scored(self) -> int:
        return self.n_rows - self.n_errors

    def text(self) -> str:
        lines = [f"scored {self.n_rows} rows ({self.n_scored} routed, {self.n_errors} marked bad) in "
                 f"{self.n_chunks} chunks ({self.chunks_resumed} resumed) in {self.seconds:.1f} s -> {self.output}"]
        if self.blank_lines:
            lines.append(f"note: {self.blank_lines} blank line(s) in the jsonl input are not records and were not "
                         "scored")
        for row, reason in self.errors:
            lines.append(f"bad row {row}: {reason}")
        if self.n_errors > len(self.errors):
            lines.append(f"... and {self.n_errors - len(self.errors)} more bad rows (see the `error` column)")
        if self.n_cascade_errors:
            lines.append(f"cascade: {self.n_cascade_errors} routed row(s) stopped short (no answer kept; see the "
                         "`cascade_error` column)")
            lines += [f"cascade row {row}: {reason}" for row, reason in self.cascade_errors]
        return "\n".join(lines)
