"""The ``aco-cascade`` pseudo-model: the proxy runs the router's cascade itself, judging each tier's real answer.

route -> call the chosen tier's upstream -> :meth:`Router.escalate` with that answer (and the earlier tiers'
answers, for agreement) -> keep it, or call the tier the verdict names; at most the bundle's ``cascade.max_runs``
tiers, never above the top one. The client gets the kept completion (its ``model`` is the model that answered)
and ``x-aco-tiers-run`` / ``x-aco-p-correct`` headers.

Streaming is *verify-then-stream*: every upstream call is made non-streaming (an answer cannot be judged before it
is complete), and only the accepted text is then sent as OpenAI ``chat.completion.chunk`` events, so the first
byte waits for the whole cascade. Each upstream call is counted and priced once, when its answer is read (usage x
the tier's spec prices), so a failure mid-cascade (502/504 naming the tier) never bills an earlier call twice.
Every call goes through :func:`forward`, so the relay rules (:mod:`aco_bert.serve.relay`: allow-listed headers, no
error bodies, no redirects, mapped statuses with ``Retry-After``) hold for a cascade exactly as for one call.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from aco_bert.data.messages import content_text
from aco_bert.runtime.inputs import MAX_LOGPROBS
from aco_bert.runtime.walk import CascadeWalk, max_runs_of, verifier_text
from aco_bert.serve.engine import RouteArgs, RouteEngine
from aco_bert.serve.metrics import ServeMetrics
from aco_bert.serve.proxy import ProxyError, Upstream, forward
from aco_bert.types import RoutingInputError

CASCADE_MODEL = "aco-cascade"
STREAM_CHUNK_CHARS = 32  # characters of the accepted answer per SSE chunk
# the client's streaming knobs: every upstream call of a cascade is a plain (non-streaming) one
_STREAM_ONLY_KEYS = ("stream", "stream_options")
# what :func:`forward` kept is already sanitised by :mod:`aco_bert.serve.relay`; the body is rebuilt here
_DROP_UPSTREAM_HEADERS = {"content-type", "content-length"}


@dataclass
class CascadeRun:
    """One tier's call and its verdict."""

    tier: int  # 1-based
    body: dict[str, Any]  # the upstream's JSON answer
    text: str  # choices[0].message content
    headers: dict[str, str]
    cost: float | None  # USD; None when the answer has no usage or the spec has no prices
    p_correct: float = math.nan
    accept: bool = False
    reasons: list[str] = field(default_factory=list)

    def public(self, model: str) -> dict[str, Any]:
        return {"tier": self.tier, "model": model, "p_correct": self.p_correct, "accept": self.accept,
                "cost_usd": self.cost, "usage": self.body.get("usage"), "reasons": self.reasons}


def check_cascade_request(body: dict[str, Any]) -> None:
    """Refuse what a cascade cannot honour (-> 422): it verifies exactly one answer per request."""
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise RoutingInputError(f"{CASCADE_MODEL} verifies one answer per request: n must be 1, got {n!r}")


def call_cost(tier: Any, usage: Any) -> tuple[float | None, dict[str, int]]:
    """USD of one call from its ``usage`` and the tier's prices (USD per 1M tokens), plus its token counts."""
    tokens: dict[str, int] = {}
    if isinstance(usage, dict):
        for kind in ("prompt", "completion"):
            v = usage.get(f"{kind}_tokens")
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                tokens[kind] = v
    prices = (getattr(tier, "input_price", None), getattr(tier, "output_price", None))
    if len(tokens) < 2 or any(p is None for p in prices):
        return None, tokens
    return (tokens["prompt"] * float(prices[0]) + tokens["completion"] * float(prices[1])) / 1e6, tokens


