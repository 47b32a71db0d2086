"""`python -m aco_bert.score`: batch-score a dataset with a router bundle -- what would routing have done and cost?

Why it is built the way it is:

* **Bounded memory.** The input is read in fixed-size chunks (:mod:`aco_bert.score.sources`) and each scored chunk is
  written straight to a part file, so memory depends on ``--chunk-size``, not on the input.
* **Resumable.** Next to the output, ``<output>.parts/`` holds one part per finished chunk and ``progress.json``
  with the input's content fingerprint and the run's settings. Rerunning the same command skips finished chunks;
  a changed input or changed settings start afresh. Parts are assembled in chunk order at the end, and chunk ``k``
  is always input rows ``[k*C, (k+1)*C)`` scored in the same batches, so a resumed run writes byte-for-byte the
  output of an uninterrupted one.
* **No lost rows.** Output rows = input rows, in input order, each carrying its input ``row`` index. A bad row
  (empty text, unparseable messages or JSON, unknown step type, anything the router refuses) is marked in the
  ``error`` column and counted, or, with ``--on-error stop``, the run stops naming the row.
* **Optional worker processes** (``--workers N``), each loading the bundle once; results do not depend on N.
* ``--evaluate``: the input is a canonical outcome table (:mod:`aco_bert.data.schema`); each unique prompt is
  scored once (output: one row per prompt) and the routed decisions are replayed against the real outcomes next
  to always-frontier, the zero router and the oracle (:mod:`aco_bert.evaluation.replay`), with the cost-quality plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from aco_bert.data.schema import STEP_TYPES
from aco_bert.types import BundleError, Decision, RoutingInputError
from aco_bert.score.sources import Chunk, InputError, TableSource, open_table

ON_ERROR = ("mark", "stop")
FORMATS = ("parquet", "jsonl")
PROGRESS_VERSION = 1
MAX_REPORTED_ERRORS = 20  # printed; every bad row is still marked in the output's `error` column
ID_CANDIDATES = ("prompt_id", "id")


class ScoreError(RuntimeError):
    """A run that stopped: ``--on-error stop`` hit a bad row (``row`` is its 0-based input index)."""

    def __init__(self, message: str, row: int | None = None):
        self.row = row
        super().__init__(message)


@dataclass
class ScoreConfig:
    """Everything a scoring run depends on; the fields marked (resume) decide whether old parts may be reused."""

    bundle: str
    input: str
    output: str
    text_column: str = "prompt"  # (resume)
    messages_column: str = "messages"  # (resume) chat messages: [{role, content}], used when the text is absent
    step_type_column: str = "step_type"  # (resume) optional; one of aco_bert.data.schema.STEP_TYPES when set
    id_column: str | None = None  # (resume) copied to the output; default: prompt_id or id when the input has one
    domain_column: str | None = None  # (resume) optional domain(s) per row -> the spec's safety floors
    budget_column: str | None = None  # (resume) optional per-row USD budget
    split: str | None = None  # split of a `datasets` folder / Hub dataset
    hf_config: str | None = None
    input_format: str | None = None  # jsonl | csv | parquet when the suffix does not say
    chunk_size: int = 2048  # (resume) rows per chunk = per part file = the memory bound
    batch_size: int = 32  # (resume) prompts per forward pass
    workers: int = 0  # 0: score in this process
    threads: int | None = None  # ONNX Runtime intra-op threads per process (default: cores / workers)
    on_error: str = "mark"  # mark | stop
    evaluate: bool = False  # (resume)
    format: str | None = None  # (resume) parquet | jsonl; default from the output suffix
    int8: bool | None = None  # (resume) None: the bundle's int8 model when present
    fresh: bool = False  # discard earlier progress
    keep_parts: bool = False
    progress: bool = True  # tqdm bar on stderr
    plot: str | None = None  # --evaluate: PNG path (default <output stem>.cost_quality.png)
    report_json: str | None = None  # --evaluate: JSON report path (default <output stem>.eval.json)

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.chunk_size < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("chunk_size and batch_size must be >= 1, workers >= 0")
        fmt = self.format or output_format(self.output)
        if fmt not in FORMATS:
            raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
        self.format = fmt


def output_format(path: str | Path) -> str:
    """parquet unless the output's name ends in .jsonl/.ndjson/.json."""
    return "jsonl" if str(path).lower().endswith((".jsonl", ".ndjson", ".json")) else "parquet"


