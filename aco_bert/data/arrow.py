"""Outcome files larger than memory: a long file converted once into a prompt-major Arrow dataset on disk.

Why: the eager path (:func:`~aco_bert.data.adapters.generic.load_generic` -> ``OutcomeTable`` -> ``matrix``)
holds the whole long frame in pandas, every prompt text once per model, plus the validation's copies. Here the
file is read in chunks (parquet row batches, CSV chunks, JSONL lines), each chunk validated by the generic long
loader itself (the same :class:`~aco_bert.data.schema.DataError`, file + row), its rows hash-partitioned by
``prompt_id`` into K shard files; each shard (every row of its prompts) is then checked across chunks (duplicate
prompt x model, two texts under one id, per-prompt metadata) and grouped into one row per prompt, appended to a
memory-mapped Arrow file that ``datasets`` opens (``Dataset.from_file``). Columns: ``prompt_id, prompt, source,
category, step_type``, per model ``row|m`` (file row, -1 = no outcome), ``success|m``, ``cost_usd|m``, the traces
the file has, ``response|m``, and ``meta|c`` per extra column (JSON).

:class:`ArrowOutcomes` is the ``OutcomeTable`` stand-in that ``load_outcomes(..., streaming=True)`` returns
(``--dataset_options "{streaming: true}"``): ``.matrix(models)`` gives the same dense arrays, prompt order and
metadata as the eager table, with ``prompts`` a lazy :class:`~aco_bert.data.arrow_seq.ArrowTexts`. In memory after
that: the (P, M) arrays, the prompt ids and the per-prompt metadata; never the long frame.

The cache is ``<cache_dir>/<fingerprint>/`` (default ``checkpoints/.cache/outcomes``), the fingerprint hashing the
file's path, size, mtime, first and last MiB and the options that change the result, so an unchanged file is
converted once and an edited one again. Not supported with streaming (a clear error): wide files, named datasets,
``cost`` rules and ``rename`` (derive ``cost_usd`` before converting); a spec's automatic cost derivation is
not applied. One bad row (or one duplicate / conflicting text, wherever its rows fall) is reported exactly as the
eager loader does; with several errors of different kinds, an earlier chunk's can come before a later one's that
the eager loader, which checks kind by kind over the whole file, would name first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from aco_bert.data.arrow_seq import ArrowTexts, open_table, write_stream
from aco_bert.data.schema import CANONICAL_COLUMNS, TRACE_COLUMNS, DataError, OutcomeMatrix, OutcomeTable

FORMAT_VERSION = 1
DEFAULT_CACHE_DIR = Path("checkpoints") / ".cache" / "outcomes"
STREAM_OPTIONS = ("models", "name", "clip_success", "format", "cache_dir", "chunk_rows", "shards")
STR_COLS = ("prompt_id", "prompt", "model", "source", "category", "step_type", "response")
FLOAT_COLS = ("success",) + TRACE_COLUMNS
SHARD_SCHEMA = pa.schema([(c, pa.large_string()) for c in STR_COLS] + [(c, pa.float64()) for c in FLOAT_COLS]
                         + [("_row", pa.int64()), ("_extra", pa.large_string())])
PROMPT_COLS = ("prompt_id", "prompt", "source", "category", "step_type")
OPTIONAL = tuple(c for c in TRACE_COLUMNS if c != "cost_usd") + ("response",)
INFO, PROMPTS = "info.json", "prompts.arrow"
SHARD_BYTES = 48 << 20  # input bytes per shard


def fingerprint(path: str | Path, **options: Any) -> str:
    """24 hex digits naming one input file's conversion: path, size, mtime, first/last MiB, result options."""
    p = Path(path).resolve()
    st = p.stat()
    h = hashlib.sha256(json.dumps({"v": FORMAT_VERSION, "path": str(p), "size": st.st_size,
                                   "mtime_ns": st.st_mtime_ns, **options}, sort_keys=True, default=str).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:24]


