"""Pure ASGI middleware of the service: the request-body guard and the per-request metrics.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so that a refused body never reaches JSON parsing and a
streamed answer is timed until its last byte; both run before FastAPI sees the request.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aco_bert.data.text import invalid_unicode_in, may_hold_surrogates
from aco_bert.serve.metrics import ServeMetrics

PATHS = ("/v1/route", "/v1/route/batch", "/v1/escalate", "/healthz", "/readyz", "/v1/router", "/metrics",
         "/v1/chat/completions", "/v1/models", "/openapi.json", "/docs")


def endpoint_label(path: str) -> str:
    """Metric label for a path: known endpoints by name, everything else lumped (bounded label cardinality)."""
    return path if path in PATHS else "other"


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    kind = "unavailable" if status == 503 else "invalid_request_error"
    body = json.dumps({"error": {"code": code, "message": message, "type": kind}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")] + list(headers or [])})
    await send({"type": "http.response.body", "body": body})


def body_text_problem(body: str) -> str | None:
    """The first string (key or value) of a JSON body that is not valid Unicode -- a lone surrogate escape such as
    ``"\\ud800"`` is valid JSON but reached the tokeniser and failed there (500s, for batch-mates too). Cheap for
    ordinary bodies: only one holding a surrogate escape is parsed here (unparseable: left to the endpoint)."""
    if not may_hold_surrogates(body):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return invalid_unicode_in(data)


class BodyGuard:
    """Pure ASGI: refuse bodies over ``max_bytes`` (413, counted as they stream, chunked or not), bodies that are
    not UTF-8 (400) and bodies that stall (408), before any JSON parsing; then replay the buffered body."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: ServeMetrics, timeout_s: float = 30.0) -> None:
        self.app, self.max_bytes, self.metrics, self.timeout_s = app, max_bytes, metrics, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        path = endpoint_label(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                self.metrics.errors.inc(endpoint=path, code="bad_content_length")
                return await send_error(send, 400, "bad_content_length", "Content-Length is not an integer")
            if n > self.max_bytes:
                self.metrics.errors.inc(endpoint=path, code="body_too_large")
                return await send_error(send, 413, "body_too_large",
                                         f"request body of {n} bytes exceeds the limit of {self.max_bytes} bytes")
        chunks, total = [], 0
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                self.metrics.errors.inc(endpoint=path, code="body_timeout")
                return await send_error(send, 408, "body_timeout",
                                         f"request body not received within {self.timeout_s:g} s")
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                self.metrics.errors.inc(endpoint=path, code="body_too_large")
                return await send_error(send, 413, "body_too_large",
                                         f"request body exceeds the limit of {self.max_bytes} bytes")
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        data = b"".join(chunks)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.metrics.errors.inc(endpoint=path, code="invalid_utf8")
            return await send_error(send, 400, "invalid_utf8",
                                     f"request body is not valid UTF-8 (byte {e.start}: {e.reason})")
        bad = body_text_problem(text)
        if bad:
            self.metrics.errors.inc(endpoint=path, code="invalid_text")
            return await send_error(send, 400, "invalid_text", f"request holds text that is not valid Unicode: {bad}")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)



class ConcurrencyGuard:
    """Pure ASGI: at most ``limit`` requests in flight (probes and /metrics exempt); one more -> 503 with
    ``Retry-After`` at once, so an overloaded server says so instead of answering late (uvicorn's own
    ``limit_concurrency`` counts idle connections too and answers without ``Retry-After``)."""

    EXEMPT = ("/healthz", "/readyz", "/metrics")

    def __init__(self, app: ASGIApp, limit: int, metrics: ServeMetrics, retry_after_s: int = 1) -> None:
        self.app, self.limit, self.metrics, self.retry_after = app, limit, metrics, str(max(1, int(retry_after_s)))
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            return await self.app(scope, receive, send)
        if self.inflight >= self.limit:
            self.metrics.errors.inc(endpoint=endpoint_label(scope.get("path", "")), code="overloaded")
            self.metrics.shed.inc(reason="concurrency")
            return await send_error(send, 503, "overloaded",
                                    f"{self.inflight} requests in flight (limit {self.limit}); retry later",
                                    headers=[(b"retry-after", self.retry_after.encode())])
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


class MetricsMiddleware:
    """Pure ASGI: count every request by endpoint/method/status and time it until its last body byte."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        label = endpoint_label(scope.get("path", ""))
        status = {"code": 500}
        t0 = time.perf_counter()
        self.metrics.inflight.inc()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.inc(endpoint=label, method=scope.get("method", ""), status=str(status["code"]))
            self.metrics.latency.observe(time.perf_counter() - t0, endpoint=label)