@dataclass
class ScoreSummary:
    output: str
    format: str
    n_rows: int
    n_errors: int
    errors: list[tuple[int, str]]  # first MAX_REPORTED_ERRORS (row, reason)
    n_chunks: int
    chunks_resumed: int
    seconds: float
    blank_lines: int = 0
    evaluation: Any = None  # EvalReport when --evaluate
    plot: str | None = None
    report_json: str | None = None

    @property
    def n_scored(self) -> int:
        return self.n_rows - self.n_errors

    @property
    def rows_per_s(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")

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
        return "\n".join(lines)


# --- turning a row into what the router takes ----------------------------------------------------------------


def messages_to_text(messages: Any) -> str:
    """The routed text of a chat: every message's text content, in order, joined by blank lines.

    Roles are dropped so a one-message chat routes exactly like its bare prompt (what the router was trained on);
    head+tail truncation keeps the start (system/task) and the latest turns. ``messages`` may be a JSON string
    (csv). Content may be a string, ``None`` (tool-call turns) or a list of ``{"type": "text", "text": ...}`` parts.
    Raises ValueError naming what is wrong."""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise ValueError(f"messages is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list of {{role, content}}, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is an empty list")
    texts: list[str] = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {j} is a {type(m).__name__}, not an object with role and content")
        if not isinstance(m.get("role"), str):
            raise ValueError(f"message {j} has no string role")
        c = m.get("content")
        if c is None:
            continue
        if isinstance(c, str):
            texts.append(c)
        elif isinstance(c, (list, tuple)):
            parts = []
            for k, part in enumerate(c):
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict) and part.get("type", "text") != "text":
                    continue  # images, audio...: not routable text
                elif isinstance(part, dict) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
                else:
                    raise ValueError(f"message {j} content part {k} has no text")
            texts.append("\n".join(p for p in parts if p))
        else:
            raise ValueError(f"message {j} content is a {type(c).__name__}, not text")
    # Same joining as the HTTP service (aco_bert.serve.schemas.messages_text): a chat routes alike in both.
    text = "\n\n".join(t for t in texts if t)
    if not text.strip():
        raise ValueError("messages hold no text")
    return text


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _row_text(text: Any, messages: Any, text_col: str, msg_col: str) -> str:
    if isinstance(text, str) and text.strip():
        return text
    if not _is_missing(messages) and not (isinstance(messages, str) and not messages.strip()):
        return messages_to_text(messages)
    if isinstance(text, str):
        raise ValueError(f"empty text in column {text_col!r}")
    if _is_missing(text):
        raise ValueError(f"no text: neither column {text_col!r} nor {msg_col!r} has a value")
    raise ValueError(f"column {text_col!r} holds a {type(text).__name__}, not text")


def _row_step_type(v: Any, allowed: frozenset[str]) -> str | None:
    if _is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    if not isinstance(v, str) or v.strip() not in allowed:
        raise ValueError(f"unknown step_type {v!r}; expected one of {sorted(allowed)}")
    return v.strip()


def _row_domain(v: Any) -> str | list[str] | None:
    if _is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, str):
        return [d.strip() for d in v.split(",") if d.strip()] if "," in v else v.strip()
    if isinstance(v, (list, tuple)) and all(isinstance(d, str) for d in v):
        return list(v)
    raise ValueError(f"domain {v!r} is not a string or a list of strings")


def _row_budget(v: Any) -> float | None:
    if _is_missing(v) or (isinstance(v, str) and not v.strip()):
        return None
    try:
        b = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"budget {v!r} is not a number") from None
    if math.isnan(b) or b < 0:
        raise ValueError(f"budget {v!r} must be a number >= 0")
    return b


# --- the output table ----------------------------------------------------------------------------------------


def _out_id_name(id_column: str | None) -> str | None:
    if id_column is None:
        return None
    return f"input_{id_column}" if id_column in _FIXED_COLUMNS else id_column


_FIXED_COLUMNS = ("row", "step_type", "tier", "model", "p_success", "exp_cost", "min_tier", "policy", "n_tokens",
                  "truncated", "reasons", "error")