def answer_logprobs(choice: dict[str, Any]) -> list[float] | None:
    """Token logprobs of an answer that carries them (the client asked for ``logprobs``), for the verifier."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    if not isinstance(content, list):
        return None
    vals = [min(float(c["logprob"]), 0.0) for c in content[:MAX_LOGPROBS]
            if isinstance(c, dict) and isinstance(c.get("logprob"), (int, float)) and math.isfinite(c["logprob"])]
    return vals or None


class ProxyCascade:
    """One request's cascade: the upstream calls, their verdicts and the metrics they leave."""

    def __init__(self, client: httpx.AsyncClient, upstreams: dict[int, Upstream], engine: RouteEngine, router: Any,
                 metrics: ServeMetrics) -> None:
        self.client, self.upstreams, self.engine, self.metrics = client, upstreams, engine, metrics
        self.spec = router.spec
        self.policy = getattr(getattr(router, "layer", None), "cascade", None)
        self.max_runs = max_runs_of(router)
        self.runs: list[CascadeRun] = []
        self.tried: list[int] = []

    def model(self, tier: int) -> str:
        return self.spec.tiers[tier - 1].model

    def fail(self, e: ProxyError, tier: int) -> ProxyError:
        """Count a failed call once and say where in the cascade it happened."""
        self.metrics.cascade_failures.inc(tier=str(tier), code=e.code)
        before = ",".join(str(r.tier) for r in self.runs)
        e.message = f"{CASCADE_MODEL}: {e.message}" + (f" (after tier(s) {before} ran)" if before else "")
        e.args = (e.message,)
        return e

    async def call(self, tier: int, body: dict[str, Any]) -> CascadeRun:
        """One non-streaming upstream call, counted and priced exactly once."""
        up = self.upstreams.get(tier)
        if up is None:
            raise self.fail(ProxyError(503, "no_upstream", f"tier {tier} ({self.model(tier)}) has no upstream "
                                       "configured"), tier)
        payload = {k: v for k, v in body.items() if k not in _STREAM_ONLY_KEYS}
        self.tried.append(tier)
        self.metrics.cascade_calls.inc(tier=str(tier))
        try:
            resp = await forward(self.client, up, payload, self.metrics)
        except ProxyError as e:
            raise self.fail(e, tier) from e
        try:
            answer = json.loads(bytes(resp.body))
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            self.metrics.cascade_unpriced.inc(tier=str(tier))
            raise self.fail(ProxyError(502, "upstream_bad_response",
                                       f"tier {tier} upstream answered {resp.status_code} without a JSON object"), tier)
        cost, tokens = call_cost(self.spec.tiers[tier - 1], answer.get("usage"))
        for kind, v in tokens.items():
            self.metrics.cascade_tokens.inc(v, tier=str(tier), kind=kind)
        if cost is None:
            self.metrics.cascade_unpriced.inc(tier=str(tier))
        else:
            self.metrics.cascade_cost.inc(cost, tier=str(tier))
        choices = answer.get("choices")
        message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(
            choices[0], dict) else None
        try:
            text = content_text(message.get("content"), "choices[0].message") if isinstance(message, dict) else None
        except ValueError:
            text = None
        if text is None:
            raise self.fail(ProxyError(502, "upstream_bad_response",
                                       f"tier {tier} upstream answer has no choices[0].message text"), tier)
        answer.setdefault("model", up.model)
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP_UPSTREAM_HEADERS}
        return CascadeRun(tier, answer, text, headers, cost)

    async def run(self, body: dict[str, Any], args: RouteArgs, first_tier: int) -> CascadeRun:
        """Call, judge, escalate until a run is accepted, the top tier ran or ``max_runs`` tiers ran."""
        walk = CascadeWalk(int(first_tier), self.max_runs)
        while True:
            tier = walk.tier
            r = await self.call(tier, body)
            text = verifier_text(r.text)
            e = await self.engine.escalate(args.prompt, tier, None, args.step_type, args.metadata,
                                           response=text, responses=walk.responses(),
                                           logprobs=answer_logprobs(r.body["choices"][0]))
            r.p_correct, r.accept, r.reasons = float(e.p_success), bool(e.accept), list(e.reasons)
            self.runs.append(r)
            self.metrics.escalations.inc(tier_run=str(tier), outcome="accept" if e.accept else "escalate")
            if walk.judged(text, e) is None:
                return r

    def stop(self, final: CascadeRun) -> str:
        """accepted (the verifier kept it), top_tier (kept because nothing is above) or max_runs (the cap)."""
        if not final.accept:
            return "max_runs"
        bar = None if self.policy is None else self.policy.bar(len(self.runs) - 1)
        forced = final.tier == self.spec.n_tiers and bar is not None and not final.p_correct >= bar
        return "top_tier" if forced else "accepted"

    def cost(self) -> float | None:
        costs = [r.cost for r in self.runs]
        return None if any(c is None for c in costs) else float(sum(costs))

    def headers(self, route_headers: dict[str, str], route_tiers: list[Any]) -> dict[str, str]:
        """The route's x-aco-* headers, then the cascade's: the answering tier and its prior, the tiers run, the
        accepted run's P(correct), why it stopped and the priced cost."""
        out = dict(route_headers)
        out["x-aco-tiers-run"] = ",".join(str(t) for t in self.tried)
        if self.runs:
            final = self.runs[-1]
            prior = route_tiers[final.tier - 1]
            cost = self.cost()
            out.update({"x-aco-tier": str(final.tier), "x-aco-model": self.model(final.tier),
                        "x-aco-p-success": f"{prior.p_success:.6f}",
                        "x-aco-expected-cost": f"{prior.expected_cost:.6g}",
                        "x-aco-p-correct": f"{final.p_correct:.6f}", "x-aco-cascade-stop": self.stop(final),
                        "x-aco-cascade-cost": "unknown" if cost is None else f"{cost:.6g}"})
        return out


