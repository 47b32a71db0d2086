"""Lazy, memory-mapped sequences over Arrow columns: prompt texts and their token ids, read on demand.

Why: a table larger than memory must not come back as a Python list of a million strings (or of a million id
arrays). These sequences index (``seq[i]``), iterate in batches and report ``len`` like a list, but hold only the
path of a ``datasets`` Arrow file and an index array; the operating system pages the bytes in and out. They pickle
as (path, column, order), so a DataLoader worker reopens the file instead of copying it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

BATCH = 8192  # texts per tokenisation / iteration batch


def open_table(path: str | Path) -> pa.Table:
    """The memory-mapped Arrow table of a ``datasets`` cache file (``Dataset.from_file``: nothing is read yet)."""
    import datasets

    return datasets.Dataset.from_file(str(path)).data.table


def write_stream(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch | pa.Table]) -> None:
    """An uncompressed Arrow stream (``datasets``' own cache format), written to a temp name then renamed, so a
    killed conversion never leaves a half file that looks finished."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as w:
        for b in batches:
            w.write(b)
    os.replace(tmp, path)


class _Column:
    """One column of a mapped table: chunk lookup for ``[i]`` and zero-copy batched reads."""

    def __init__(self, path: str, column: str):
        self.path, self.name = path, column
        self.col = open_table(path).column(column)
        self.bounds = np.cumsum([0] + [len(c) for c in self.col.chunks])

    def get(self, j: int) -> Any:
        k = int(np.searchsorted(self.bounds, j, side="right")) - 1
        return self.col.chunks[k][j - int(self.bounds[k])]

    def take(self, idx: np.ndarray, convert_many) -> list[Any]:
        """``convert_many`` of rows ``idx``, chunk by chunk: ``ChunkedArray.take`` would first concatenate every
        chunk, i.e. copy the whole column into memory, which is what a mapped column must never do."""
        k = np.searchsorted(self.bounds, idx, side="right") - 1
        out: list[Any] = [None] * len(idx)
        for c in np.unique(k):
            pos = np.flatnonzero(k == c)
            vals = convert_many(self.col.chunks[c].take(pa.array(idx[pos] - self.bounds[c], type=pa.int64())))
            for p, v in zip(pos.tolist(), vals):
                out[p] = v
        return out


class _Lazy(Sequence):
    """Rows ``order`` of column ``column`` of the Arrow file ``path`` (order None = every row, in file order)."""

    def __init__(self, path: str | Path, column: str, order: np.ndarray | None = None):
        self.path, self.column = str(path), column
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        self._col: _Column | None = None

    @property
    def col(self) -> _Column:
        if self._col is None:
            self._col = _Column(self.path, self.column)
        return self._col

    def __len__(self) -> int:
        return int(self.col.bounds[-1]) if self.order is None else len(self.order)

    def __reduce__(self):
        return (type(self), (self.path, self.column, self.order))

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} rows")
        i = i % n
        return i if self.order is None else int(self.order[i])

    def _rows(self) -> np.ndarray:
        return np.arange(len(self)) if self.order is None else self.order

    def take(self, idx: Sequence[int] | np.ndarray) -> "_Lazy":
        """Rows ``idx`` of this sequence, still lazy."""
        return type(self)(self.path, self.column, self._rows()[np.asarray(idx, dtype=np.int64)])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        return self.convert(self.col.get(self._row(int(i))))

    def __iter__(self) -> Iterator[Any]:
        rows = self._rows()
        for s in range(0, len(rows), BATCH):
            yield from self.col.take(rows[s: s + BATCH], self.convert_many)

    def convert(self, scalar: Any) -> Any:
        return scalar.as_py()

    def convert_many(self, arr: pa.Array) -> list[Any]:
        return arr.to_pylist()

    def key(self) -> str:
        """Names the content: the file (its cache directory is keyed by the input's fingerprint) and the order."""
        h = hashlib.sha256(f"{Path(self.path).resolve()}|{self.column}|".encode())
        h.update(self._rows().tobytes())
        return h.hexdigest()[:24]


