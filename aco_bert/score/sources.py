"""Streaming table readers for batch scoring: jsonl, csv, parquet, a folder of them, a `datasets` folder, a Hub name.

Why a module of its own: the scorer must handle inputs far larger than memory, resume a run chunk by chunk, and
never lose a row. So every reader here (1) yields fixed-size chunks, chunk ``k`` always being rows
``[k*C, (k+1)*C)`` of the input, whatever the file's own batching, so a resumed run cuts the input exactly as the
first run did; (2) never materialises the whole input (jsonl line iteration, pandas' chunked csv reader, parquet
``iter_batches``, memory-mapped ``datasets``); and (3) turns a record it cannot parse (a bad JSON line) into a
marked row rather than dropping it, so row indices stay aligned with the input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HASH_BLOCK = 8 << 20


class InputError(ValueError):
    """The input as a whole cannot be read (missing file, unknown format, no text column). Row errors are not
    raised: they are marked per row by the scorer."""


@dataclass
class Chunk:
    """Rows ``[start, start + n)`` of the input.

    ``columns`` maps each requested column to one value per row (``None`` where the row lacks it);
    ``bad`` maps a local row index to why that record could not be parsed at all. ``columns`` is ``None`` for
    a chunk the caller asked to skip (already scored in an earlier run): only its size is known.
    """

    index: int
    start: int
    n: int
    columns: dict[str, list[Any]] | None
    bad: dict[int, str] = field(default_factory=dict)


@dataclass
class TableSource:
    """An opened input: what it is, a content fingerprint (resume safety) and how many rows (if cheap to know)."""

    kind: str  # jsonl | csv | parquet | datasets | hf
    location: str
    files: list[Path]
    fingerprint: str
    n_rows: int | None  # exact when known without a full parse, else None
    n_rows_estimate: int | None  # e.g. newline count of a jsonl file; for progress bars only
    columns: list[str] | None  # column names when the format declares them (csv header, parquet schema)
    split: str | None = None
    hf_config: str | None = None
    blank_lines: int = 0  # jsonl: blank lines seen (not records, never scored); counted, not silent
    data: dict[str, list[Any]] | None = field(default=None, repr=False)  # kind "memory" only
    first_keys: list[str] | None = None  # jsonl: keys of the first parseable record (a hint, not a schema)
    _hf_ds: Any = field(default=None, repr=False)  # the opened streaming dataset (opening one is slow)

    def has_column(self, name: str) -> bool | None:
        """True/False when the format declares its columns, None when only rows can tell (jsonl)."""
        return None if self.columns is None else name in self.columns

    def iter_chunks(self, chunk_size: int, wanted: Sequence[str], skip: set[int] | frozenset[int] = frozenset()
                    ) -> Iterator[Chunk]:
        """Yield consecutive chunks of exactly ``chunk_size`` rows (the last may be short) holding ``wanted``.

        Chunks whose index is in ``skip`` are yielded with ``columns=None`` and are not parsed where the format
        allows it (jsonl lines are only counted)."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        wanted = list(dict.fromkeys(wanted))
        if self.kind == "jsonl":
            yield from self._jsonl_chunks(chunk_size, wanted, skip)
            return
        if self.kind == "csv":
            blocks = _csv_blocks(self.files, chunk_size, wanted)
        elif self.kind == "parquet":
            blocks = _parquet_blocks(self.files, chunk_size, wanted)
        elif self.kind == "datasets":
            blocks = _datasets_blocks(self.location, self.split, chunk_size, wanted)
        elif self.kind == "hf":
            blocks = _hf_blocks(self._hf_ds or _load_hf(self.location, self.hf_config, self.split), chunk_size,
                                wanted)
        elif self.kind == "memory":
            assert self.data is not None
            n = self.n_rows or 0
            blocks = iter([{c: list(self.data.get(c, [None] * n)) for c in wanted}] if n else [])
        else:  # pragma: no cover - open_table only builds the kinds above
            raise InputError(f"unknown input kind {self.kind!r}")
        yield from _rechunk(blocks, chunk_size, wanted, skip)

    # jsonl is handled line by line so that a skipped chunk costs a line count, and a bad line becomes a bad row.
    def _jsonl_chunks(self, chunk_size: int, wanted: list[str], skip) -> Iterator[Chunk]:
        index, start = 0, 0
        lines: list[tuple[str, int, bytes]] = []  # (file, line number, raw bytes)
        blank = 0

        def flush() -> Chunk:
            nonlocal index, start
            if index in skip:
                ch = Chunk(index, start, len(lines), None)
            else:
                ch = parse_jsonl_lines(index, start, lines, wanted)
            index, start = index + 1, start + len(lines)
            lines.clear()
            return ch

        for f in self.files:
            with open(f, "rb") as fh:
                for ln, raw in enumerate(fh, 1):
                    if not raw.strip():
                        blank += 1
                        continue
                    lines.append((f.name, ln, raw if index not in skip else b""))
                    if len(lines) == chunk_size:
                        yield flush()
        if lines:
            yield flush()
        self.blank_lines = blank


