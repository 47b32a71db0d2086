"""The abstract log format: a tool's logged LLM calls -> canonical outcome rows a router can train on.

A format only knows where its tool keeps each field (:meth:`LogFormat.records` yields one :class:`LogRecord` per
logged call); everything a user chooses is done here, once, for every format:

* ``success`` is the user's score at a field path (``--score``, see :func:`~aco_bert.data.logs.fields.lookup`):
  bool -> 0/1; with ``score_threshold`` a number -> 1 if >= threshold else 0; otherwise a number in [0, 1] kept as
  a soft label. A record without it, or with a value outside [0, 1], is a :class:`DataError` naming file and row
  (``on_missing="skip"`` counts records without a score or prompt instead).
* ``prompt`` is the last user message (``include_system`` prepends the system prompt); ``prompt_id`` is
  :func:`~aco_bert.data.logs.fields.prompt_hash` of it, or the user's field (``--prompt_id metadata.task_id``).
* Records that are not a scorable model call (failed calls, embeddings, non-generation spans) are skipped and
  counted by reason, never silently.

:func:`combine` then merges repeats (the same prompt sent to the same model again: real traffic has them, the
canonical table holds one outcome per prompt x model) by averaging success and traces.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from aco_bert.data.logs.fields import (
    MISSING,
    lookup,
    number,
    prompt_hash,
    prompt_text,
    response_text,
    to_score,
)
from aco_bert.data.schema import DataError
from aco_bert.data.text import is_blank

ROW_COLUMNS = ("prompt_id", "prompt", "model", "success", "cost_usd", "input_tokens", "output_tokens", "latency_s",
               "response", "source")
NUMERIC = ("cost_usd", "input_tokens", "output_tokens", "latency_s")
ON_MISSING = ("error", "skip")


@dataclass
class LogRecord:
    """One logged model call, as a format found it. ``view`` is what ``--score``/``--prompt_id``/``--model_field``
    /``--cost_field`` paths are looked up in; the other fields are the format's defaults (raw, parsed here)."""

    row: int | str  # the row a user finds it at (0-based line / list index, or a path such as spans[3])
    view: Mapping[str, Any]
    messages: Any = None
    model: Any = None
    response: Any = None
    cost_usd: Any = None
    input_tokens: Any = None
    output_tokens: Any = None
    latency_s: Any = None
    skip: str | None = None  # not a scorable model call: the reason it is skipped
    score_hint: str = ""  # appended to the "no score" error (e.g. why a trace-level score does not apply)


