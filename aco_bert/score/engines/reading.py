"""Reading one work block's chunks without scanning the input before them (what lets N workers share one file).

The local scorer reads its input once, front to back. A worker that owns chunks ``k..k+K`` of a large file must
not: scanning to row ``k*C`` makes a run of B blocks read the file B/2 times. So the driver notes where each chunk
of a jsonl input begins (file, byte offset, line number: one cheap pass of line counting), and a parquet chunk is
read from just the row groups that hold it (the footer says where they are). Either way the chunk holds the same
values, bad-row marks and error texts as :meth:`aco_bert.score.sources.TableSource.iter_chunks` gives it (the
jsonl lines go through the same :func:`aco_bert.score.sources.parse_jsonl_lines`). Other inputs (csv, a
``datasets`` folder) fall back to that streaming reader, skipping the other chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from aco_bert.score.engines.base import ChunksOutside
from aco_bert.score.sources import Chunk, TableSource, parse_jsonl_lines


@dataclass(frozen=True)
class JsonlSeek:
    """Where a chunk of a jsonl input begins: its first record's file (index), byte offset and line number."""

    file: int
    offset: int
    line: int


def jsonl_seeks(src: TableSource, chunk_size: int, chunks: set[int] | frozenset[int]) -> dict[int, JsonlSeek]:
    """The start of each chunk in ``chunks``, found by counting non-blank lines (as the jsonl reader does)."""
    out: dict[int, JsonlSeek] = {}
    records = 0
    for fi, f in enumerate(src.files):
        with open(f, "rb") as fh:
            offset = 0
            for ln, raw in enumerate(fh, 1):
                if raw.strip():
                    if records % chunk_size == 0 and records // chunk_size in chunks:
                        out[records // chunk_size] = JsonlSeek(fi, offset, ln)
                    records += 1
                offset += len(raw)
    return out


class BlockReader:
    """Reads the chunks a worker was given, by seeking (jsonl, parquet) or by skipping (other inputs)."""

    def __init__(self, src: TableSource, chunk_size: int, wanted: list[str]):
        self.src, self.chunk_size, self.wanted = src, chunk_size, list(dict.fromkeys(wanted))
        self.file_rows: list[int] = []
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            self.file_rows = [pq.ParquetFile(f).metadata.num_rows for f in src.files]

    def chunks(self, want: dict[int, tuple[int, int]], seeks: dict[int, JsonlSeek] | None = None
               ) -> Iterator[Chunk]:
        """Chunks ``index -> (start, rows)`` of ``want``, in index order (jsonl: from ``seeks``, when given)."""
        seeks = seeks or {}
        if self.src.kind == "parquet":
            for k in sorted(want):
                yield Chunk(k, *want[k], self._parquet_rows(*want[k]))
        elif self.src.kind == "jsonl" and all(k in seeks for k in want):
            for k in sorted(want):
                yield self._jsonl_chunk(k, *want[k], seeks[k])
        else:
            last = max(want)
            for ch in self.src.iter_chunks(self.chunk_size, self.wanted, skip=ChunksOutside(want)):
                if ch.index in want:
                    yield ch
                if ch.index >= last:
                    break  # the rest of the input belongs to other blocks

    def _jsonl_chunk(self, index: int, start: int, n: int, s: JsonlSeek) -> Chunk:
        lines: list[tuple[str, int, bytes]] = []
        for fi in range(s.file, len(self.src.files)):
            f = self.src.files[fi]
            with open(f, "rb") as fh:
                ln0 = 1
                if fi == s.file:
                    fh.seek(s.offset)
                    ln0 = s.line
                for ln, raw in enumerate(fh, ln0):
                    if raw.strip():
                        lines.append((f.name, ln, raw))
                        if len(lines) == n:
                            return parse_jsonl_lines(index, start, lines, self.wanted)
        return parse_jsonl_lines(index, start, lines, self.wanted)  # short: the caller checks the row count

    def _parquet_rows(self, start: int, n: int) -> dict[str, list[Any]]:
        import pyarrow.parquet as pq

        cols: dict[str, list[Any]] = {c: [] for c in self.wanted}
        offset = 0
        for f, rows in zip(self.src.files, self.file_rows):
            lo, hi = max(start, offset) - offset, min(start + n, offset + rows) - offset  # rows of this file
            offset += rows
            if lo >= hi:
                continue
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            present = [c for c in self.wanted if c in names]
            groups, first, g0 = [], None, 0
            for g in range(pf.num_row_groups):
                g1 = g0 + pf.metadata.row_group(g).num_rows
                if g0 < hi and g1 > lo:
                    groups.append(g)
                    first = g0 if first is None else first
                g0 = g1
            t = pf.read_row_groups(groups, columns=present or names[:1]).slice(lo - (first or 0), hi - lo)
            for c in self.wanted:
                cols[c].extend(t.column(c).to_pylist() if c in present else [None] * (hi - lo))
        return cols