def output_schema(models: Sequence[str], id_column: str | None = None):
    """The fixed output schema: row, [id], step_type, decision, per-tier ``p:<model>`` / ``cost:<model>``, error.

    Fixed (not inferred per chunk) so every part file and the assembled output agree even when a chunk is all
    errors."""
    import pyarrow as pa

    fields = [pa.field("row", pa.int64(), nullable=False)]
    if id_column is not None:
        fields.append(pa.field(_out_id_name(id_column), pa.string()))
    fields += [pa.field("step_type", pa.string()), pa.field("tier", pa.int32()), pa.field("model", pa.string()),
               pa.field("p_success", pa.float64()), pa.field("exp_cost", pa.float64())]
    fields += [pa.field(f"p:{m}", pa.float64()) for m in models]
    fields += [pa.field(f"cost:{m}", pa.float64()) for m in models]
    fields += [pa.field("min_tier", pa.int32()), pa.field("policy", pa.string()), pa.field("n_tokens", pa.int32()),
               pa.field("truncated", pa.bool_()), pa.field("reasons", pa.list_(pa.string())),
               pa.field("error", pa.string())]
    return pa.schema(fields, metadata={"aco_bert.tiers": json.dumps(list(models))})


def _finite(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class ChunkResult:
    index: int
    start: int
    n: int
    table: Any  # pyarrow.Table in output_schema
    errors: list[tuple[int, str]]  # (input row, reason) for every bad row of the chunk
    n_errors: int = 0


@dataclass
class _Columns:
    """Which input columns a run reads (resolved once, shipped to workers)."""

    text: str
    messages: str
    step_type: str | None
    id: str | None
    domain: str | None
    budget: str | None

    def wanted(self) -> list[str]:
        return [c for c in (self.text, self.messages, self.step_type, self.id, self.domain, self.budget) if c]


def score_chunk(router: Any, chunk: Chunk, cols: _Columns, batch_size: int = 32) -> ChunkResult:
    """Score one chunk: validate every row, route the valid ones in batches of ``batch_size`` (prompts of similar
    length together), and return the chunk's rows, in input order, in :func:`output_schema` with bad rows marked.
    Deterministic in the chunk alone."""
    import pyarrow as pa

    assert chunk.columns is not None, "a skipped chunk cannot be scored"
    c = chunk.columns
    n = chunk.n
    step_allowed = frozenset(STEP_TYPES) | frozenset(getattr(router.spec, "step_type_min", {}) or {})
    err: dict[int, str] = dict(chunk.bad)
    texts: list[str | None] = [None] * n
    steps: list[str | None] = [None] * n
    doms: list[Any] = [None] * n
    buds: list[float | None] = [None] * n
    for i in range(n):
        if i in err:
            continue
        try:
            texts[i] = _row_text(c[cols.text][i], c[cols.messages][i], cols.text, cols.messages)
            if cols.step_type:
                steps[i] = _row_step_type(c[cols.step_type][i], step_allowed)
            if cols.domain:
                doms[i] = _row_domain(c[cols.domain][i])
            if cols.budget:
                buds[i] = _row_budget(c[cols.budget][i])
        except ValueError as e:
            err[i] = str(e)
    # Batches of similar length waste little on padding (the encoder's cost is batch x longest prompt). Sorting
    # by characters (a tokenizer-free proxy for tokens), ties by position, keeps every chunk's batches fixed.
    ok = sorted((i for i in range(n) if i not in err), key=lambda i: (len(texts[i] or ""), i))
    dec: dict[int, Decision] = {}
    for b in range(0, len(ok), batch_size):
        idx = ok[b:b + batch_size]
        kw: dict[str, Any] = {"step_types": [steps[i] for i in idx]}
        if cols.domain:
            kw["domains"] = [doms[i] for i in idx]
        if cols.budget:
            kw["budgets"] = [buds[i] for i in idx]
        try:
            out = router.route_batch([texts[i] for i in idx], **kw)
        except RoutingInputError:
            # One refused row must not sink its batch: route one by one to find and mark it.
            out = []
            for i in idx:
                try:
                    out.append(router.route(texts[i], step_type=steps[i], domain=doms[i], budget=buds[i]))
                except RoutingInputError as e:
                    err[i] = str(e)
                    out.append(None)
        for i, d in zip(idx, out):
            if d is not None:
                dec[i] = d
    models = [t.model for t in router.spec.tiers]
    T = len(models)
    rows = list(range(chunk.start, chunk.start + n))
    data: dict[str, list[Any]] = {"row": rows}
    if cols.id:
        data[_out_id_name(cols.id)] = [None if _is_missing(v) else str(v) for v in c[cols.id]]
    raw_steps = c[cols.step_type] if cols.step_type else [None] * n
    data["step_type"] = [steps[i] if i in dec else (raw_steps[i] if isinstance(raw_steps[i], str) and
                                                     raw_steps[i].strip() else None) for i in range(n)]
    data["tier"] = [dec[i].tier if i in dec else None for i in range(n)]
    data["model"] = [dec[i].model if i in dec else None for i in range(n)]
    data["p_success"] = [_finite(dec[i].p_success) if i in dec else None for i in range(n)]
    data["exp_cost"] = [_finite(dec[i].cost) if i in dec else None for i in range(n)]
    for t, m in enumerate(models):
        data[f"p:{m}"] = [_finite(dec[i].probs[t]) if i in dec else None for i in range(n)]
    for t, m in enumerate(models):
        data[f"cost:{m}"] = [_finite(dec[i].expected_cost[t]) if i in dec else None for i in range(n)]
    data["min_tier"] = [dec[i].min_tier if i in dec else None for i in range(n)]
    data["policy"] = [dec[i].policy if i in dec else None for i in range(n)]
    data["n_tokens"] = [dec[i].n_tokens if i in dec else None for i in range(n)]
    data["truncated"] = [bool(dec[i].truncated) if i in dec else None for i in range(n)]
    data["reasons"] = [list(dec[i].reasons) if i in dec else None for i in range(n)]
    data["error"] = [err.get(i) for i in range(n)]
    for i in dec:
        if len(dec[i].probs) != T:
            raise RuntimeError(f"router returned {len(dec[i].probs)} probabilities for {T} tiers")
    table = pa.Table.from_pydict(data, schema=output_schema(models, cols.id))
    errors = sorted((chunk.start + i, r) for i, r in err.items())
    return ChunkResult(chunk.index, chunk.start, n, table, errors, len(errors))


def score_texts(router: Any, prompts: Sequence[Any], *, step_types: Sequence[Any] | None = None,
                ids: Sequence[Any] | None = None, domains: Sequence[Any] | None = None,
                budgets: Sequence[Any] | None = None, batch_size: int = 32):
    """In-memory scoring (no files, no resume): a pandas DataFrame in :func:`output_schema`, one row per prompt,
    bad prompts marked in ``error``. Same validation and batching as the file scorer, for callers that already
    hold their prompts (the demo, notebooks)."""
    n = len(prompts)
    cols = {"prompt": list(prompts), "messages": [None] * n}
    names = _Columns("prompt", "messages", None, None, None, None)
    for key, vals in (("step_type", step_types), ("id", ids), ("domain", domains), ("budget", budgets)):
        if vals is not None:
            if len(vals) != n:
                raise ValueError(f"{key} has {len(vals)} values for {n} prompts")
            cols[key] = list(vals)
            setattr(names, key, key)
    table = score_chunk(router, Chunk(0, 0, n, cols), names, batch_size).table
    return table.to_pandas()


# --- part files, progress, assembly --------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonl_bytes(table) -> bytes:
    out = []
    for rec in table.to_pylist():
        out.append(json.dumps(rec, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode("utf-8") if out else b""


def _write_part(path: Path, table, fmt: str) -> None:
    if fmt == "jsonl":
        _atomic_write_bytes(path, _jsonl_bytes(table))
        return
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class _Progress:
    """``progress.json`` in the parts folder: the run's identity and which chunks are done (atomically updated)."""

    def __init__(self, parts: Path, identity: dict[str, Any], fresh: bool, log: Callable[[str], None]):
        self.parts, self.path = parts, parts / "progress.json"
        self.identity = identity
        self.done: dict[int, dict[str, Any]] = {}
        if parts.exists() and not fresh:
            try:
                old = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old and old.get("identity") == identity:
                for k, v in old.get("done", {}).items():
                    if (parts / v["file"]).exists():
                        self.done[int(k)] = v
                if self.done:
                    log(f"resuming: {len(self.done)} chunk(s) already scored in {parts}")
            elif old is not None:
                why = [k for k in identity if old.get("identity", {}).get(k) != identity[k]]
                log(f"earlier progress in {parts} is for a different {'/'.join(why) or 'run'}; starting afresh")
        if parts.exists() and not self.done:
            shutil.rmtree(parts)
        parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def part_name(self, index: int, fmt: str) -> str:
        return f"part-{index:06d}.{'jsonl' if fmt == 'jsonl' else 'parquet'}"

    def mark(self, res: ChunkResult, file: str) -> None:
        self.done[res.index] = {"file": file, "start": res.start, "rows": res.n, "n_errors": res.n_errors,
                                "errors": [list(e) for e in res.errors[:MAX_REPORTED_ERRORS]]}
        self._save()

    def _save(self) -> None:
        body = {"version": PROGRESS_VERSION, "identity": self.identity,
                "done": {str(k): v for k, v in sorted(self.done.items())}}
        _atomic_write_bytes(self.path, json.dumps(body, indent=1).encode())


def _assemble(parts: Path, names: list[str], output: Path, fmt: str, schema) -> None:
    """Concatenate the parts in chunk order into ``output`` (written to a temp name, then renamed)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    if fmt == "jsonl":
        with open(tmp, "wb") as out:
            for name in names:
                with open(parts / name, "rb") as f:
                    shutil.copyfileobj(f, out)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for name in names:
                w.write_table(pq.read_table(parts / name, schema=schema))
    os.replace(tmp, output)


# --- running -------------------------------------------------------------------------------------------------


def load_router(bundle: str, int8: bool | None = None, threads: int | None = None):
    """The bundle's :class:`aco_bert.runtime.router.Router` (manifest verified); ``threads``: ONNX Runtime intra-op
    threads (None: the runtime's default)."""
    from aco_bert.runtime import Router

    return Router.load(bundle, int8=int8, threads=threads)


def _bundle_id(router: Any, bundle: str) -> str:
    m = Path(bundle) / "manifest.json"
    if m.exists():
        return hashlib.sha256(m.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(getattr(router, "manifest", {}), sort_keys=True, default=str).encode()
                          ).hexdigest()


_WORKER_ROUTER: Any = None


def _worker_init(loader: Callable[..., Any], bundle: str, int8: bool | None, threads: int | None) -> None:
    global _WORKER_ROUTER
    _WORKER_ROUTER = loader(bundle, int8, threads)


def _worker_score(chunk: Chunk, cols: _Columns, batch_size: int) -> ChunkResult:
    return score_chunk(_WORKER_ROUTER, chunk, cols, batch_size)


def _resolve_columns(cfg: ScoreConfig, src: TableSource) -> _Columns:
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
    return _Columns(cfg.text_column, cfg.messages_column, step, id_col, cfg.domain_column, cfg.budget_column)


def _first_record_check(src: TableSource, cols: _Columns) -> None:
    """jsonl declares no columns: if its first parseable record has neither text nor messages, every row would be
    bad -- say so at once instead of marking the whole file."""
    keys = src.first_keys
    if src.kind == "jsonl" and keys is not None and cols.text not in keys and cols.messages not in keys:
        raise InputError(f"{src.location}: the first record has neither {cols.text!r} nor {cols.messages!r} "
                         f"(it has {keys}; use --text-column / --messages-column)")


def score_dataset(cfg: ScoreConfig, *, router: Any = None, loader: Callable[..., Any] = load_router,
                  on_chunk: Callable[[ChunkResult], None] | None = None,
                  log: Callable[[str], None] | None = None) -> ScoreSummary:
    """Score ``cfg.input`` into ``cfg.output`` (see the module doc). ``router`` reuses a loaded router in this
    process; ``loader(bundle, int8, threads)`` builds one (in each worker too). ``on_chunk`` is called after each
    chunk is saved (progress hooks; an exception there interrupts the run, which can then be resumed)."""
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    if router is None:
        router = loader(cfg.bundle, cfg.int8, 1 if cfg.workers > 0 else cfg.threads)  # with workers: spec only
    models = [t.model for t in router.spec.tiers]
    if cfg.evaluate:
        from aco_bert.score.sources import memory_source

        table = read_outcome_table(cfg)
        matrix = table.matrix(_models_in_table(table, models, cfg.input))
        src = memory_source({"prompt_id": matrix.prompt_ids, "prompt": matrix.prompts,
                             "step_type": _meta_col(matrix, "step_type"), "domain": _meta_domains(matrix)},
                            fingerprint=open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config,
                                                   format=cfg.input_format).fingerprint + ":evaluate")
        cols = _Columns("prompt", cfg.messages_column, "step_type", "prompt_id", "domain", None)
    else:
        src = open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config, format=cfg.input_format)
        cols = _resolve_columns(cfg, src)
        _first_record_check(src, cols)
    output = Path(cfg.output)
    parts = output.with_name(output.name + ".parts")
    identity = {"input": src.fingerprint, "bundle": _bundle_id(router, cfg.bundle), "models": models,
                "columns": dataclasses.asdict(cols), "chunk_size": cfg.chunk_size, "batch_size": cfg.batch_size,
                "format": cfg.format, "int8": cfg.int8, "evaluate": cfg.evaluate, "split": src.split}
    prog = _Progress(parts, identity, cfg.fresh, log)
    schema = output_schema(models, cols.id)
    resumed = set(prog.done)
    bar = _bar(cfg, src)
    n_rows, n_chunks = 0, 0

    def save(res: ChunkResult) -> None:
        if cfg.on_error == "stop" and res.errors:
            row, reason = res.errors[0]
            raise ScoreError(f"stopped at bad row {row}: {reason} ({len(prog.done)} chunk(s) saved in {parts})",
                             row=row)
        name = prog.part_name(res.index, cfg.format)  # type: ignore[arg-type]
        _write_part(parts / name, res.table, cfg.format)  # type: ignore[arg-type]
        prog.mark(res, name)
        bar.update(res.n)
        if on_chunk is not None:
            on_chunk(res)

    def chunks() -> Iterator[Chunk]:
        nonlocal n_rows, n_chunks
        for ch in src.iter_chunks(cfg.chunk_size, cols.wanted(), skip=resumed):
            n_rows += ch.n
            n_chunks += 1
            if ch.columns is None:
                saved = prog.done[ch.index]
                if saved["rows"] != ch.n or saved["start"] != ch.start:
                    raise InputError(f"chunk {ch.index} of {src.location} changed size since the saved run; "
                                     "rerun with --fresh")
                if cfg.on_error == "stop" and saved["errors"]:  # saved by an earlier --on-error mark run
                    row, reason = saved["errors"][0]
                    raise ScoreError(f"stopped at bad row {row}: {reason}", row=row)
                bar.update(ch.n)
                continue
            yield ch

    try:
        if cfg.workers <= 0:
            for ch in chunks():
                save(score_chunk(router, ch, cols, cfg.batch_size))
        else:
            _run_workers(cfg, loader, chunks(), cols, save)
    finally:
        bar.close()

    names = [prog.done[k]["file"] for k in range(n_chunks)]
    total = sum(prog.done[k]["rows"] for k in range(n_chunks))
    if total != n_rows:  # pragma: no cover - guarded by construction; a loud check because rows must never vanish
        raise RuntimeError(f"parts hold {total} rows but the input has {n_rows}")
    _assemble(parts, names, output, cfg.format, schema)  # type: ignore[arg-type]
    n_err = sum(prog.done[k]["n_errors"] for k in range(n_chunks))
    errs = [tuple(e) for k in range(n_chunks) for e in prog.done[k]["errors"]][:MAX_REPORTED_ERRORS]
    if not cfg.keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    summary = ScoreSummary(str(output), cfg.format, n_rows, n_err, errs, n_chunks,  # type: ignore[arg-type]
                           len(resumed & set(range(n_chunks))), time.perf_counter() - t0,
                           blank_lines=src.blank_lines)
    if cfg.evaluate:
        _evaluate_into(summary, cfg, matrix, router)
    return summary


def _bar(cfg: ScoreConfig, src: TableSource):
    from tqdm.auto import tqdm

    return tqdm(total=src.n_rows if src.n_rows is not None else src.n_rows_estimate, unit="row",
                desc="scoring", disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True)


def _run_workers(cfg: ScoreConfig, loader, chunks: Iterator[Chunk], cols: _Columns,
                 save: Callable[[ChunkResult], None]) -> None:
    """Score chunks in ``cfg.workers`` processes with at most 2 chunks per worker in flight (bounded memory)."""
    import multiprocessing as mp

    window = 2 * cfg.workers
    # N processes each with ONNX Runtime's default (all cores) would oversubscribe: share the cores out.
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
    ctx = mp.get_context("spawn")  # no fork of a process holding ONNX Runtime threads
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(loader, cfg.bundle, cfg.int8, threads)) as ex:
        pending: set[Future] = set()
        try:
            for ch in chunks:
                pending.add(ex.submit(_worker_score, ch, cols, cfg.batch_size))
                while len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        save(f.result())
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    save(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


# --- --evaluate ----------------------------------------------------------------------------------------------


def read_outcome_table(cfg: ScoreConfig):
    """The input as a validated canonical outcome table (an outcome table fits in memory: it is what the
    evaluator replays)."""
    import pandas as pd

    from aco_bert.data.schema import CANONICAL_COLUMNS, rows_to_table

    src = open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config, format=cfg.input_format)
    frames = []
    for ch in src.iter_chunks(max(cfg.chunk_size, 8192), list(CANONICAL_COLUMNS)):
        if ch.bad:
            i, why = min(ch.bad.items())
            from aco_bert.data.schema import DataError

            raise DataError(why, file=src.location, row=ch.start + i)
        frames.append(pd.DataFrame(ch.columns))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CANONICAL_COLUMNS))
    present = [c for c in CANONICAL_COLUMNS if src.has_column(c) is not False and df[c].notna().any()]
    return rows_to_table(df[present], file=src.location, name=Path(src.location).stem)