def iter_chunks(path: str, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """(frame, file row of each record) chunks, read as :func:`~aco_bert.data.adapters.generic.read_records`
    reads the whole file (CSV as strings, ``NA`` kept as text; JSONL rows = line numbers)."""
    from aco_bert.data.io import csv_utf8_check, read_jsonl

    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        recs, rows = [], []
        for i, r in read_jsonl(path):
            recs.append(r)
            rows.append(i)
            if len(recs) == chunk_rows:
                yield pd.DataFrame.from_records(recs), np.asarray(rows, dtype=int)
                recs, rows = [], []
        if recs:
            yield pd.DataFrame.from_records(recs), np.asarray(rows, dtype=int)
    elif suffix == ".csv":
        csv_utf8_check(path)
        start = 0
        try:
            for df in pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=chunk_rows):
                yield df.reset_index(drop=True), np.arange(start, start + len(df))
                start += len(df)
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no records", file=path) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"unreadable CSV: {e}", file=path) from e
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            start = 0
            for batch in pf.iter_batches(batch_size=chunk_rows):
                df = batch.to_pandas()
                yield df, np.arange(start, start + len(df))
                start += len(df)
        except (OSError, ValueError) as e:
            raise DataError(f"unreadable parquet: {e}", file=path) from e
    else:
        raise DataError(f"unsupported file type {suffix!r}; expected .jsonl, .csv or .parquet", file=path)


def _cell(v: Any) -> Any:
    """A cell as a plain JSON-able value; missing (None / NaN / NA) as None."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return v


def _shard_writers(work: Path, k: int) -> tuple[list[Any], list[Any]]:
    opts = pa.ipc.IpcWriteOptions(compression="lz4")
    sinks = [pa.OSFile(str(work / f"shard-{i:04d}.arrow"), "wb") for i in range(k)]
    return sinks, [pa.ipc.new_stream(s, SHARD_SCHEMA, options=opts) for s in sinks]


def _partition(path: str, work: Path, *, name: str, clip_success: bool, fmt: str | None, chunk_rows: int,
               shards: int) -> dict[str, Any]:
    """Pass 1: validate each chunk with the generic long loader and append its rows to their prompt's shard."""
    from aco_bert.data.adapters.generic import detect_format, load_long

    sinks, writers = _shard_writers(work, shards)
    models: dict[str, None] = {}
    extras: dict[str, None] = {}
    present: set[str] = set()
    skipped: dict[str, int] = {}
    clipped: dict[str, int] = {}
    n_rows = 0
    try:
        for df, rows in iter_chunks(path, chunk_rows):
            if len(df) == 0:
                continue
            if n_rows == 0 and (fmt or detect_format([str(c) for c in df.columns])) != "long":
                raise ValueError(f"{path}: streaming reads long outcome files (one row per prompt x model, with a "
                                 "'model' column); a wide file has one row per prompt: load it without streaming")
            # Row-level checks here; the cross-row ones (duplicate prompt x model, two texts under one id) run over
            # whole shards later, so their first offender is the file's, not the chunk's: ids made unique per row.
            pid = df["prompt_id"].astype("string") if "prompt_id" in df.columns else None
            if pid is not None:
                ok = (pid.notna() & (pid.str.strip() != "")).to_numpy(dtype=bool)
                df = df.assign(prompt_id=pid.where(~ok, pid + "\0" + pd.Series(rows, index=df.index).astype(str)))
            t = load_long(df, rows, file=path, name=name, clip_success=clip_success)
            if pid is not None:
                t.df["prompt_id"] = pid.reset_index(drop=True)
            for k, v in t.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            for k, v in t.extras.get("clipped_success", {}).items():
                clipped[k] = clipped.get(k, 0) + v
            out = t.df.assign(_row=rows)
            models.update(dict.fromkeys(out["model"].drop_duplicates().tolist()))
            present.update(c for c in OPTIONAL if out[c].notna().any())
            extra = [c for c in df.columns if c not in CANONICAL_COLUMNS]
            extras.update(dict.fromkeys(extra))
            if extra:
                recs = df[extra].reset_index(drop=True).to_dict("records")
                out["_extra"] = [json.dumps({k: _cell(v) for k, v in r.items()}, default=str) for r in recs]
            else:
                out["_extra"] = None
            tbl = pa.Table.from_pandas(out, schema=SHARD_SCHEMA, preserve_index=False)
            shard = pd.util.hash_pandas_object(out["prompt_id"], index=False).to_numpy() % np.uint64(shards)
            order = np.argsort(shard, kind="stable")
            counts = np.bincount(shard.astype(np.int64), minlength=shards)
            tbl, start = tbl.take(pa.array(order)), 0
            for i, c in enumerate(counts):
                if c:
                    writers[i].write_table(tbl.slice(start, int(c)))
                    start += int(c)
            n_rows += len(out)
    finally:
        for w, s in zip(writers, sinks):
            w.close()
            s.close()
    if n_rows == 0:
        raise DataError("no records", file=path)
    return {"models": list(models), "present": [c for c in OPTIONAL if c in present], "extras": list(extras),
            "skipped": skipped, "clipped": clipped, "n_rows": n_rows}


