"""Reading values out of log records: field paths, scores, chat prompts, responses and times.

Shared by every log format (:mod:`aco_bert.data.logs.base`), so ``--score metadata.x`` means the same lookup in a
LiteLLM row, a Langfuse trace and an OTel span, and a prompt becomes the same text whichever tool logged it.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aco_bert.data.io import read_json_source, read_jsonl
from aco_bert.data.messages import content_text
from aco_bert.data.schema import DataError

MISSING = object()
TRUE_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}
SYSTEM_ROLES = ("system", "developer")


def json_records(path: str, list_keys: tuple[str, ...] = ("data",)) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row, record) of a ``.jsonl`` file (row = 0-based line) or a ``.json`` file holding a list of records, an
    API page ``{"data": [...]}`` or one record (row = index in the list)."""
    if Path(path).suffix.lower() in (".jsonl", ".ndjson"):
        yield from read_jsonl(path)
        return
    if Path(path).suffix.lower() != ".json":
        raise DataError(f"unsupported file type {Path(path).suffix!r}; expected .json or .jsonl", file=path)
    doc = read_json_source(path)
    if isinstance(doc, dict):
        doc = next((doc[k] for k in list_keys if isinstance(doc.get(k), list)), [doc])
    if not isinstance(doc, list):
        raise DataError(f"a JSON {type(doc).__name__}, not a list of records", file=path)
    for i, r in enumerate(doc):
        if not isinstance(r, dict):
            raise DataError(f"record is a {type(r).__name__}, not an object", file=path, row=i)
        yield i, r


