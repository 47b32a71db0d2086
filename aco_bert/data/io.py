"""Reading JSON and JSONL sources for the adapters: one place for the error that names file and row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator


def read_json_source(path_or_url: str | Path) -> Any:
    """A JSON document from a local path or a public http(s) URL (the adapters' online fallback)."""
    from aco_bert.data.schema import DataError

    src = str(path_or_url)
    if src.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(src, timeout=60) as r:  # noqa: S310 - pinned public URLs only
            return json.loads(r.read().decode("utf-8"))
    with open(src, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e}", file=src) from e


def iter_jsonl(lines: Iterable[str], file: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(0-based line index, object) per non-blank line; a bad line raises DataError naming file and row.

    Blank lines are skipped but keep their numbers, so ``row`` is always the line a user finds in an editor - 1.
    """
    from aco_bert.data.schema import DataError

    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON line: {e}", file=file, row=i) from e
        if not isinstance(r, dict):
            raise DataError(f"JSON line is a {type(r).__name__}, not an object", file=file, row=i)
        yield i, r


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        yield from iter_jsonl(f, str(path))
