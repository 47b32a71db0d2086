"""The files of a resumable run: one atomically written part per finished chunk, ``progress.json``, the output.

Why atomic writes (temp name, fsync, rename): a run killed at any instant leaves either a whole part and its
``progress.json`` entry or neither. Why a checksum as well: a part can still be damaged after it was written (a
full disk, a copy cut short, a hand edit, two parts swapped), and existence proves nothing. So each entry records
the part's sha256, byte size and row range ``[start, end)``; a rerun accepts a part only when all of them match
and re-scores any other, saying which. Parts are assembled in chunk order at the end (each checked against its
checksum again as it is read) and the output's row count is checked against the input's, so a resumed run writes
the same bytes as one that never stopped, or fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from aco_bert.score.config import MAX_REPORTED_ERRORS
from aco_bert.score.rows import ChunkResult

PROGRESS_VERSION = 2  # 2: parts carry sha256, bytes and their row range (1 was trusted by existence)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def jsonl_bytes(table) -> bytes:
    out = []
    for rec in table.to_pylist():
        out.append(json.dumps(rec, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode("utf-8") if out else b""


def part_bytes(table, fmt: str) -> bytes:
    """One chunk's rows as the bytes of a jsonl or zstd parquet part."""
    if fmt == "jsonl":
        return jsonl_bytes(table)
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def write_part(path: Path, table, fmt: str) -> dict[str, Any]:
    """Write one chunk's rows as ``path`` atomically; returns what verifies it later (sha256, bytes)."""
    data = part_bytes(table, fmt)
    atomic_write_bytes(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def part_problem(parts: Path, index: int, entry: Any, chunk_size: int) -> str | None:
    """Why the saved part of chunk ``index`` cannot be trusted (None: it is exactly what was written)."""
    try:
        file, start, rows, end = entry["file"], int(entry["start"]), int(entry["rows"]), int(entry["end"])
        sha, size = str(entry["sha256"]), int(entry["bytes"])
    except (KeyError, TypeError, ValueError):
        return "has an incomplete progress entry"
    if not isinstance(file, str) or file.rsplit(".", 1)[0] != f"part-{index:06d}":
        return f"is named {file!r} in progress.json, not chunk {index}'s part"
    if start != index * chunk_size or end != start + rows or not 0 < rows <= chunk_size:
        return f"records rows [{start}, {end}), not a slice of chunk {index}"
    path = parts / file
    if not path.is_file():
        return "is missing"
    if path.stat().st_size != size:
        return f"has {path.stat().st_size} bytes, {size} were written (truncated or edited)"
    if file_sha256(path) != sha:
        return "does not match its sha256 (edited, swapped or corrupted)"
    return None


class Progress:
    """``progress.json`` in the parts folder: the run's identity and which chunks are done (atomically updated)."""

    def __init__(self, parts: Path, identity: dict[str, Any], fresh: bool, log: Callable[[str], None]):
        self.parts, self.path = parts, parts / "progress.json"
        self.identity = identity
        self.done: dict[int, dict[str, Any]] = {}
        if parts.exists() and not fresh:
            try:
                old = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                old = None
            if not isinstance(old, dict):
                old = None
            if old and old.get("version") != PROGRESS_VERSION:
                log(f"earlier progress in {parts} has format version {old.get('version')!r} (this one writes "
                    f"{PROGRESS_VERSION}); starting afresh")
            elif old and old.get("identity") == identity:
                self._load_verified(old.get("done"), log)
                if self.done:
                    log(f"resuming: {len(self.done)} chunk(s) already scored in {parts}")
            elif old is not None and old:
                why = [k for k in identity if old.get("identity", {}).get(k) != identity[k]]
                log(f"earlier progress in {parts} is for a different {'/'.join(why) or 'run'}; starting afresh")
        if parts.exists() and not self.done:
            shutil.rmtree(parts)
        parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def _load_verified(self, done: Any, log: Callable[[str], None]) -> None:
        """Keep the saved parts that pass :func:`part_problem`; drop (and say) every other one: it is re-scored."""
        if not isinstance(done, dict):
            return
        for k, v in done.items():
            try:
                index = int(k)
            except ValueError:
                continue
            why = part_problem(self.parts, index, v, int(self.identity["chunk_size"]))
            if why is None:
                self.done[index] = v
                continue
            name = v.get("file") if isinstance(v, dict) else None
            log(f"resume: part {name or '?'} (chunk {index}) {why}; re-scoring it")  # rewritten under its own name

    def part_name(self, index: int, fmt: str) -> str:
        return f"part-{index:06d}.{'jsonl' if fmt == 'jsonl' else 'parquet'}"

    def mark(self, res: ChunkResult, file: str, check: dict[str, Any]) -> None:
        """Record a written part: its rows ``[start, end)`` and ``check`` (sha256, bytes from :func:`write_part`)."""
        self.done[res.index] = {"file": file, "start": res.start, "end": res.start + res.n, "rows": res.n, **check,
                                "n_errors": res.n_errors,
                                "errors": [list(e) for e in res.errors[:MAX_REPORTED_ERRORS]]}
        if res.cascade_errors:  # --cascade: routed rows whose replay stopped on a missing answer
            self.done[res.index].update(n_cascade_errors=len(res.cascade_errors),
                                        cascade_errors=[list(e) for e in res.cascade_errors[:MAX_REPORTED_ERRORS]])
        self._save()

    def _save(self) -> None:
        body = {"version": PROGRESS_VERSION, "identity": self.identity,
                "done": {str(k): v for k, v in sorted(self.done.items())}}
        atomic_write_bytes(self.path, json.dumps(body, indent=1).encode())


class PartsError(RuntimeError):
    """The parts of this run do not add up to the input (a part changed during the run, rows missing): the output
    is not written; rerunning re-scores whatever fails its check."""


def assemble(parts: Path, entries: list[dict[str, Any]], output: Path, fmt: str, schema, n_rows: int) -> None:
    """Concatenate the parts in chunk order into ``output`` (temp name, then renamed), checking each part's sha256
    as it is read and the total row count against ``n_rows``: a short or padded output is never written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    total = 0
    try:
        with open(tmp, "wb") as out:
            w = None if fmt == "jsonl" else pq.ParquetWriter(out, schema, compression="zstd")
            for e in entries:
                data = (parts / e["file"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != e["sha256"]:
                    raise PartsError(f"part {e['file']} changed after it was written; rerun the same command to "
                                     "re-score it")
                if w is None:
                    out.write(data)
                    total += data.count(b"\n")
                else:
                    t = pq.read_table(pa.BufferReader(data), schema=schema)
                    total += t.num_rows
                    w.write_table(t)
            if w is not None:
                w.close()
        if total != n_rows:
            raise PartsError(f"the parts hold {total} rows but the input has {n_rows}; output not written")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)


def output_rows(output: Path, fmt: str) -> int:
    """Rows in a written output (parquet metadata; jsonl newlines): the final check before "scored N rows"."""
    if fmt == "jsonl":
        n = 0
        with open(output, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
        return n
    import pyarrow.parquet as pq

    return pq.ParquetFile(output).metadata.num_rows


def bundle_id(router: Any, bundle: str) -> str:
    """The bundle part of a run's identity: its manifest's hash (a re-exported bundle starts afresh)."""
    m = Path(bundle) / "manifest.json"
    if m.exists():
        return hashlib.sha256(m.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(getattr(router, "manifest", {}), sort_keys=True, default=str).encode()
                          ).hexdigest()