def _models_in_table(table, models: list[str], where: str) -> list[str]:
    have = set(table.models)
    missing = [m for m in models if m not in have]
    if missing:
        from aco_bert.data.schema import DataError

        raise DataError(f"--evaluate: the bundle's tier model(s) {missing} have no outcomes in the input "
                        f"(it has {sorted(have)})", file=where)
    return models


def _meta_col(matrix, col: str) -> list[Any]:
    if col not in matrix.meta.columns:
        return [None] * matrix.n_prompts
    return [None if _is_missing(v) or v is None or str(v) == "<NA>" else str(v) for v in matrix.meta[col].tolist()]


def _meta_domains(matrix) -> list[list[str] | None]:
    """A prompt's domains for the spec's floors: its source/category/domain values (as the evaluator reads them)."""
    from aco_bert.evaluate import DOMAIN_COLUMNS

    cols = [c for c in DOMAIN_COLUMNS if c in matrix.meta.columns]
    vals = [_meta_col(matrix, c) for c in cols]
    return [[v[i] for v in vals if v[i] is not None] or None for i in range(matrix.n_prompts)]


def evaluate_scored(scored, matrix, models: Sequence[str], *, frontier: str | None = None, dataset: str = ""):
    """Replay the scored decisions (``scored``: the score output for ``matrix``'s prompts, any order) against the
    real outcomes: the bundle's own decisions, threshold/utility sweeps over its probabilities, and the
    reference policies. Rows marked bad are reported and left out (the evaluator needs a decision per prompt)."""
    import numpy as np

    from aco_bert.policies.base import RoutingContext
    from aco_bert.evaluation.replay import evaluate_policies, threshold_sweep, utility_sweep

    df = scored.set_index("prompt_id")
    bad = df["error"].notna()
    keep = [i for i, pid in enumerate(matrix.prompt_ids) if pid in df.index and not bad.get(pid, True)]
    notes = []
    if len(keep) < matrix.n_prompts:
        notes.append(f"{matrix.n_prompts - len(keep)} prompt(s) could not be scored and are left out")
    sub = matrix.subset(np.array(keep, dtype=int))
    d = df.loc[sub.prompt_ids]
    probs = d[[f"p:{m}" for m in models]].to_numpy(float)
    cost = d[[f"cost:{m}" for m in models]].to_numpy(float)
    min_tier = d["min_tier"].to_numpy(int) - 1
    ctx = RoutingContext(probs, cost, min_tier=min_tier)
    tiers = d["tier"].to_numpy(int) - 1
    policy = str(d["policy"].iloc[0]) if len(d) else "bundle"
    report = evaluate_policies(sub, list(models), ctx=ctx, decisions={f"router ({policy})": tiers},
                               sweeps=[threshold_sweep("router-threshold"), utility_sweep("router-utility")],
                               min_tier=min_tier, frontier=frontier, dataset=dataset)
    report.notes = notes + report.notes
    return report


