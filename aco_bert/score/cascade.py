"""``--cascade``: replay the bundle's response-aware cascade offline on answers the input already holds.

Why offline: a table that carries every tier's answer to each prompt (RouterBench's wide CSV, a canonical outcome
table with a ``response`` column) says what the cascade *would* have done -- which tiers it would have called, which
answer it would have kept, what it would have paid -- without calling a model. The loop is the live proxy's
(:mod:`aco_bert.serve.cascade_proxy`): route, judge the tier's answer with :meth:`Router.escalate` (earlier tiers'
answers given for agreement), keep it or climb to the tier the verdict names, at most ``cascade.max_runs`` tiers.
:class:`~aco_bert.runtime.walk.CascadeWalk` is that loop without I/O, shared with the proxy.

Where the answers come from (``--response-columns``; chosen once per input, see :func:`resolve_responses`):

* a **wide template** (it holds ``{model}`` and/or ``{tier}``): one column per tier, e.g. ``{model}|response`` or
  ``response_{tier}`` (``{model}`` = the spec's model name, ``{tier}`` = the 1-based tier);
* a **long column** (any other value): one column whose cell is a mapping / JSON object {model name or tier: text};
* default: ``{model}|response``, then ``{model}|model_response`` (RouterBench's wide columns), then ``responses``.

A cell that is a (stringified) list of strings -- RouterBench's cells -- is joined by newlines
(:func:`aco_bert.data.adapters.routerbench.parse_response`); an empty cell is no answer (csv cannot tell ""
from null). When the cascade wants a tier whose answer is missing it stops there and the row's ``cascade_error``
names that tier: never an answer the replay did not have, never a silent accept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from aco_bert.runtime.walk import CascadeWalk, max_runs_of, verifier_text
from aco_bert.types import RoutingInputError

DEFAULT_TEMPLATES = ("{model}|response", "{model}|model_response")
DEFAULT_LONG_COLUMN = "responses"
PLACEHOLDERS = ("{model}", "{tier}")


def cascade_rule(router: Any) -> dict[str, Any]:
    """The loaded cascade rule, as the resume identity records it (a changed rule must not reuse old parts)."""
    c = getattr(getattr(router, "layer", None), "cascade", None)
    return {"accept": getattr(c, "accept", None), "accept_first": getattr(c, "accept_first", None),
            "max_runs": max_runs_of(router)}


@dataclass
class CascadeOutcome:
    """What the replay of one prompt did: ``tier`` is None when it stopped on a missing answer (``error``)."""

    tiers: list[int]
    tier: int | None
    p_correct: float | None
    error: str | None = None


def replay_cascade(router: Any, prompt: str, first_tier: int, answer: Callable[[int], str | None], *,
                   step_type: str | None = None, trace: Callable[[int], dict[str, Any] | None] | None = None,
                   require_answers: bool = True) -> CascadeOutcome:
    """Replay the bundle's cascade on one prompt: ``answer(tier)`` gives that tier's recorded answer (None: none;
    a str raised as ValueError is its reason), ``trace(tier)`` its run signals (optional). A missing answer, or
    one the router refuses, stops the replay with an ``error`` naming the tier -- unless the input carries no
    answers at all (``require_answers=False``) and the bundle's verifier does not read them: a trace-only
    cascade (e.g. SWE-bench's) judges each run by its trace."""
    walk = CascadeWalk(int(first_tier), max_runs_of(router))
    reads = bool(getattr(getattr(getattr(router, "layer", None), "verifier", None), "responses", False))
    models = [t.model for t in router.spec.tiers]
    while True:
        t = walk.tier
        try:
            text = answer(t)
        except ValueError as e:
            return CascadeOutcome(walk.tiers, None, None, f"tier {t} ({models[t - 1]}): {e}")
        if text is None and (reads or require_answers):
            return CascadeOutcome(walk.tiers, None, None, f"no response for tier {t} ({models[t - 1]})")
        text = None if text is None else verifier_text(text)
        try:
            e = router.escalate(prompt, t, None if trace is None else trace(t), step_type,
                                response=text, responses=walk.responses())
        except RoutingInputError as err:
            return CascadeOutcome(walk.tiers, None, None, f"tier {t} ({models[t - 1]}): {err}")
        if walk.judged(text, e) is None:
            return CascadeOutcome(walk.tiers, walk.tier, walk.p_correct)


# --- where the answers are in the input --------------------------------------------------------------------------


def check_response_columns(value: str) -> None:
    """A template must format with only ``{model}``/``{tier}`` and use one of them (else every tier shares one
    column); any other value names a long column."""
    if "{" not in value:
        if not value.strip():
            raise ValueError("response_columns must not be empty")
        return
    try:
        a, b = value.format(model="a", tier=1), value.format(model="b", tier=2)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"response_columns template {value!r}: the placeholders are {{model}} and {{tier}} "
                         f"({type(e).__name__}: {e})") from None
    if a == b:
        raise ValueError(f"response_columns template {value!r} names one column for every tier; use {{model}} or "
                         "{tier}")