@dataclass
class ReadStats:
    """What a read did: records seen, kept, and skipped by reason (printed by the import-logs verb)."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def add(self, other: ReadStats) -> None:
        self.read += other.read
        self.kept += other.kept
        self.skipped.update(other.skipped)


class LogFormat(ABC):
    """One tool's log format. Subclasses set ``name`` and implement :meth:`records`; their docstring is the field
    mapping (source field -> canonical column), the README's table is written from them."""

    name: ClassVar[str]

    @abstractmethod
    def records(self, path: str) -> Iterator[LogRecord]:
        """One :class:`LogRecord` per logged call in ``path`` (raise DataError naming file/row on a broken one)."""

    def read(self, path: str, score: str, *, score_threshold: float | None = None, prompt_id: str | None = None,
             include_system: bool = False, on_missing: str = "error", model_field: str | None = None,
             cost_field: str | None = None, stats: ReadStats | None = None) -> pd.DataFrame:
        """The canonical long rows of ``path`` (one per kept call; repeats not yet merged, see :func:`combine`).

        ``score``: field path of the outcome; ``prompt_id``: field path of a user prompt id (default: hash of the
        prompt text); ``model_field``/``cost_field``: override the format's model / cost field; ``stats``: filled
        with counts."""
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        if not score:
            raise ValueError("a score field path is required (e.g. --score metadata.user_feedback)")
        st = stats if stats is not None else ReadStats()
        rows = []
        for rec in self.records(path):
            st.read += 1
            if rec.skip:
                st.skipped[rec.skip] += 1
                continue
            row = self._row(rec, path, score, score_threshold, prompt_id, include_system, on_missing,
                            model_field, cost_field)
            if isinstance(row, str):
                st.skipped[row] += 1
                continue
            rows.append(row)
            st.kept += 1
        return pd.DataFrame(rows, columns=list(ROW_COLUMNS))

    def _row(self, rec: LogRecord, path: str, score: str, threshold: float | None, pid_field: str | None,
             include_system: bool, on_missing: str, model_field: str | None, cost_field: str | None
             ) -> dict[str, Any] | str:
        """A canonical row, or the skip reason (``on_missing="skip"``); DataError naming file/row otherwise."""

        def fail(reason: str) -> DataError:
            return DataError(reason, file=path, row=rec.row)

        try:
            text = prompt_text(rec.messages, include_system)
        except ValueError as e:
            raise fail(f"unreadable prompt: {e}") from None
        if is_blank(text):
            if on_missing == "skip":
                return "no prompt (no user message)"
            raise fail("no prompt: the record holds no user message (was prompt logging on? --on_missing skip "
                       "counts such records instead)")
        raw = lookup(rec.view, score)
        if raw is MISSING or raw is None:
            if on_missing == "skip":
                return f"no score {score!r}"
            raise fail(f"no score at {score!r}{rec.score_hint} (--on_missing skip counts such records instead)")
        try:
            success = to_score(raw, threshold)
        except ValueError as e:
            raise fail(f"{score}: {e}") from None
        model = lookup(rec.view, model_field) if model_field else rec.model
        if model is MISSING or not isinstance(model, str) or not model.strip():
            raise fail(f"no model name{f' at {model_field!r}' if model_field else ''}")
        if pid_field:
            pid = lookup(rec.view, pid_field)
            if pid is MISSING or pid is None or str(pid).strip() == "":
                raise fail(f"no prompt id at {pid_field!r}")
            pid = str(pid)
        else:
            pid = prompt_hash(text)
        row: dict[str, Any] = {"prompt_id": pid, "prompt": text, "model": model.strip(), "success": success,
                               "source": self.name}
        cost = lookup(rec.view, cost_field) if cost_field else rec.cost_usd
        for col, v in (("cost_usd", cost), ("input_tokens", rec.input_tokens), ("output_tokens", rec.output_tokens),
                       ("latency_s", rec.latency_s)):
            try:
                x = number(v, col)
            except ValueError as e:
                raise fail(str(e)) from None
            if x < 0:
                raise fail(f"negative {col} {x!r}")
            row[col] = x
        try:
            row["response"] = response_text(rec.response)
        except ValueError as e:
            raise fail(f"unreadable response: {e}") from None
        return row


def combine(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Concatenate read rows into one canonical long table: repeats of a prompt x model are merged (success and
    traces averaged, the first response kept), and every row of a prompt id takes its first prompt text.
    Returns (table, counts) with ``merged repeats`` and ``prompt text differs within a prompt id``."""
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        pd.DataFrame(columns=list(ROW_COLUMNS))
    counts: dict[str, int] = {}
    if df.empty:
        return df, counts
    first_text = df.groupby("prompt_id", sort=False)["prompt"].transform("first")
    differ = int((first_text != df["prompt"]).sum())
    if differ:
        counts["rows whose prompt text differs from their prompt id's first text (first kept)"] = differ
    df = df.assign(prompt=first_text)
    keys = ["prompt_id", "model"]
    dup = int(df.duplicated(keys).sum())
    if dup:
        counts["repeated prompt x model calls merged (success and traces averaged)"] = dup
        agg: dict[str, Any] = {"prompt": "first", "success": "mean", "response": "first", "source": "first"}
        agg.update({c: (lambda s: float(np.nanmean(s)) if s.notna().any() else math.nan) for c in NUMERIC})
        df = df.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()[list(ROW_COLUMNS)]
    return df, counts
