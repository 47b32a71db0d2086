"""OpenAI-compatible forwarding: send a routed chat completion to the chosen tier's upstream, stream passed through.

The client talks to one endpoint with ``model: "aco-router"``; the service picks the tier, rewrites ``model`` to the
tier's upstream model id, adds that upstream's key (read from the environment, never from config or logs) and
relays the answer byte for byte, including server-sent-event streams, under the relay rules of
:mod:`aco_bert.serve.relay` (allow-listed headers; upstream failures mapped to a status + short reason, never
their bodies; redirects never followed; 504 on timeout), so a client never waits on a dead upstream longer than the
configured timeouts and never sees what the upstream says about the proxy's credential.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from aco_bert.serve.config import ServeConfig, UpstreamConfig
from aco_bert.serve.metrics import ServeMetrics
from aco_bert.serve.relay import MAX_ERROR_BODY, ProxyError, relay_headers, upstream_failure

__all__ = ["ProxyError", "Upstream", "forward", "make_client", "resolve_upstreams"]
REDACTED = b"[redacted]"  # what replaces the upstream credential wherever an upstream answer echoes it


@dataclass
class Upstream:
    tier: int  # 1-based
    base_url: str
    model: str  # model id sent upstream
    api_key_env: str | None = None

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ProxyError(503, "upstream_key_missing",
                             f"tier {self.tier} upstream needs an API key in ${self.api_key_env}, which is not set")
        return key

    def public(self) -> dict[str, Any]:
        """What /v1/router shows: where it goes and whether the key is present (never the key)."""
        return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "api_key_present": bool(self.api_key_env and os.environ.get(self.api_key_env))}


def resolve_upstreams(spec: Any, config: ServeConfig) -> dict[int, Upstream]:
    """Tier number -> upstream: the serve config (by tier number or model name) overrides the router spec."""
    out: dict[int, Upstream] = {}
    known = {str(i + 1) for i in range(len(spec.tiers))} | {t.model for t in spec.tiers}
    unknown = sorted(set(config.upstreams) - known)
    if unknown:
        raise ValueError(f"serve config: upstreams for unknown tier(s) {unknown}; tiers are 1..{len(spec.tiers)} "
                         f"or models {[t.model for t in spec.tiers]}")
    for i, t in enumerate(spec.tiers, start=1):
        cfg: UpstreamConfig | None = config.upstreams.get(str(i)) or config.upstreams.get(t.model)
        base = cfg.base_url if cfg else getattr(t, "upstream", None)
        if not base:
            continue
        model = (cfg.model if cfg and cfg.model else None) or getattr(t, "upstream_model", None) or t.model
        key_env = (cfg.api_key_env if cfg and cfg.api_key_env else None) or getattr(t, "api_key_env", None)
        out[i] = Upstream(tier=i, base_url=base.rstrip("/"), model=model, api_key_env=key_env)
    return out


def make_client(config: ServeConfig) -> httpx.AsyncClient:
    timeout = httpx.Timeout(config.upstream_timeout_s, connect=config.upstream_connect_timeout_s)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    # trust_env=False: proxies from the environment must not silently reroute model traffic; follow_redirects=False:
    # a redirect would carry the credential to wherever the upstream points (the relay answers 502 instead).
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False, follow_redirects=False)


async def forward(client: httpx.AsyncClient, up: Upstream, body: dict[str, Any], metrics: ServeMetrics) -> Response:
    """POST ``body`` to ``up``'s /chat/completions; relay the answer (streamed when ``body['stream']``)."""
    payload = dict(body)
    payload["model"] = up.model
    req_headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "accept": "text/event-stream" if payload.get("stream") else "application/json"}
    key = up.api_key()
    if key:
        req_headers["authorization"] = f"Bearer {key}"
    url = f"{up.base_url}/chat/completions"
    tier = str(up.tier)
    t0 = time.perf_counter()
    try:
        req = client.build_request("POST", url, content=json.dumps(payload).encode(), headers=req_headers)
        resp = await client.send(req, stream=True)
    except httpx.TimeoutException as e:
        metrics.upstream.inc(tier=tier, status="timeout")
        raise ProxyError(504, "upstream_timeout",
                         f"tier {up.tier} upstream did not answer in time ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        metrics.upstream.inc(tier=tier, status="unreachable")
        raise ProxyError(502, "upstream_unreachable",  # the exception's text may name internal hosts: type only
                         f"tier {up.tier} upstream unreachable ({type(e).__name__})") from e
    metrics.upstream_latency.observe(time.perf_counter() - t0, tier=tier)
    metrics.upstream.inc(tier=tier, status=str(resp.status_code))

    if not 200 <= resp.status_code < 300:  # 3xx included: never followed, never relayed
        raw = b""
        try:
            async for chunk in resp.aiter_bytes():
                raw += chunk
                if len(raw) >= MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass
        finally:
            await resp.aclose()
        raise upstream_failure(up.tier, resp.status_code, resp.headers, raw[:MAX_ERROR_BODY], secret=key)

    out_headers = relay_headers(resp.headers, secret=key)
    out_headers["x-aco-upstream-status"] = str(resp.status_code)
    media_type = out_headers.get("content-type")

    if not payload.get("stream"):
        try:
            content = await resp.aread()
        except httpx.TimeoutException as e:
            raise ProxyError(504, "upstream_timeout", f"tier {up.tier} upstream stalled mid-answer") from e
        except httpx.HTTPError as e:
            raise ProxyError(502, "upstream_unreachable", f"tier {up.tier} upstream broke mid-answer ({type(e).__name__})") from e
        finally:
            await resp.aclose()
        if key and key.encode() in content:  # an upstream echoing the credential in an answer: never relayed
            content = content.replace(key.encode(), REDACTED)
        return Response(content=content, status_code=resp.status_code, headers=out_headers, media_type=media_type)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.aiter_bytes():  # decoded: content-encoding is not relayed
                yield chunk.replace(key.encode(), REDACTED) if key else chunk  # best effort within a chunk
        except httpx.HTTPError as e:  # headers are gone already: report in-band as an SSE error event
            metrics.errors.inc(endpoint="/v1/chat/completions", code="upstream_stream_broken")
            err = {"error": {"code": "upstream_stream_broken", "type": "upstream_error",
                             "message": f"tier {up.tier} upstream stream ended early: {type(e).__name__}"}}
            yield f"data: {json.dumps(err)}\n\n".encode()

    return StreamingResponse(relay(), status_code=resp.status_code, headers=out_headers,
                             media_type=media_type or "text/event-stream", background=BackgroundTask(resp.aclose))