class ArrowTexts(_Lazy):
    """Prompt texts from a mapped Arrow column: a ``list[str]`` stand-in (len, [i], iteration, ``take``)."""

    def encode_ids_cached(self, truncation: Any, tokenizer: Any) -> "ArrowTokenIds":
        """Token ids of every text under ``truncation`` (a :class:`~aco_bert.model.tokenization.Truncation`),
        tokenised batch by batch into an Arrow file beside the dataset (reused when texts, order, settings and
        tokenizer are unchanged): what training indexes instead of a list of id arrays."""
        settings = {k: getattr(truncation, k) for k in ("max_length", "strategy", "tail_tokens", "max_chunks",
                                                        "chunk_overlap")}
        h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        h.update(self.key().encode())
        h.update(tokenizer.to_str().encode())
        path = Path(self.path).parent / f"tokens-{h.hexdigest()[:24]}.arrow"
        chunked = bool(truncation.chunked)
        if not path.exists():
            t = pa.list_(pa.list_(pa.int32())) if chunked else pa.list_(pa.int32())
            schema = pa.schema([("input_ids", t)])

            def batches() -> Iterator[pa.RecordBatch]:
                texts: list[str] = []
                for text in self:
                    texts.append(text)
                    if len(texts) == BATCH:
                        yield pa.record_batch([id_array(truncation.encode_ids(tokenizer, texts), chunked)], schema)
                        texts = []
                if texts:
                    yield pa.record_batch([id_array(truncation.encode_ids(tokenizer, texts), chunked)], schema)

            write_stream(path, schema, batches())
        return ArrowTokenIds(path, "input_ids")


def id_array(seqs: list, chunked: bool) -> pa.Array:
    """Per-prompt id arrays (or, chunked, lists of window arrays) as one Arrow list array of int32."""
    def offsets(parts: list) -> pa.Array:
        return pa.array(np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int32))

    if chunked:
        windows = [w for p in seqs for w in p]
        flat = np.concatenate([np.asarray(w, dtype=np.int32) for w in windows]) if windows else np.zeros(0, np.int32)
        inner = pa.ListArray.from_arrays(offsets(windows), pa.array(flat, type=pa.int32()))
        return pa.ListArray.from_arrays(offsets(seqs), inner)
    off = offsets(seqs)
    flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if seqs else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(off, pa.array(flat, type=pa.int32()))


class ArrowTokenIds(_Lazy):
    """Token ids per prompt from a mapped Arrow file: ``[i]`` is an int64 array (chunked: a list of window
    arrays), exactly what :func:`~aco_bert.model.tokenization.encode_ids` would have put in its list."""

    def convert(self, scalar: Any) -> Any:
        v = scalar.values
        if pa.types.is_list(v.type):  # chunked: windows
            return [np.asarray(v[k].values.to_numpy(zero_copy_only=False), dtype=np.int64) for k in range(len(v))]
        return np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.int64)

    def convert_many(self, arr: pa.Array) -> list[Any]:
        return [self.convert(arr[k]) for k in range(len(arr))]

    def padded_sizes(self) -> np.ndarray:
        """(P,) padded size per prompt (tokens; windows x longest window when chunked), vectorised over the
        offsets, so length grouping never builds a million arrays."""
        import pyarrow.compute as pc

        out = []
        for chunk in self.col.col.chunks:
            n_outer = pc.list_value_length(chunk).to_numpy(zero_copy_only=False).astype(np.int64)
            if pa.types.is_list(chunk.type.value_type):
                inner = pc.list_value_length(chunk.flatten()).to_numpy(zero_copy_only=False).astype(np.int64)
                starts = np.concatenate([[0], np.cumsum(n_outer)[:-1]])
                longest = np.zeros(len(n_outer), dtype=np.int64)
                has = n_outer > 0
                if has.any():
                    longest[has] = np.maximum.reduceat(inner, starts[has])
                out.append(n_outer * longest)
            else:
                out.append(n_outer)
        sizes = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        return sizes[self._rows()]