def parse_jsonl_lines(index: int, start: int, lines: list[tuple[str, int, bytes]], wanted: list[str]) -> Chunk:
    """Chunk ``index`` from its raw jsonl lines ``(file name, line number, bytes)``: a line that is not a JSON
    object becomes a bad row, never a lost one (also used by workers that seek to their chunk)."""
    cols: dict[str, list[Any]] = {c: [] for c in wanted}
    bad: dict[int, str] = {}
    for i, (fname, ln, raw) in enumerate(lines):
        rec: Any = None
        try:
            rec = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            bad[i] = f"invalid UTF-8 ({fname} line {ln}, byte {e.start})"
        except json.JSONDecodeError as e:
            bad[i] = f"unparseable JSON ({fname} line {ln}): {e.msg} at column {e.colno}"
        else:
            if not isinstance(rec, dict):
                bad[i] = f"JSON line is a {type(rec).__name__}, not an object ({fname} line {ln})"
        ok = isinstance(rec, dict) and i not in bad
        for c in wanted:
            cols[c].append(rec.get(c) if ok else None)
    return Chunk(index, start, len(lines), cols, bad)


def _rechunk(blocks: Iterator[dict[str, list[Any]]], chunk_size: int, wanted: list[str], skip) -> Iterator[Chunk]:
    """Cut a stream of column blocks of any sizes into chunks of exactly ``chunk_size`` rows."""
    buf: dict[str, list[Any]] = {c: [] for c in wanted}
    n_buf, index, start = 0, 0, 0
    for block in blocks:
        n = len(next(iter(block.values()))) if block else 0
        pos = 0
        while pos < n:
            take = min(chunk_size - n_buf, n - pos)
            for c in wanted:
                buf[c].extend(block[c][pos:pos + take])
            n_buf += take
            pos += take
            if n_buf == chunk_size:
                yield Chunk(index, start, n_buf, None if index in skip else buf)
                buf, index, start, n_buf = {c: [] for c in wanted}, index + 1, start + n_buf, 0
    if n_buf:
        yield Chunk(index, start, n_buf, None if index in skip else buf)


def _csv_blocks(files: list[Path], chunk_size: int, wanted: list[str]) -> Iterator[dict[str, list[Any]]]:
    import pandas as pd

    for f in files:
        header = _csv_header(f)
        present = [c for c in wanted if c in header]
        # Every value as a string, and no "NA"/"null" guessing: a prompt that reads "None" is a prompt.
        reader = pd.read_csv(f, usecols=present or [header[0]], dtype=str, keep_default_na=False,
                             chunksize=chunk_size, encoding="utf-8")  # strict: checked by _open_files
        for df in reader:
            n = len(df)
            yield {c: (df[c].tolist() if c in present else [None] * n) for c in wanted}


def _csv_header(f: Path) -> list[str]:
    import csv

    with open(f, newline="", encoding="utf-8") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            return []


def _parquet_blocks(files: list[Path], chunk_size: int, wanted: list[str]) -> Iterator[dict[str, list[Any]]]:
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        present = [c for c in wanted if c in pf.schema_arrow.names]
        if not present:  # still need the row count: read the smallest column
            present_read = [pf.schema_arrow.names[0]]
        else:
            present_read = present
        for batch in pf.iter_batches(batch_size=chunk_size, columns=present_read):
            n = batch.num_rows
            yield {c: (batch.column(c).to_pylist() if c in present else [None] * n) for c in wanted}


def _datasets_blocks(path: str, split: str | None, chunk_size: int, wanted: list[str]) -> Iterator[dict[str, list]]:
    ds = _load_from_disk(path, split)
    present = [c for c in wanted if c in ds.column_names]
    sel = ds.select_columns(present or ds.column_names[:1])
    for batch in sel.iter(batch_size=chunk_size):
        n = len(next(iter(batch.values())))
        yield {c: (list(batch[c]) if c in present else [None] * n) for c in wanted}


def _hf_blocks(ds, chunk_size: int, wanted: list[str]) -> Iterator[dict[str, list]]:
    cols = list(ds.column_names or [])
    present = [c for c in wanted if c in cols] if cols else wanted
    for batch in ds.iter(batch_size=chunk_size):
        n = len(next(iter(batch.values())))
        yield {c: (list(batch[c]) if c in batch and c in present else [None] * n) for c in wanted}


def _load_from_disk(path: str, split: str | None):
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise InputError(f"{path} holds splits {sorted(ds)}; choose one with --split")
            split = next(iter(ds))
        if split not in ds:
            raise InputError(f"{path} has no split {split!r}; it has {sorted(ds)}")
        ds = ds[split]
    return ds


def _load_hf(name: str, config: str | None, split: str | None):
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split or "train", streaming=True)
    except Exception as e:  # network, auth, unknown name: one readable message
        raise InputError(f"cannot open Hugging Face dataset {name!r} (config {config!r}, split {split or 'train'!r}):"
                         f" {type(e).__name__}: {e}") from e


