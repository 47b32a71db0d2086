"""The one check every entry point makes on a prompt's text (loaders, the scorer, and the router's input checks).

Why one function: a text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON's ``\\u``
escapes can produce) cannot be encoded, tokenized or written to any output, and one made only of whitespace,
zero-width characters, BOMs or NULs carries nothing to route on. Both must be refused the same way wherever text
enters, or one path would route what another rejects.
"""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")
# General categories that carry nothing visible: controls (NUL, tab...), format characters (zero-width space and
# joiners, BOM / zero-width no-break space, word joiner, bidi marks, soft hyphen) and separators (spaces).
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def is_blank(text: str) -> bool:
    """True when ``text`` has no visible character: only whitespace, zero-width, BOM, NUL or other controls."""
    return all(c.isspace() or unicodedata.category(c) in INVISIBLE_CATEGORIES for c in text)


def unicode_error(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, e.g. a JSON ``\\u`` escape of half a pair), else None."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    return f"not valid Unicode: lone surrogate U+{ord(m.group()):04X} at character {m.start()}"


def clean_text_error(text: str) -> str | None:
    """Why ``text`` cannot be routed (None when it can): a lone surrogate (not valid Unicode) or nothing visible.

    The reason starts with "empty text" for the second case, the wording every entry point already uses."""
    why = unicode_error(text)
    if why is not None:
        return f"text is {why}"
    if is_blank(text):
        return "empty text (only whitespace, zero-width, BOM or control characters)" if text else "empty text"
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates as ``\\udXXX`` escapes: safe to write to UTF-8, JSON or Arrow (ids, reasons)."""
    return text if _SURROGATE.search(text) is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


def may_hold_surrogates(raw_json: str) -> bool:
    """Whether JSON text could decode to a lone surrogate (only a ``\\uD800``-``\\uDFFF`` escape can make one):
    lets a reader skip the walk of :func:`invalid_unicode_in` for the usual document."""
    return _SURROGATE_ESCAPE.search(raw_json) is not None


def invalid_unicode_in(obj: object, where: str = "") -> str | None:
    """The first string in a decoded JSON value (keys included) that is not valid Unicode, as "field x.y: why",
    or None. Checked before the value reaches pandas/Arrow, which fail on it naming no file or row."""
    if isinstance(obj, str):
        why = unicode_error(obj)
        return None if why is None else f"{where or 'value'} is {why}"
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = f"{where}.{k}" if where else str(k)
            if isinstance(k, str) and unicode_error(k):
                return f"a key is {unicode_error(k)}"
            found = invalid_unicode_in(v, printable(name))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for j, v in enumerate(obj):
            found = invalid_unicode_in(v, f"{where}[{j}]")
            if found:
                return found
    return None
