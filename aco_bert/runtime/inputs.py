"""What the runtime accepts: request validation (every input checked before any work) and the tokenised batch.

Why its own module: the router, the server and the batch scorer must refuse the same bad requests with the same
readable :class:`~aco_bert.types.RoutingInputError` (naming the prompt's position in a batch), and the decision
layer needs each prompt's token counts (for the "truncated" reason) next to the encoder outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aco_bert.spec import RouterSpec
from aco_bert.data.text import clean_text_error, unicode_error
from aco_bert.types import RoutingInputError, RunOutput

MAX_RESPONSE_CHARS = 200_000  # a verifier reads at most this much of one response (longer: refused, not cut)
MAX_LOGPROBS = 100_000
TRACE_ALIASES = (("api_calls", ("api_calls",)), ("cost", ("cost", "cost_usd")))  # signal -> accepted trace keys


@dataclass
class Encoded:
    """A tokenised batch: the ONNX feed plus per-prompt token counts (after truncation) and truncation flags.

    Chunked bundles feed B x C x L windows: ``n_chunks``/``widths`` (windows, longest window per prompt) say how
    far each prompt's padding reaches, ``n_tokens`` counts the distinct tokens its windows keep, and ``limit``
    says what a cut prompt was cut to (for the "truncated" reason)."""

    feed: dict[str, np.ndarray]
    n_tokens: list[int]
    n_tokens_full: list[int]
    n_chunks: list[int] | None = None
    widths: list[int] | None = None
    limit: str | None = None

    @property
    def truncated(self) -> list[bool]:
        return [f > n for n, f in zip(self.n_tokens, self.n_tokens_full)]

    @property
    def sizes(self) -> list[int]:
        """Padded positions per prompt (tokens; windows x longest window when chunked): the batching sort key."""
        if self.n_chunks is None:
            return list(self.n_tokens)
        return [c * w for c, w in zip(self.n_chunks, self.widths)]  # type: ignore[arg-type]

    def rows(self, idx: slice | np.ndarray) -> dict[str, np.ndarray]:
        """The feed of prompts ``idx`` (a slice or an index array), cut to the padding those prompts need."""
        pick = range(len(self.n_tokens))[idx] if isinstance(idx, slice) else idx
        if self.n_chunks is None:
            width = max(self.n_tokens[i] for i in pick)
            return {k: v[idx, :width] for k, v in self.feed.items()}
        c, w = max(self.n_chunks[i] for i in pick), max(self.widths[i] for i in pick)  # type: ignore[index]
        return {k: v[idx, :c, :w] for k, v in self.feed.items()}


def featurizable(step_type: str | None) -> bool:
    """Whether ``step_type`` is one of the step types the handcrafted features one-hot encode."""
    from aco_bert.data.schema import STEP_TYPES

    return step_type in STEP_TYPES


def validate_requests(spec: RouterSpec, prompts: Sequence[Any], step_types: Sequence[Any] | None,
                      domains: Sequence[Any] | None, budgets: Sequence[Any] | None, min_tiers: Sequence[Any] | None
                      ) -> tuple[list[str | None], list[list[str] | None], list[float | None], list[int | None]]:
    """Per-prompt (step_types, domains, budgets, min_tiers), normalised; a bad one raises RoutingInputError.

    A domain may be a string or a list of strings (a blank string = none); a budget a finite number >= 0; a
    min_tier a tier in 1..T; a step type one of the schema's or the spec's."""
    from aco_bert.data.schema import STEP_TYPES

    n = len(prompts)

    def col(name: str, values: Sequence[Any] | None) -> list[Any]:
        if values is None:
            return [None] * n
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
            raise RoutingInputError(f"{name} must be a list with one entry per prompt ({n})")
        return list(values)

    steps, doms, buds, mins = (col("step_types", step_types), col("domains", domains), col("budgets", budgets),
                               col("min_tiers", min_tiers))
    where = (lambda i: "") if n == 1 else (lambda i: f"prompt {i}: ")
    allowed_steps = set(STEP_TYPES) | set(spec.step_type_min)
    t_n = spec.n_tiers
    for i in range(n):
        p = prompts[i]
        if not isinstance(p, str):
            raise RoutingInputError(f"{where(i)}prompt must be a string, got {type(p).__name__}")
        why = clean_text_error(p)  # the loaders' and scorer's own check: one rule at every entry point
        if why is not None:
            raise RoutingInputError(f"{where(i)}prompt is {why}" if why.startswith("empty") else f"{where(i)}prompt: {why}")
        s = steps[i]
        if s is not None and (not isinstance(s, str) or s not in allowed_steps):
            raise RoutingInputError(f"{where(i)}unknown step_type {s!r}; expected one of {sorted(allowed_steps)}")
        d = doms[i]
        if isinstance(d, str):
            doms[i] = [d] if d.strip() else None
        elif d is not None:
            if not isinstance(d, (list, tuple)) or not all(isinstance(x, str) for x in d):
                raise RoutingInputError(f"{where(i)}domain must be a string or a list of strings")
            doms[i] = list(d)
        b = buds[i]
        if b is not None:
            if isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)) or not math.isfinite(b):
                raise RoutingInputError(f"{where(i)}budget must be a finite number, got {b!r}")
            if b < 0:
                raise RoutingInputError(f"{where(i)}budget must be >= 0, got {b}")
            buds[i] = float(b)
        m = mins[i]
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= t_n:
                raise RoutingInputError(f"{where(i)}min_tier {m!r} is not a tier in 1..{t_n}")
            mins[i] = int(m)
    return steps, doms, buds, mins


def validate_tier(tier_run: Any, n_tiers: int) -> int:
    """The 0-based index of a 1-based ``tier_run`` (RoutingInputError unless an int in 1..n_tiers)."""
    if isinstance(tier_run, bool) or not isinstance(tier_run, (int, np.integer)) or not 1 <= int(tier_run) <= n_tiers:
        raise RoutingInputError(f"tier_run {tier_run!r} is not a tier in 1..{n_tiers}")
    return int(tier_run) - 1


def validate_trace(trace: dict[str, Any] | None) -> dict[str, float]:
    """A run's trace -> {api_calls, cost} floats (NaN = unknown: the verifier's missing-value branch).

    ``cost_usd`` is accepted for ``cost``; other keys must be numbers (they are ignored)."""
    if trace is None:
        trace = {}
    if not isinstance(trace, dict):
        raise RoutingInputError("trace must be a mapping of signal -> number")
    out = {}
    for key, aliases in TRACE_ALIASES:
        v = next((trace[a] for a in aliases if trace.get(a) is not None), None)
        if v is None:
            out[key] = float("nan")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise RoutingInputError(f"trace[{key!r}] must be a finite number, got {v!r}")
        if v < 0:
            raise RoutingInputError(f"trace[{key!r}] must be >= 0, got {v}")
        out[key] = float(v)
    known = {a for _, aliases in TRACE_ALIASES for a in aliases}
    for k, v in trace.items():
        if k not in known and v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise RoutingInputError(f"trace[{k!r}] must be a number, got {v!r}")
    return out


def validate_response(response: Any, responses: Any, logprobs: Any, n_tiers: int, tier0: int) -> RunOutput:
    """The run's response, the other tiers' responses ({1-based tier: text}; in a cascade the tiers that ran
    before) and logprobs -> a RunOutput with 0-based tiers; refuses non-strings, non-integer or out-of-range
    tiers, the tier that ran itself, and non-finite or positive logprobs."""
    def text(v: Any, what: str) -> str:
        if not isinstance(v, str):
            raise RoutingInputError(f"{what} must be a string, got {type(v).__name__}")
        if len(v) > MAX_RESPONSE_CHARS:
            raise RoutingInputError(f"{what} is {len(v)} characters; the limit is {MAX_RESPONSE_CHARS}")
        bad = unicode_error(v)
        if bad is not None:
            raise RoutingInputError(f"{what}: {bad}")
        return v

    out = RunOutput(None if response is None else text(response, "response"))
    if responses is not None:
        if not isinstance(responses, dict):
            raise RoutingInputError("responses must map tier (1-based) -> response text")
        for k, v in responses.items():
            integral = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
            if not (integral or (isinstance(k, str) and k.strip().isdigit())):
                raise RoutingInputError(f"responses key {k!r} is not a tier number")
            t = int(k)
            if not 1 <= t <= n_tiers:
                raise RoutingInputError(f"responses tier {k!r} is outside 1..{n_tiers}")
            if t - 1 == tier0:
                raise RoutingInputError(f"responses holds tier {t}, the tier that ran: pass its text as response")
            out.earlier[t - 1] = text(v, f"responses[{t}]")
    if logprobs is not None:
        if isinstance(logprobs, (str, bytes)) or not isinstance(logprobs, Sequence) or len(logprobs) > MAX_LOGPROBS:
            raise RoutingInputError(f"logprobs must be a list of at most {MAX_LOGPROBS} numbers")
        vals = []
        for v in logprobs:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) \
                    or v > 0:
                raise RoutingInputError(f"logprobs must be finite numbers <= 0, got {v!r}")
            vals.append(float(v))
        out.logprobs = vals
    return out