def _shard_frame(path: Path) -> pd.DataFrame:
    with pa.memory_map(str(path)) as src:
        t = pa.ipc.open_stream(src).read_all()
    return t.to_pandas().sort_values("_row", kind="stable").reset_index(drop=True)


def _group(t: pd.DataFrame, models: list[str], present: list[str], extras: list[str], varies: set[str]
           ) -> dict[str, Any]:
    """One shard's rows as one row per prompt (prompt-major columns); records extras that vary within a prompt."""
    firsts = t.drop_duplicates("prompt_id")
    pids = firsts["prompt_id"].tolist()
    n, m = len(pids), len(models)
    pi = pd.Index(pids).get_indexer(t["prompt_id"])
    mi = pd.Index(models).get_indexer(t["model"])
    cols: dict[str, Any] = {c: [v if isinstance(v, str) else None for v in firsts[c]] for c in PROMPT_COLS}
    row = np.full((n, m), -1, dtype=np.int64)
    row[pi, mi] = t["_row"].to_numpy()
    mats = {"row": row}
    for c in ("success", "cost_usd") + tuple(c for c in present if c != "response"):
        a = np.full((n, m), np.nan)
        a[pi, mi] = t[c].to_numpy(dtype=float)
        mats[c] = a
    for c, a in mats.items():
        cols.update({f"{c}|{mm}": a[:, j] for j, mm in enumerate(models)})
    if "response" in present:
        r = np.full((n, m), None, dtype=object)
        r[pi, mi] = [v if isinstance(v, str) else None for v in t["response"]]
        cols.update({f"response|{mm}": r[:, j].tolist() for j, mm in enumerate(models)})
    if extras:
        ext = pd.DataFrame.from_records([json.loads(x) if isinstance(x, str) else {} for x in t["_extra"]],
                                        columns=extras)
        keys = t["prompt_id"].to_numpy()
        for c in extras:
            g = ext[c].astype(object).groupby(keys, sort=False)
            if (g.nunique(dropna=False) > 1).any():
                varies.add(c)
            first = g.first().reindex(pids)
            cols[f"meta|{c}"] = [json.dumps(_cell(v), default=str) for v in first]
    return cols


def _cross_errors(t: pd.DataFrame, found: dict[str, tuple]) -> None:
    """Cross-chunk checks of validate_table on one shard: keeps the earliest offender of each kind in ``found``."""
    dup = t.duplicated(["prompt_id", "model"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        cand = (int(t["_row"].iloc[i]), t["prompt_id"].iloc[i], t["model"].iloc[i])
        found["dup"] = min(found.get("dup", cand), cand)
    texts = t.groupby("prompt_id", sort=False)["prompt"].nunique()
    for pid in texts.index[texts > 1]:
        rows = t["_row"].to_numpy()[(t["prompt_id"] == pid).to_numpy()]
        cand = (int(rows[0]), int(rows[1]), pid)
        found["text"] = min(found.get("text", cand), cand)


def _final_schema(models: list[str], present: list[str], extras: list[str]) -> pa.Schema:
    fields = [(c, pa.large_string()) for c in PROMPT_COLS] + [(f"row|{m}", pa.int64()) for m in models]
    for c in ("success", "cost_usd") + tuple(c for c in present if c != "response"):
        fields += [(f"{c}|{m}", pa.float64()) for m in models]
    if "response" in present:
        fields += [(f"response|{m}", pa.large_string()) for m in models]
    return pa.schema(fields + [(f"meta|{c}", pa.large_string()) for c in extras])


def _data_bytes(path: str) -> int:
    """The input's uncompressed size (parquet: its metadata's, text compresses ~10x there), which sets the shard
    count so one shard, all of whose rows the group-by holds at once, stays near ``SHARD_BYTES``."""
    if Path(path).suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            md = pq.ParquetFile(path).metadata
            return int(sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups)))
        except (OSError, ValueError):
            pass  # unreadable: the conversion itself names the error
    return os.path.getsize(path)


