"""JSON artifacts: strict JSON (NaN/inf -> null, numpy scalars -> Python) written atomically.

Every JSON a run or bundle writes goes through here, so a reader never meets ``NaN`` (invalid JSON) or a
half-written file after a crash.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None, numpy scalars/arrays as Python values, paths as strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n")
    tmp.replace(path)


class FormatError(ValueError):
    """A JSON artifact that is missing, not JSON, or of another format; the message names the file."""


def read_record(path: str | Path, fmt: str, missing: str = "") -> dict[str, Any]:
    """The JSON object at ``path`` whose ``format`` field is ``fmt`` (the check every stage contract and bundle
    manifest starts with); :class:`FormatError` naming the file otherwise. ``missing``: a hint appended when the
    file does not exist (e.g. which command writes it)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path.parent}: missing {path.name}{f' ({missing})' if missing else ''}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise FormatError(f"{path}: format {got!r} is not {fmt!r}")
    return data