def parse_json_text(v: Any) -> Any:
    """A JSON-object/array string as its value (LiteLLM stores ``metadata``/``messages`` as JSON text in some
    exports), anything else unchanged."""
    if isinstance(v, str) and v.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def lookup(obj: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``obj``, or :data:`MISSING`.

    A key may itself hold dots (OTel attribute ``aco.eval.passed``): the longest matching key wins at each level.
    In a list, a number indexes it and a name selects the (last) item whose ``name`` is that name, giving its
    ``value`` at the path's end (Langfuse ``scores.correctness``; ``stringValue`` when ``value`` is null).
    """
    parts = path.split(".") if path else []
    return _lookup(obj, parts)


def _lookup(obj: Any, parts: list[str]) -> Any:
    if not parts:
        return obj
    obj = parse_json_text(obj)
    for k in range(len(parts), 0, -1):
        key, rest = ".".join(parts[:k]), parts[k:]
        if isinstance(obj, dict) and key in obj:
            got = _lookup(obj[key], rest)
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            got = _lookup(obj[int(key)], rest)
        elif isinstance(obj, list):
            named = [x for x in obj if isinstance(x, dict) and x.get("name") == key]
            if not named:
                continue
            item = named[-1]
            if not rest:
                v = item.get("value")
                return item.get("stringValue", MISSING) if v is None else v
            got = _lookup(item, rest)
        else:
            continue
        if got is not MISSING:
            return got
    return MISSING


def to_score(v: Any, threshold: float | None) -> float:
    """A score as ``success``: bool -> 0/1; with ``threshold`` any number -> 1.0 if >= threshold else 0.0;
    otherwise a number in [0, 1], kept as is (a soft label). Raises ValueError saying why."""
    if isinstance(v, dict) and "value" in v:  # a whole Langfuse score object
        v = v["value"]
    if isinstance(v, str):
        s = v.strip().lower()
        if s in TRUE_WORDS:
            v = TRUE_WORDS[s]
        else:
            try:
                v = float(s)
            except ValueError:
                raise ValueError(f"score {v!r} is not a number or a boolean") from None
    if isinstance(v, bool):
        return float(v)
    if not isinstance(v, (int, float)) or math.isnan(float(v)):
        raise ValueError(f"score {v!r} is not a number or a boolean")
    x = float(v)
    if threshold is not None:
        return 1.0 if x >= threshold else 0.0
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"score {v!r} is not in [0, 1] (pass --score_threshold T to map a numeric score to "
                         "1 when >= T, else 0)")
    return x


def number(v: Any, what: str) -> float:
    """A numeric cell (int, float or numeric string) as float; None/missing -> NaN; else ValueError."""
    if v is None or v is MISSING or v == "":
        return math.nan
    if isinstance(v, bool):
        raise ValueError(f"{what} {v!r} is not a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {v!r} is not a number") from None


def seconds(t: Any) -> float:
    """A timestamp as epoch seconds: a number (seconds; > 1e11 read as milliseconds) or an ISO-8601 string."""
    if t is None or t is MISSING or t == "":
        return math.nan
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return float(t) / 1000.0 if t > 1e11 else float(t)
    if isinstance(t, str):
        try:
            d = datetime.fromisoformat(t.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {t!r} is not ISO-8601") from None
        return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"timestamp {t!r} is not a number or an ISO-8601 string")


def duration(start: Any, end: Any) -> float:
    """``end - start`` in seconds (NaN when either is missing)."""
    return seconds(end) - seconds(start)


def message_text(m: dict[str, Any], where: str) -> str:
    """The text of one chat message: OpenAI ``content`` (str / parts) or OTel GenAI ``parts`` [{type, content}]."""
    if isinstance(m.get("parts"), list):
        out = []
        for p in m["parts"]:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict) and p.get("type", "text") == "text":
                t = p.get("content", p.get("text"))
                if isinstance(t, str):
                    out.append(t)
        return "\n".join(x for x in out if x)
    return content_text(m.get("content"), where)


def as_messages(obj: Any) -> list[dict[str, Any]] | str | None:
    """Chat input in any logged shape -> a list of ``{role, ...}`` messages, or a bare prompt string."""
    obj = parse_json_text(obj)
    if obj is None or obj == {} or obj == []:
        return None
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        if "messages" in obj:
            return as_messages(obj["messages"])
        if "role" in obj:
            return [obj]
        for key in ("prompt", "input", "text", "content"):
            if isinstance(obj.get(key), str):
                return obj[key]
        raise ValueError(f"input is an object with keys {sorted(obj)[:8]}, neither messages nor a prompt")
    if isinstance(obj, list):
        if all(isinstance(m, str) for m in obj):
            return obj[-1] if obj else None
        bad = [j for j, m in enumerate(obj) if not isinstance(m, dict)]
        if bad:
            raise ValueError(f"message {bad[0]} is a {type(obj[bad[0]]).__name__}, not an object")
        return obj
    raise ValueError(f"input is a {type(obj).__name__}, not messages or text")


def prompt_text(messages: Any, include_system: bool = False) -> str:
    """The routed prompt of a logged call: the LAST user message's text (earlier turns are context the router
    does not see, as at serving time); ``include_system`` puts the system/developer message(s) first, joined by a
    blank line. "" when there is none."""
    msgs = as_messages(messages)
    if msgs is None:
        return ""
    if isinstance(msgs, str):
        return msgs
    users = [j for j, m in enumerate(msgs) if m.get("role") == "user"]
    if not users:
        return ""
    text = message_text(msgs[users[-1]], f"message {users[-1]}")
    if include_system:
        sys_text = [message_text(m, f"message {j}") for j, m in enumerate(msgs) if m.get("role") in SYSTEM_ROLES]
        text = "\n\n".join(t for t in [*sys_text, text] if t)
    return text


def response_text(obj: Any) -> str | None:
    """The model's answer text: a string, an OpenAI completion (``choices[0].message.content`` / ``.text``), a
    message ``{role, content|parts}``, or a list of output messages (the last one's text); other JSON as JSON."""
    obj = parse_json_text(obj)
    if obj is None or obj is MISSING or obj == {} or obj == []:
        return None
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("choices"), list) and obj["choices"]:
        c = obj["choices"][0]
        if isinstance(c, dict):
            if isinstance(c.get("message"), dict):
                return message_text(c["message"], "response message")
            if isinstance(c.get("text"), str):
                return c["text"]
    if isinstance(obj, dict) and ("content" in obj or "parts" in obj):
        return message_text(obj, "response message")
    if isinstance(obj, list) and obj and all(isinstance(m, dict) and ("content" in m or "parts" in m) for m in obj):
        return message_text(obj[-1], "response message")
    return json.dumps(obj, ensure_ascii=False)


def normalise(text: str) -> str:
    """What makes two logged prompts the same prompt: Unicode NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def prompt_hash(text: str) -> str:
    """The prompt id of a prompt text: ``p-`` + 16 hex digits of the SHA-256 of :func:`normalise` (stable across
    runs and machines, so the same prompt sent to two models is one prompt with two outcomes)."""
    return "p-" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]