def convert(path: str | Path, *, cache_dir: str | Path | None = None, name: str | None = None,
            clip_success: bool = False, format: str | None = None, chunk_rows: int = 100_000,
            shards: int | None = None) -> Path:
    """Convert the long outcome file ``path`` (any size) into its cached prompt-major Arrow dataset; returns the
    dataset directory (``info.json`` + ``prompts.arrow``). Reused when the file is unchanged."""
    p = str(path)
    if not Path(p).exists():
        raise FileNotFoundError(p)
    nm = name or Path(p).stem
    root = Path(cache_dir or DEFAULT_CACHE_DIR) / fingerprint(p, clip_success=clip_success, format=format)
    if (root / INFO).exists():
        return root
    k = shards or int(np.clip(_data_bytes(p) // SHARD_BYTES, 1, 256))
    work = root.with_name(f"{root.name}.partial{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        info = _partition(p, work, name=nm, clip_success=clip_success, fmt=format, chunk_rows=chunk_rows,
                          shards=k)
        models, present, extras = info["models"], info["present"], info["extras"]
        schema = _final_schema(models, present, extras)
        found: dict[str, tuple] = {}
        varies: set[str] = set()
        n_prompts = [0]

        def tables() -> Iterator[pa.Table]:
            for i in range(k):
                t = _shard_frame(work / f"shard-{i:04d}.arrow")
                _cross_errors(t, found)
                if len(t) and not found:  # after an error only the checks go on (the earliest offender wins)
                    cols = _group(t, models, present, extras, varies)
                    n_prompts[0] += len(cols["prompt_id"])
                    yield pa.Table.from_pydict(cols, schema=schema)
                (work / f"shard-{i:04d}.arrow").unlink()

        write_stream(work / PROMPTS, schema, tables())
        if "dup" in found:
            r, pid, model = found["dup"]
            raise DataError(f"duplicate prompt x model ({pid!r}, {model!r})", file=p, row=r)
        if "text" in found:
            raise DataError(f"prompt_id {found['text'][2]!r} has more than one prompt text", file=p,
                            row=found["text"][1])
        info.update(version=FORMAT_VERSION, file=str(Path(p).resolve()), name=nm, n_prompts=n_prompts[0],
                    meta_columns=[c for c in extras if c not in varies],
                    ignored_columns=[c for c in extras if c in varies])
        (work / INFO).write_text(json.dumps(info, indent=1))
        try:
            os.replace(work, root)
        except OSError:  # another process finished the same conversion first: use its copy
            if not (root / INFO).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


class ArrowMatrix(OutcomeMatrix):
    """An :class:`OutcomeMatrix` whose ``prompts`` stay a lazy :class:`ArrowTexts` through subset/select."""

    def subset(self, idx: np.ndarray | list[int]) -> "ArrowMatrix":
        idx = np.asarray(idx, dtype=np.int64)
        return ArrowMatrix(prompt_ids=[self.prompt_ids[i] for i in idx], prompts=self.prompts.take(idx),
                           models=list(self.models), success=self.success[idx], cost=self.cost[idx],
                           traces={k: v[idx] for k, v in self.traces.items()},
                           meta=self.meta.iloc[idx].reset_index(drop=True),
                           responses=None if self.responses is None else self.responses[idx])

    def select_models(self, models: list[str]) -> "ArrowMatrix":
        cols = [self.models.index(m) for m in models]
        return ArrowMatrix(prompt_ids=list(self.prompt_ids), prompts=self.prompts, models=list(models),
                           success=self.success[:, cols], cost=self.cost[:, cols],
                           traces={k: v[:, cols] for k, v in self.traces.items()}, meta=self.meta.copy(),
                           responses=None if self.responses is None else self.responses[:, cols])


class ArrowOutcomes:
    """The ``OutcomeTable`` stand-in over a converted dataset: ``models``, ``n_prompts``, ``skipped``,
    ``extras``, ``matrix(models)``, ``select_models``. There is no ``df`` (the long frame is what streaming
    avoids): code that needs it gets a clear TypeError instead of a wrong answer."""

    def __init__(self, root: str | Path, name: str | None = None, models: Iterable[str] | None = None):
        self.root = Path(root)
        self.info = json.loads((self.root / INFO).read_text())
        self.name = name or self.info["name"]
        have = self.info["models"]
        if models is not None:
            models = list(models)
            missing = [m for m in models if m not in have]
            if missing:
                raise DataError(f"models not in table {self.name!r}: {missing}")
        self._models = [m for m in have if models is None or m in models]
        self.skipped = dict(self.info["skipped"])
        self.extras: dict[str, Any] = {"format": "long", "streaming": str(self.root)}
        if self.info["clipped"]:
            self.extras["clipped_success"] = dict(self.info["clipped"])
        if self.info["ignored_columns"]:
            self.extras["ignored_columns"] = list(self.info["ignored_columns"])

    @property
    def path(self) -> Path:
        return self.root / PROMPTS

    @property
    def models(self) -> list[str]:
        return list(self._models)

    def select_models(self, models: Iterable[str]) -> "ArrowOutcomes":
        return ArrowOutcomes(self.root, self.name, models)

    def _array(self, table: pa.Table, col: str, order: np.ndarray | None = None) -> np.ndarray:
        a = table.column(col).to_numpy()
        return a if order is None else a[order]

    def _order(self, table: pa.Table, models: list[str]) -> np.ndarray:
        """Positions of the prompts with an outcome for ``models``, by their first such row in the file (the
        eager matrix's order)."""
        rows = np.stack([self._array(table, f"row|{m}") for m in models], 1)
        has = (rows >= 0).any(1)
        first = np.where(rows >= 0, rows, np.iinfo(np.int64).max).min(1)
        return np.flatnonzero(has)[np.argsort(first[has], kind="stable")]

    @property
    def n_prompts(self) -> int:
        return len(self._order(open_table(self.path), self._models))

    @property
    def df(self) -> pd.DataFrame:
        raise TypeError(f"{self.name!r} is a streamed (memory-mapped Arrow) table: it has no long frame. Training "
                        "and stacking read it through .matrix(); for other verbs load the file without streaming")

    def cost_table(self) -> OutcomeTable:
        """One row per model with its mean observed ``cost_usd`` (NaN: none): what ``RouterSpec.every_model``
        ranks models by, without the long frame."""
        t = open_table(self.path)
        means = [float(np.nanmean(c)) if np.isfinite(c := self._array(t, f"cost_usd|{m}")).any() else np.nan
                 for m in self._models]
        return OutcomeTable(pd.DataFrame({"model": self._models, "cost_usd": means}), name=self.name)

    def matrix(self, models: Iterable[str] | None = None) -> ArrowMatrix:
        """The dense prompt x model view, equal to the eager ``OutcomeTable.matrix(models)``."""
        models = list(models) if models is not None else self.models
        unknown = [m for m in models if m not in self._models]
        if unknown:
            raise DataError(f"models not in table {self.name!r}: {unknown}")
        t = open_table(self.path)
        order = self._order(t, models)

        def mat(c: str) -> np.ndarray:
            if c in OPTIONAL and c not in self.info["present"]:
                return np.full((len(order), len(models)), np.nan)
            return np.stack([self._array(t, f"{c}|{m}", order) for m in models], 1).astype(float)

        pids = t.column("prompt_id").take(pa.array(order)).to_pylist()
        meta = pd.DataFrame({"prompt_id": pd.array(pids, dtype="string")})
        for c in ("source", "category", "step_type"):
            meta[c] = pd.array(t.column(c).take(pa.array(order)).to_pylist(), dtype="string")
        for c in self.info["meta_columns"]:
            meta[c] = [json.loads(v) for v in t.column(f"meta|{c}").take(pa.array(order)).to_pylist()]
        responses = None
        if "response" in self.info["present"]:
            r = np.stack([np.array(t.column(f"response|{m}").take(pa.array(order)).to_pylist(), dtype=object)
                          for m in models], 1) if len(order) else np.full((0, len(models)), None, dtype=object)
            responses = r if any(v is not None for v in r.flat) else None
        return ArrowMatrix(prompt_ids=pids, prompts=ArrowTexts(self.path, "prompt", order), models=models,
                           success=mat("success"), cost=mat("cost_usd"),
                           traces={c: mat(c) for c in TRACE_COLUMNS if c != "cost_usd"}, meta=meta,
                           responses=responses)

    def report_skipped(self) -> str:
        if not self.skipped:
            return f"{self.name}: nothing skipped"
        return f"{self.name}: skipped " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items()))