async def cascade_completion(client: httpx.AsyncClient, upstreams: dict[int, Upstream], engine: RouteEngine,
                             router: Any, metrics: ServeMetrics, body: dict[str, Any], args: RouteArgs,
                             route: Any, route_headers: dict[str, str]) -> Response:
    """Run the cascade for one chat-completions request routed to ``route`` (a RouteResponse) and answer it."""
    check_cascade_request(body)
    c = ProxyCascade(client, upstreams, engine, router, metrics)
    try:
        final = await c.run(body, args, router.layer.cascade_start(route.tier, route.min_tier))
    except ProxyError as e:
        e.aco_headers = c.headers(route_headers, route.tiers)  # type: ignore[attr-defined]
        raise
    stop = c.stop(final)
    metrics.cascade_accepted.inc(tier=str(final.tier), stop=stop)
    metrics.cascade_runs.observe(len(c.runs))
    headers = {**final.headers, **c.headers(route_headers, route.tiers)}
    ext = {"tiers_run": [r.tier for r in c.runs], "p_correct": final.p_correct, "stop": stop,
           "cost_usd": c.cost(), "runs": [r.public(c.model(r.tier)) for r in c.runs]}
    if body.get("stream"):
        return StreamingResponse(sse_chunks(final.body, final.text, body), headers=headers,
                                 media_type="text/event-stream")
    return JSONResponse({**final.body, "aco": ext}, headers=headers)


def _event(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


async def sse_chunks(answer: dict[str, Any], text: str, request: dict[str, Any]) -> AsyncIterator[bytes]:
    """The accepted answer as OpenAI streams it: a role chunk, content chunks, tool calls, the finish chunk, the
    usage chunk when ``stream_options.include_usage`` asked for it, then ``[DONE]``."""
    choice = answer["choices"][0]
    message = choice.get("message") or {}
    base = {"id": answer.get("id", "chatcmpl-aco"), "object": "chat.completion.chunk",
            "created": answer.get("created", int(time.time())), "model": answer.get("model")}
    if answer.get("system_fingerprint") is not None:
        base["system_fingerprint"] = answer["system_fingerprint"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": message.get("role", "assistant"), "content": ""})
    for i in range(0, len(text), STREAM_CHUNK_CHARS):
        yield chunk({"content": text[i: i + STREAM_CHUNK_CHARS]})
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls) if isinstance(c, dict)]})
    yield chunk({}, choice.get("finish_reason") or "stop")
    opts = request.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") and answer.get("usage") is not None:
        yield _event({**base, "choices": [], "usage": answer["usage"]})
    yield b"data: [DONE]\n\n"
