"""The files of a resumable run: one atomically written part per finished chunk, ``progress.json``, the output.

Why atomic writes (temp name, fsync, rename): a run killed at any instant leaves either a whole part and its
``progress.json`` entry or neither, so a rerun of the same command can trust every part it finds and redo only the
rest. Parts are assembled in chunk order at the end, so a resumed run writes the same bytes as one that never
stopped.
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

PROGRESS_VERSION = 1


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


def write_part(path: Path, table, fmt: str) -> None:
    """One chunk's rows as ``path`` (jsonl or zstd parquet), written atomically."""
    if fmt == "jsonl":
        atomic_write_bytes(path, jsonl_bytes(table))
        return
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class Progress:
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
        if res.cascade_errors:  # --cascade: routed rows whose replay stopped on a missing answer
            self.done[res.index].update(n_cascade_errors=len(res.cascade_errors),
                                        cascade_errors=[list(e) for e in res.cascade_errors[:MAX_REPORTED_ERRORS]])
        self._save()

    def _save(self) -> None:
        body = {"version": PROGRESS_VERSION, "identity": self.identity,
                "done": {str(k): v for k, v in sorted(self.done.items())}}
        atomic_write_bytes(self.path, json.dumps(body, indent=1).encode())


def assemble(parts: Path, names: list[str], output: Path, fmt: str, schema) -> None:
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


def bundle_id(router: Any, bundle: str) -> str:
    """The bundle part of a run's identity: its manifest's hash (a re-exported bundle starts afresh)."""
    m = Path(bundle) / "manifest.json"
    if m.exists():
        return hashlib.sha256(m.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(getattr(router, "manifest", {}), sort_keys=True, default=str).encode()
                          ).hexdigest()