def _evaluate_into(summary: ScoreSummary, cfg: ScoreConfig, matrix, router) -> None:
    import pyarrow.parquet as pq

    import pandas as pd

    out = Path(cfg.output)
    if cfg.format == "jsonl":
        scored = pd.read_json(out, lines=True, dtype={"prompt_id": str})
    else:
        scored = pq.read_table(out).to_pandas()
    models = [t.model for t in router.spec.tiers]
    report = evaluate_scored(scored, matrix, models, frontier=getattr(router.spec, "frontier", None),
                             dataset=Path(cfg.input).name)
    from aco_bert.evaluation.plots import plot_cost_quality

    stem = out.with_suffix("")
    plot = Path(cfg.plot) if cfg.plot else stem.with_name(stem.name + ".cost_quality.png")
    rj = Path(cfg.report_json) if cfg.report_json else stem.with_name(stem.name + ".eval.json")
    plot_cost_quality(report, plot)
    report.save_json(rj)
    summary.evaluation, summary.plot, summary.report_json = report, str(plot), str(rj)


# --- CLI -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m aco_bert.score", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="router bundle folder (from python -m aco_bert.export)")
    ap.add_argument("--input", required=True,
                    help="jsonl/csv/parquet file, a folder of them, a `datasets` folder, or a Hub dataset name")
    ap.add_argument("--output", required=True, help="output file: .parquet (default) or .jsonl")
    ap.add_argument("--text-column", default="prompt")
    ap.add_argument("--messages-column", default="messages", help="chat messages [{role, content}] column")
    ap.add_argument("--step-type-column", default="step_type")
    ap.add_argument("--id-column", default=None, help="copied to the output (default: prompt_id or id if present)")
    ap.add_argument("--domain-column", default=None, help="domain(s) per row, for the spec's safety floors")
    ap.add_argument("--budget-column", default=None, help="per-row USD budget")
    ap.add_argument("--split", default=None, help="split of a `datasets` folder or Hub dataset")
    ap.add_argument("--hf-config", default=None, help="config name of a Hub dataset")
    ap.add_argument("--input-format", choices=("jsonl", "csv", "parquet"), default=None)
    ap.add_argument("--chunk-size", type=int, default=2048, help="rows per chunk (memory bound, resume unit)")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass")
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0: this process)")
    ap.add_argument("--threads", type=int, default=None,
                    help="ONNX Runtime threads per process (default: all cores, shared out among workers)")
    ap.add_argument("--on-error", choices=ON_ERROR, default="mark",
                    help="mark: bad rows get an `error` and no decision; stop: stop at the first bad row")
    ap.add_argument("--evaluate", action="store_true",
                    help="input is a canonical outcome table: score each prompt once, print the policy table")
    ap.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from --output)")
    ap.add_argument("--int8", dest="int8", action="store_true", default=None, help="force the int8 model")
    ap.add_argument("--fp32", dest="int8", action="store_false", help="force the fp32 model")
    ap.add_argument("--fresh", action="store_true", help="ignore earlier progress for this output")
    ap.add_argument("--keep-parts", action="store_true", help="keep <output>.parts/ after assembling")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--plot", default=None, help="--evaluate: cost-quality PNG path")
    ap.add_argument("--report-json", default=None, help="--evaluate: JSON report path")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = ScoreConfig(**vars(a))
    except ValueError as e:
        print(f"score: {e}", file=sys.stderr)
        return 2
    try:
        s = score_dataset(cfg)
    except ScoreError as e:
        print(f"score: {e}", file=sys.stderr)
        return 1
    except (InputError, ValueError, FileNotFoundError, BundleError) as e:
        print(f"score: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"score: interrupted; finished chunks are kept in {cfg.output}.parts -- rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    print(s.text())
    if s.evaluation is not None:
        r = s.evaluation
        print(f"\n## {r.dataset}: {r.n_prompts} prompts, {len(r.models)} tiers\n")
        print(r.markdown())
        for n in r.notes:
            print(f"\nnote: {n}")
        print(f"\nplot: {s.plot}\nreport: {s.report_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