def resolve_responses(value: str | None, models: Sequence[str], known: Sequence[str] | None, where: str
                      ) -> tuple[list[str] | None, str | None]:
    """(one column per tier, or None; the long column, or None) for ``value`` (None: the defaults, the first that
    the input has). ``known``: the input's columns (None: it cannot say, e.g. an empty jsonl)."""
    from aco_bert.score.sources import InputError

    def wide(tpl: str) -> list[str]:
        return [tpl.format(model=m, tier=t + 1) for t, m in enumerate(models)]

    have = set(known or ())
    if value is not None:
        check_response_columns(value)
        if "{" in value:
            cols = wide(value)
            if known is not None and not have.intersection(cols):
                raise InputError(f"{where}: --response-columns {value!r} matches no column (wanted e.g. "
                                 f"{cols[0]!r}); columns are {list(known)}")
            return cols, None
        if known is not None and value not in have:
            raise InputError(f"{where}: --response-columns {value!r} is not a column; columns are {list(known)}")
        return None, value
    for tpl in DEFAULT_TEMPLATES:
        if have.intersection(wide(tpl)):
            return wide(tpl), None
    if DEFAULT_LONG_COLUMN in have:
        return None, DEFAULT_LONG_COLUMN
    raise InputError(f"{where}: --cascade needs each tier's response: no {DEFAULT_TEMPLATES[0]!r} / "
                     f"{DEFAULT_TEMPLATES[1]!r} columns for the bundle's models and no {DEFAULT_LONG_COLUMN!r} "
                     f"column (columns are {list(known) if known is not None else 'unknown'}; "
                     "use --response-columns)")


def cell_text(v: Any) -> str | None:
    """One recorded answer as text (None: no answer): lists of strings joined by newlines, "" is no answer."""
    from aco_bert.data.adapters.routerbench import parse_response

    if isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v)):
        raise ValueError(f"the response is a {type(v).__name__} ({v!r}), not text")
    if isinstance(v, dict):
        raise ValueError("the response is a mapping, not text")
    text = parse_response(v)
    return text if text else None


def long_answers(cell: Any, models: Sequence[str], column: str) -> dict[int, Any]:
    """A long cell -> {1-based tier: raw answer}; keys are model names or tier numbers. Raises ValueError."""
    from aco_bert.score.rows import is_missing

    if is_missing(cell) or (isinstance(cell, str) and not cell.strip()):
        return {}
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except json.JSONDecodeError as e:
            raise ValueError(f"column {column!r} is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(cell, dict):
        raise ValueError(f"column {column!r} holds a {type(cell).__name__}, not a mapping {{model or tier: text}}")
    out: dict[int, Any] = {}
    for k, v in cell.items():
        if isinstance(k, str) and k in models:
            t = list(models).index(k) + 1
        else:
            try:
                t = int(k)
            except (TypeError, ValueError):
                t = 0
            if isinstance(k, bool) or not 1 <= t <= len(models) or (isinstance(k, str) and not k.strip().isdigit()):
                raise ValueError(f"column {column!r}: key {k!r} is neither a tier model {list(models)} nor a tier "
                                 f"1..{len(models)}")
        if t in out:
            raise ValueError(f"column {column!r} gives tier {t} twice")
        out[t] = v
    return out


def row_answers(columns: dict[str, list[Any]], i: int, wide: list[str] | None, long: str | None,
                models: Sequence[str]) -> Callable[[int], str | None]:
    """``answer(tier)`` for row ``i`` of a chunk: read lazily, so a bad cell of a tier the cascade never wants does
    not stop it."""
    if wide is not None:
        def answer(t: int) -> str | None:
            col = wide[t - 1]
            if col not in columns:
                return None
            try:
                return cell_text(columns[col][i])
            except ValueError as e:
                raise ValueError(f"column {col!r}: {e}") from None
        return answer
    assert long is not None
    parsed: list[dict[int, Any]] = []

    def answer_long(t: int) -> str | None:
        if not parsed:
            parsed.append(long_answers(columns[long][i], models, long))
        return cell_text(parsed[0].get(t))
    return answer_long


def cascade_columns(router: Any, columns: dict[str, list[Any]], cols: Any, decisions: dict[int, Any],
                    texts: Sequence[str | None], steps: Sequence[str | None], n: int
                    ) -> tuple[dict[str, list[Any]], dict[int, str]]:
    """The :data:`~aco_bert.score.rows.CASCADE_COLUMNS` of one chunk (null for rows the router refused) and the
    local rows whose replay stopped short, with why. ``cols``: the run's :class:`~aco_bert.score.rows.Columns`."""
    from aco_bert.score.rows import finite

    models = [t.model for t in router.spec.tiers]
    out: dict[str, list[Any]] = {"cascade_tiers": [None] * n, "cascade_tier": [None] * n,
                                 "cascade_model": [None] * n, "cascade_p_correct": [None] * n,
                                 "cascade_runs": [None] * n, "cascade_error": [None] * n}
    errors: dict[int, str] = {}
    for i in sorted(decisions):
        tr = None
        if cols.traces:
            def tr(t: int, i: int = i) -> dict[str, Any] | None:
                return columns[cols.traces[t - 1]][i]
        has = bool(cols.responses) or cols.responses_long is not None  # [] = a table without answers
        r = replay_cascade(router, texts[i], router.layer.cascade_start(decisions[i].tier, decisions[i].min_tier),
                           row_answers(columns, i, cols.responses, cols.responses_long, models) if has
                           else (lambda t: None), step_type=steps[i], trace=tr, require_answers=has)
        out["cascade_tiers"][i], out["cascade_runs"][i] = list(r.tiers), len(r.tiers)
        if r.tier is None:
            out["cascade_error"][i] = errors[i] = r.error or "cascade stopped"
            continue
        out["cascade_tier"][i], out["cascade_model"][i] = r.tier, models[r.tier - 1]
        out["cascade_p_correct"][i] = None if r.p_correct is None else finite(r.p_correct)
    return out, errors
