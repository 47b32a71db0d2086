"""Chat messages -> the one text the router scores.

One function for every caller (the batch scorer's ``messages`` column, the HTTP ``/v1/route`` and the
OpenAI-compatible proxy), so a conversation routes alike wherever it comes from.

Why this joining: roles are dropped so a one-message chat routes exactly like its bare prompt (what the router
was trained on); messages are joined by blank lines, the text parts of one message by newlines; the router's
head+tail truncation then keeps the start (system/task) and the latest turns.

Content follows the OpenAI chat format: a string, ``None`` (tool-call turns) or a list of parts. A part is a
``{"type": "text", "text": ...}`` object (an object without ``type`` counts as text), a non-text object
(images, audio, ...: skipped, not routable text), or a bare string, which is text: the OpenAI SDKs and many
clients send ``["a", "b"]`` for ``[{"type": "text", "text": "a"}, ...]``, and dropping it would route on less
than the user wrote.
"""

from __future__ import annotations

import json
from typing import Any

from aco_bert.data.text import is_blank


def content_text(content: Any, where: str = "message") -> str:
    """The text of one message's ``content`` ("" for ``None``). Raises ValueError naming ``where`` when the content
    is neither text, ``None`` nor a list of parts, or a text part carries no string text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        raise ValueError(f"{where} content is a {type(content).__name__}, not text")
    parts: list[str] = []
    for k, part in enumerate(content):
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") != "text":
            continue
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            raise ValueError(f"{where} content part {k} has no text")
    return "\n".join(p for p in parts if p)


def messages_to_text(messages: Any, *, require_text: bool = True) -> str:
    """The routed text of a chat: every message's text content, in order, joined by blank lines.

    ``messages`` is a list of ``{role, content}`` objects, or its JSON string (a csv cell). Raises ValueError
    naming what is wrong; with ``require_text`` (the default) also when the chat holds no text at all, otherwise
    it returns "" and the caller words its own "empty prompt" error."""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise ValueError(f"messages is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list of {{role, content}}, got {type(messages).__name__}")
    if not messages:
        if require_text:
            raise ValueError("messages is an empty list")
        return ""
    texts: list[str] = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {j} is a {type(m).__name__}, not an object with role and content")
        if not isinstance(m.get("role"), str):
            raise ValueError(f"message {j} has no string role")
        texts.append(content_text(m.get("content"), f"message {j}"))
    text = "\n\n".join(t for t in texts if t)
    if require_text and is_blank(text):  # zero-width / BOM / NUL only is no text either
        raise ValueError("messages hold no text")
    return text
