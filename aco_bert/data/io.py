"""Reading JSON and JSONL sources for the adapters: one place for the error that names file and row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from aco_bert.data.schema import DataError
from aco_bert.data.text import invalid_unicode_in, may_hold_surrogates


class SourceNotFound(DataError):
    """A URL that answered 404: adapters reading optional files online treat it as "absent", not as an error."""


def read_json_source(path_or_url: str | Path) -> Any:
    """A JSON document from a local path or a public http(s) URL (the adapters' online fallback)."""
    src = str(path_or_url)
    if src.startswith(("http://", "https://")):
        import urllib.request

        import urllib.error

        try:
            with urllib.request.urlopen(src, timeout=60) as r:  # noqa: S310 - pinned public URLs only
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise SourceNotFound(f"not found online (HTTP 404): {src}", file=src) from None
            raise DataError(f"cannot read {src}: {e}", file=src) from None
        except (urllib.error.URLError, OSError, ValueError) as e:  # offline, unreachable, not JSON
            raise DataError(f"cannot read {src}: {e}; offline, give a local copy (a path, or the data dir via "
                            "ACO_BERT_DATA_DIR / --data-dir)", file=src) from None
    with open(src, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n")
        raise DataError(f"invalid UTF-8 at byte {e.start} (line {line + 1}): {e.reason}", file=src) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", file=src) from e
    if may_hold_surrogates(text) and (why := invalid_unicode_in(doc)):
        raise DataError(why, file=src)
    return doc


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
        if may_hold_surrogates(line) and (why := invalid_unicode_in(r)):
            raise DataError(why, file=file, row=i)
        yield i, r


def decoded_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 file; a line that is not UTF-8 raises DataError naming the file and its 0-based row
    (never a bare UnicodeDecodeError, never silently replaced)."""
    from aco_bert.data.schema import DataError

    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 at byte {e.start} of the line: {e.reason}", file=str(path),
                                row=i) from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    yield from iter_jsonl(decoded_lines(path), str(path))


def utf8_error(path: str | Path, block: int = 8 << 20) -> tuple[int, int, str] | None:
    """(0-based line, byte offset, reason) of the first byte of ``path`` that is not UTF-8, or None: one streamed
    pass, so a reader that must refuse altered text (csv through pandas) can name where it is."""
    carry, base, lines = b"", 0, 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(block)
            data = carry + chunk
            if not data:
                return None
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as e:
                if chunk and e.reason == "unexpected end of data" and e.start >= len(data) - 3:
                    carry = data[e.start:]  # a character cut by the block boundary: finish it with the next block
                    data = data[:e.start]
                else:
                    return lines + data[:e.start].count(b"\n"), base + e.start, e.reason
            if not chunk:
                return None
            lines += data.count(b"\n")
            base += len(data)


def csv_utf8_check(path: str | Path) -> None:
    """A CSV that is not UTF-8 is refused naming the row (0-based after the header), never decoded with U+FFFD."""
    from aco_bert.data.schema import DataError

    bad = utf8_error(path)
    if bad is not None:
        line, byte, why = bad
        raise DataError(f"invalid UTF-8 ({why}) at byte {byte}, line {line + 1}", file=str(path),
                        row=line - 1 if line else "header")