def load_streaming(name_or_path: str | Path, *, cost: Any = None, **kw: Any) -> ArrowOutcomes:
    """``load_outcomes(path, streaming=True, ...)``: convert (or reuse) and open the Arrow dataset of a long file.
    Options: ``models``, ``name``, ``clip_success``, ``format`` (long), ``cache_dir``, ``chunk_rows``, ``shards``."""
    from aco_bert.data.registry import DATASETS

    p = str(name_or_path)
    if p in DATASETS:
        raise ValueError(f"streaming reads generic long outcome files; {p!r} is a named dataset (load it without "
                         "streaming, or write its table to a parquet file first)")
    if not Path(p).exists():
        raise ValueError(f"unknown dataset {p!r}: not one of {sorted(DATASETS)} nor an existing path")
    if cost is not None:
        raise ValueError("streaming does not apply cost rules: derive cost_usd in the file before converting it")
    bad = sorted(set(kw) - set(STREAM_OPTIONS))
    if bad:
        raise ValueError(f"dataset option(s) {bad} are not supported with streaming; supported: {STREAM_OPTIONS}")
    models = kw.pop("models", None)
    name = kw.pop("name", None) or Path(p).stem
    root = convert(p, name=name, **kw)
    return ArrowOutcomes(root, name, models)