def _hash_files(files: list[Path], root: Path | None = None, count_newlines: bool = False) -> tuple[str, int]:
    """sha256 over every file's relative name and bytes (streamed), plus the newline count if asked."""
    h = hashlib.sha256()
    newlines = 0
    for f in files:
        h.update(str(f.relative_to(root) if root else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                h.update(block)
                if count_newlines:
                    newlines += block.count(b"\n")
        h.update(b"\0")
    return h.hexdigest(), newlines


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suf, kind in FILE_KINDS.items():
        if name.endswith(suf):
            return kind
    return None


def open_table(source: str | Path, *, split: str | None = None, hf_config: str | None = None,
               format: str | None = None) -> TableSource:
    """Open ``source`` for streaming: a jsonl/csv/parquet file, a folder of such files (one format, read in
    sorted order), a folder written by ``datasets.save_to_disk``, or a Hugging Face dataset name (``hf:`` prefix
    optional; streamed). ``format`` forces the file format when the suffix does not say it."""
    src = str(source)
    p = Path(src).expanduser()
    if p.is_dir():
        if (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            files = sorted(x for x in p.rglob("*") if x.is_file())
            fp, _ = _hash_files(files, root=p)
            ds = _load_from_disk(str(p), split)
            return TableSource("datasets", str(p), files, f"datasets:{fp}", len(ds), len(ds),
                               list(ds.column_names), split=split)
        kinds = {}
        for x in sorted(p.iterdir()):
            k = format or _kind_of(x)
            if x.is_file() and k:
                kinds.setdefault(k, []).append(x)
        if len(kinds) != 1:
            raise InputError(f"{p}: a folder input must hold files of one format (.jsonl/.csv/.parquet) or be a "
                             f"`datasets` folder (state.json); found {sorted(kinds) or 'none'}")
        kind, files = next(iter(kinds.items()))
        return _open_files(kind, files, root=p, location=str(p))
    if p.is_file():
        kind = format or _kind_of(p)
        if kind not in ("jsonl", "csv", "parquet"):
            raise InputError(f"{p}: unknown input format; expected .jsonl, .csv or .parquet (or pass --input-format)")
        return _open_files(kind, [p], root=p.parent, location=str(p))
    name = src[3:] if src.startswith("hf:") else src
    looks_hf = src.startswith("hf:") or (src.count("/") == 1 and not src.startswith((".", "/", "~")))
    if not looks_hf:
        raise InputError(f"input {src!r} does not exist (not a file, a folder or a Hugging Face dataset name)")
    ds = _load_hf(name, hf_config, split)
    fp = hashlib.sha256(f"hf:{name}:{hf_config}:{split or 'train'}".encode()).hexdigest()
    cols = list(ds.column_names) if getattr(ds, "column_names", None) else None
    return TableSource("hf", name, [], f"hf:{fp}", None, None, cols, split=split or "train", hf_config=hf_config,
                       _hf_ds=ds)


def _open_files(kind: str, files: list[Path], root: Path, location: str) -> TableSource:
    fp, newlines = _hash_files(files, root=root, count_newlines=kind in ("jsonl", "csv"))
    n_rows: int | None = None
    cols: list[str] | None = None
    if kind == "parquet":
        import pyarrow.parquet as pq

        n_rows, cols = 0, None
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except Exception as e:
                raise InputError(f"{f}: not a readable parquet file: {e}") from e
            n_rows += pf.metadata.num_rows
            names = pf.schema_arrow.names
            cols = names if cols is None else [c for c in cols if c in names]
    elif kind == "csv":
        from aco_bert.data.io import utf8_error

        for f in files:  # altered text is refused, never routed with U+FFFD in it (as `data describe` refuses it)
            if (bad := utf8_error(f)) is not None:
                line, byte, why = bad
                raise InputError(f"{f}: invalid UTF-8 ({why}) at byte {byte}, line {line + 1} (row {line - 1}, "
                                 "0-based after the header); re-save it as UTF-8")
        headers = [_csv_header(f) for f in files]
        cols = headers[0]
        for f, h in zip(files, headers):
            if h != cols:
                raise InputError(f"{f}: csv header {h} differs from {files[0].name}'s {cols}")
        newlines -= len(files)  # headers
    estimate = n_rows if n_rows is not None else max(newlines, 0)
    src = TableSource(kind, location, files, f"{kind}:{fp}", n_rows, estimate, cols)
    if kind == "jsonl":
        src.first_keys = _first_jsonl_keys(files)
    return src


def _first_jsonl_keys(files: list[Path], max_lines: int = 1000) -> list[str] | None:
    seen = 0
    for f in files:
        with open(f, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                seen += 1
                if seen > max_lines:
                    return None
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(rec, dict):
                    return list(rec)
    return None


def memory_source(columns: dict[str, list[Any]], fingerprint: str, location: str = "<memory>") -> TableSource:
    """An in-memory table (equal-length column lists) behind the same chunked interface, e.g. the unique prompts
    of an outcome table."""
    lens = {len(v) for v in columns.values()}
    if len(lens) > 1:
        raise ValueError(f"columns of unequal length: { {k: len(v) for k, v in columns.items()} }")
    n = lens.pop() if lens else 0
    return TableSource("memory", location, [], fingerprint, n, n, list(columns), data=columns)
