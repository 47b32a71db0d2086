"""The FastAPI application: routing endpoints, health/readiness, metrics and the OpenAI-compatible proxy.

``create_app(router, config)`` takes an already loaded :class:`aco_bert.runtime.router.Router` (or ``loader``, a callable
that loads one in the background so /healthz answers while a large bundle loads). Every error leaves as
``{"error": {"code", "message", "type", ...}}`` with a 4xx/5xx status, including those raised before a handler
runs (body too large, invalid UTF-8, invalid JSON), so clients parse one error shape.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aco_bert.types import Decision, RoutingInputError
from aco_bert.serve import schemas as S
from aco_bert.serve.cascade_proxy import CASCADE_MODEL, cascade_completion, check_cascade_request
from aco_bert.serve.config import ServeConfig
from aco_bert.serve.auth import ApiKeyGuard, load_key_hashes
from aco_bert.serve.engine import Overloaded, RouteArgs, RouteEngine, RouteTimeout
from aco_bert.serve.metrics import ServeMetrics
from aco_bert.serve.middleware import BodyGuard, ConcurrencyGuard, MetricsMiddleware, endpoint_label
from aco_bert.serve.proxy import ProxyError, Upstream, forward, make_client, resolve_upstreams

ROUTER_MODEL = "aco-router"
_ERRORS = {400: {"model": S.ErrorResponse}, 413: {"model": S.ErrorResponse}, 422: {"model": S.ErrorResponse},
           503: {"model": S.ErrorResponse}, 504: {"model": S.ErrorResponse}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_json(status: int, code: str, message: str, metrics: ServeMetrics | None, path: str,
               headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    kind = "invalid_request_error" if 400 <= status < 500 else ("upstream_error" if status in (502, 504)
                                                                   else "server_error")
    if status == 503:
        kind = "unavailable"
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # never echo unencodable text back
    err = {"code": code, "message": message, "type": kind}
    err.update({k: v for k, v in extra.items() if v is not None})
    if metrics is not None:
        metrics.errors.inc(endpoint=endpoint_label(path), code=code)
    return JSONResponse({"error": err}, status_code=status, headers=headers)


def cut_chars(text: str, max_chars: int) -> tuple[str, str | None]:
    """Head+tail cut of a huge prompt before tokenising (bounds tokeniser time); says what it did."""
    if len(text) <= max_chars:
        return text, None
    head = max_chars // 2
    tail = max_chars - head
    return text[:head] + text[len(text) - tail:], f"prompt cut head+tail from {len(text)} to {max_chars} characters"


def router_policy(router: Any) -> str | None:
    """Name of the bundle's default policy (``router-<name>`` is accepted as a proxy model alias)."""
    pol = getattr(getattr(router, "layer", None), "policy", None)
    name = getattr(pol, "name", None)
    return name if isinstance(name, str) else None


def frontier_tier(spec: Any) -> int:
    """1-based tier of the "always-frontier" baseline: ``spec.frontier`` when set, else the top tier."""
    models = [t.model for t in spec.tiers]
    return models.index(spec.frontier) + 1 if getattr(spec, "frontier", None) in models else len(models)


def served_models(router: Any) -> list[str]:
    """The proxy's pseudo-models: ``aco-router``, ``router-<policy>`` (route once) and ``aco-cascade``."""
    policy = router_policy(router)
    return [ROUTER_MODEL] + ([f"router-{policy}"] if policy else []) + [CASCADE_MODEL]


class _State:
    """What the handlers share: the router (once loaded), its engine, upstreams, metrics."""

    def __init__(self, config: ServeConfig, metrics: ServeMetrics) -> None:
        self.config, self.metrics = config, metrics
        self.router: Any = None
        self.engine: RouteEngine | None = None
        self.upstreams: dict[int, Upstream] = {}
        self.verified = False
        self.error: str | None = None
        self.bundle: str | None = None
        self.started = time.time()
        self.client = None

    def install(self, router: Any, verified: bool) -> None:
        self.upstreams = resolve_upstreams(router.spec, self.config)
        self.engine = RouteEngine(router, threads=self.config.route_threads, timeout_s=self.config.route_timeout_s,
                                  microbatch=self.config.microbatch, window_ms=self.config.microbatch_window_ms,
                                  microbatch_max=self.config.microbatch_max,
                                  microbatch_inflight=self.config.microbatch_inflight, metrics=self.metrics,
                                  max_queue=self.config.max_queue,
                                  shed_wait_fraction=self.config.shed_wait_fraction)
        self.verified = bool(verified and getattr(router, "manifest", None))
        b = getattr(router, "bundle_dir", None)
        self.bundle = str(b) if b is not None else None
        self.router = router
        self.metrics.ready.set(1.0 if self.verified else 0.0)

    def need(self) -> tuple[Any, RouteEngine]:
        if self.router is None or self.engine is None:
            why = f"bundle failed to load: {self.error}" if self.error else "bundle is still loading"
            raise ApiError(503, "not_ready", why)
        return self.router, self.engine


def create_app(router: Any = None, config: ServeConfig | None = None, *,
               loader: Callable[[], Any] | None = None, verified: bool | None = None) -> FastAPI:
    """Build the service around a loaded ``router`` (or a ``loader`` run in a background thread at startup).

    ``verified`` says whether the bundle's manifest was checked when it was loaded (default: ``config.verify``,
    which is how :func:`load_router` loads it); /readyz is 200 only for a verified bundle."""
    if router is None and loader is None:
        raise ValueError("create_app needs a router or a loader")
    config = config or ServeConfig()
    key_hashes = load_key_hashes(config.api_key_hashes, config.api_keys_file)
    metrics = ServeMetrics()
    st = _State(config, metrics)
    verified = config.verify if verified is None else verified
    if router is not None:
        st.install(router, verified)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st.client = make_client(config)
        if st.router is None and loader is not None:
            def load() -> None:
                try:
                    st.install(loader(), verified)
                except Exception as e:  # reported by /readyz and 503s; the process stays up for diagnosis
                    st.error = f"{type(e).__name__}: {e}"

            threading.Thread(target=load, name="aco-bundle-load", daemon=True).start()
        try:
            yield
        finally:
            await st.client.aclose()
            if st.engine is not None:
                st.engine.close()

    # redirect_slashes=False: Starlette's trailing-slash 307 builds Location from the client's Host header
    app = FastAPI(title="aco_bert routing service", version="1", lifespan=lifespan, redirect_slashes=False,
                  description="Routes each prompt or agent step to the cheapest model tier expected to succeed, "
                              "and proxies OpenAI-compatible chat completions to the chosen tier.")
    app.state.aco = st
    app.add_middleware(BodyGuard, max_bytes=config.max_body_bytes, metrics=metrics,
                       timeout_s=config.body_timeout_s)
    app.add_middleware(ConcurrencyGuard, limit=config.max_inflight, metrics=metrics)
    if key_hashes:  # before the body is read: an unauthenticated caller costs no parsing
        app.add_middleware(ApiKeyGuard, hashes=key_hashes, metrics=metrics, protect_metrics=config.auth_metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last = outermost: sees 413s too

    # -- error shapes ---------------------------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        for e in errs:
            if e.get("type") == "json_invalid":
                pos = e.get("loc", ("body", "?"))[-1]
                why = (e.get("ctx") or {}).get("error", "JSON decode error")
                return error_json(400, "invalid_json", f"request body is not valid JSON: {why} at char {pos}",
                                  metrics, request.url.path)
        parts = []
        for e in errs:
            loc = [str(x) for x in e.get("loc", ()) if x != "body"]
            if e.get("type") == "missing" and not loc:
                parts.append("request body is missing or empty (expected a JSON object)")
                continue
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        param = ".".join(str(x) for x in errs[0].get("loc", ()) if x != "body") if errs else None
        return error_json(422, "invalid_request", "; ".join(parts), metrics, request.url.path, param=param or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_json(exc.status_code, code, str(exc.detail), metrics, request.url.path,
                          headers=getattr(exc, "headers", None))

    @app.exception_handler(RoutingInputError)
    async def _routing(request: Request, exc: RoutingInputError):
        return error_json(422, "invalid_input", str(exc), metrics, request.url.path)

    @app.exception_handler(RouteTimeout)
    async def _route_timeout(request: Request, exc: RouteTimeout):
        return error_json(504, "route_timeout", str(exc), metrics, request.url.path)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded):
        return error_json(503, "overloaded", str(exc), metrics, request.url.path,
                          headers={"retry-after": str(exc.retry_after_s)})

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error_json(exc.status, exc.code, exc.message, metrics, request.url.path, **exc.extra)

    @app.exception_handler(ProxyError)
    async def _proxy(request: Request, exc: ProxyError):
        headers = dict(getattr(exc, "aco_headers", {}) or {})
        if exc.upstream_status is not None:
            headers["x-aco-upstream-status"] = str(exc.upstream_status)
        return error_json(exc.status, exc.code, exc.message, metrics, request.url.path, headers=headers,
                          upstream_status=exc.upstream_status, upstream_reason=exc.upstream_reason)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        return error_json(500, "internal_error", f"{type(exc).__name__}: {exc}", metrics, request.url.path)

    # -- helpers --------------------------------------------------------------------------------------------------
    async def unless_gone(request: Request, work):
        """Await ``work`` unless the client disconnects first; then cancel it (a call still queued for a thread
        never runs), so abandoned requests do not keep the server busy."""
        task = asyncio.ensure_future(work)

        async def gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watch = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if task.done():
            try:
                return task.result()
            except (ApiError, RoutingInputError, RouteTimeout, Overloaded, StarletteHTTPException):
                raise
            except Exception as e:  # answered as a handled 500: an unhandled one makes uvicorn drop the connection
                raise ApiError(500, "internal_error", f"{type(e).__name__}: {e}") from e
        task.cancel()
        metrics.errors.inc(endpoint=endpoint_label(request.url.path), code="client_gone")
        raise ApiError(499, "client_closed_request", "the client closed the connection before the answer")

    def to_args(req: S.RouteRequest | S.RoutingFields | None, text: str) -> tuple[RouteArgs, str | None]:
        prompt, note = cut_chars(text, config.max_prompt_chars)
        n = st.router.spec.n_tiers
        if req is not None and req.min_tier is not None and req.min_tier > n:
            raise ApiError(422, "invalid_input", f"min_tier {req.min_tier} is not a tier in 1..{n}", param="min_tier")
        if req is None:
            return RouteArgs(prompt), note
        return RouteArgs(prompt, step_type=req.step_type, domain=req.domain, budget=req.budget,
                         min_tier=req.min_tier, metadata=req.metadata), note

    def check_messages(messages: list | None) -> None:
        if messages is not None and len(messages) > config.max_messages:
            raise ApiError(422, "too_many_messages",
                           f"{len(messages)} messages exceed the limit of {config.max_messages}")

    def describe(router: Any, d: Decision, note: str | None, latency_ms: float, endpoint: str) -> S.RouteResponse:
        models = [t.model for t in router.spec.tiers]
        cut = getattr(router, "cut", None)
        kept = (f"router kept {cut.max_chunks} windows of {cut.max_length} tokens (the first {cut.max_chunks - 1} and "
                f"the last)" if getattr(cut, "chunked", False)
                else f"router kept {getattr(router, 'max_length', '?')} tokens ({getattr(router, 'truncation', '?')})")
        notes = [n for n in (note, kept if d.truncated else None) if n]
        metrics.record_decision(d, endpoint, frontier_tier(router.spec))
        if notes:
            metrics.truncated.inc()
        return S.RouteResponse(
            tier=d.tier, model=d.model, p_success=float(d.p_success), expected_cost=float(d.cost),
            tiers=[S.TierScore(tier=i + 1, model=models[i] if i < len(models) else f"tier{i + 1}",
                               p_success=float(p), expected_cost=float(c))
                   for i, (p, c) in enumerate(zip(d.probs, d.expected_cost))],
            reasons=list(d.reasons), policy=d.policy, min_tier=int(d.min_tier), n_tokens=int(d.n_tokens),
            truncated=bool(d.truncated or note), truncation="; ".join(notes) or None, latency_ms=latency_ms)

    # -- endpoints ------------------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=S.HealthResponse, tags=["ops"])
    async def healthz():
        """The process is up and serving HTTP (says nothing about the bundle: see /readyz)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=S.ReadyResponse, responses={503: {"model": S.ReadyResponse}}, tags=["ops"])
    async def readyz():
        """200 once the bundle is loaded and its manifest verified; 503 while loading, after a failed load, or when
        the bundle was loaded without verification."""
        ready = st.router is not None and st.verified
        body = {"ready": ready, "verified": st.verified, "bundle": st.bundle, "error": st.error}
        if st.router is not None and not st.verified:
            body["error"] = "bundle loaded without manifest verification"
        elif st.router is None and not st.error:
            body["error"] = "bundle is still loading"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    async def metrics_endpoint():
        """Prometheus text exposition: requests, latency histograms, decisions per tier, escalations, errors
        (under ``--workers N`` the sum over all workers, whichever one answers)."""
        return Response(metrics.render(), media_type=ServeMetrics.CONTENT_TYPE)

    @app.get("/v1/router", response_model=S.RouterInfo, responses=_ERRORS, tags=["routing"])
    async def router_info():
        """The loaded router: tiers (with their upstreams, never keys), spec, bundle manifest and live metrics."""
        router, _ = st.need()
        spec = router.spec
        tiers = []
        for i, t in enumerate(spec.tiers, start=1):
            up = st.upstreams.get(i)
            tiers.append({"tier": i, "model": t.model, "name": t.label, "input_price": t.input_price,
                          "output_price": t.output_price, "upstream": up.public() if up else None})
        manifest = dict(getattr(router, "manifest", None) or {})
        return {"spec": {"name": spec.name, "floors": dict(spec.floors), "step_type_min": dict(spec.step_type_min),
                         "frontier": spec.frontier, "dataset": spec.dataset},
                "tiers": tiers, "policy": router_policy(router), "max_length": getattr(router, "max_length", None),
                "models": served_models(router),
                "manifest": manifest, "metrics": metrics.summary(),
                "service": {"uptime_s": round(time.time() - st.started, 3), "verified": st.verified,
                            "bundle": st.bundle, "microbatch": config.microbatch, "max_batch": config.max_batch,
                            "max_body_bytes": config.max_body_bytes, "max_prompt_chars": config.max_prompt_chars,
                            "int8": getattr(router, "int8", None), "mode": getattr(router, "mode", None),
                            "pid": os.getpid()}}

    @app.post("/v1/route", response_model=S.RouteResponse, responses=_ERRORS, tags=["routing"])
    async def route(req: S.RouteRequest, request: Request):
        """Choose the cheapest tier expected to succeed for one prompt (or conversation)."""
        router, engine = st.need()
        check_messages(req.messages)
        args, note = to_args(req, req.text())
        t0 = time.perf_counter()
        d = await unless_gone(request, engine.route(args))
        return describe(router, d, note, (time.perf_counter() - t0) * 1000, "/v1/route")

    @app.post("/v1/route/batch", response_model=S.RouteBatchResponse, responses=_ERRORS, tags=["routing"])
    async def route_batch(req: S.RouteBatchRequest, request: Request):
        """Route up to ``max_batch`` prompts in one forward pass; one bad item refuses the batch and is named."""
        router, engine = st.need()
        if len(req.items) > config.max_batch:
            raise ApiError(422, "batch_too_large", f"{len(req.items)} items exceed max_batch {config.max_batch}",
                           param="items")
        pairs = []
        for it in req.items:
            check_messages(it.messages)
            pairs.append(to_args(it, it.text()))
        t0 = time.perf_counter()
        ds = await unless_gone(request, engine.route_batch([a for a, _ in pairs]))
        ms = (time.perf_counter() - t0) * 1000
        return {"decisions": [describe(router, d, n, ms, "/v1/route/batch") for d, (_, n) in zip(ds, pairs)],
                "latency_ms": ms}

    @app.post("/v1/escalate", response_model=S.EscalateResponse, responses=_ERRORS, tags=["routing"])
    async def escalate(req: S.EscalateRequest, request: Request):
        """After running ``tier_run``: keep its answer, or escalate to the next tier. The verdict reads the run's
        trace and, when given, its ``response`` (with ``responses`` of earlier tiers and ``logprobs``)."""
        router, engine = st.need()
        check_messages(req.messages)
        n = router.spec.n_tiers
        if req.tier_run > n:
            raise ApiError(422, "invalid_input", f"tier_run {req.tier_run} is not a tier in 1..{n}", param="tier_run")
        prompt, _ = cut_chars(req.text(), config.max_prompt_chars)
        t0 = time.perf_counter()
        e = await unless_gone(request, engine.escalate(prompt, req.tier_run, req.trace.as_dict(), req.step_type,
                                                       response=req.response, responses=req.earlier(),
                                                       logprobs=req.logprobs))
        metrics.escalations.inc(tier_run=str(req.tier_run), outcome="accept" if e.accept else "escalate")
        out = e.to_dict()
        out["latency_ms"] = (time.perf_counter() - t0) * 1000
        return out

    @app.get("/v1/models", tags=["openai"])
    async def models():
        """OpenAI-style model list: the router pseudo-models a client may ask for."""
        router, _ = st.need()
        names = served_models(router)
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "aco_bert"} for n in names]}

    @app.get("/v1/models/{model_id}", responses={404: {"model": S.ErrorResponse}}, tags=["openai"])
    async def model(model_id: str):
        """OpenAI-style model retrieve (``client.models.retrieve``): one served pseudo-model, else 404."""
        router, _ = st.need()
        names = served_models(router)
        if model_id not in names:
            raise ApiError(404, "model_not_found", f"model {model_id!r} is not served here; use one of {names}",
                           param="model")
        return {"id": model_id, "object": "model", "owned_by": "aco_bert"}

    @app.post("/v1/chat/completions", responses={**_ERRORS, 404: {"model": S.ErrorResponse},
                                                 502: {"model": S.ErrorResponse}}, tags=["openai"])
    async def chat_completions(req: S.ChatCompletionRequest, request: Request):
        """Route the conversation, then forward it to the chosen tier's upstream; streams are passed through.
        ``aco-cascade`` runs the cascade instead (:mod:`aco_bert.serve.cascade_proxy`; streams verify-then-stream).

        Response headers name the decision: ``x-aco-tier``, ``x-aco-model``, ``x-aco-p-success``,
        ``x-aco-expected-cost``, ``x-aco-policy``, ``x-aco-truncated`` (cascade: + ``x-aco-tiers-run``,
        ``x-aco-p-correct``, ``x-aco-cascade-stop``, ``x-aco-cascade-cost``)."""
        router, engine = st.need()
        allowed = served_models(router)
        if req.model not in allowed:
            raise ApiError(404, "model_not_found", f"model {req.model!r} is not served here; use one of {allowed}",
                           param="model")
        check_messages(req.messages)
        if req.model == CASCADE_MODEL:
            check_cascade_request(req.model_extra or {})  # before routing: a refused request is not a decision
        args, note = to_args(req.aco, S.messages_text(req.messages))
        t0 = time.perf_counter()
        d = await engine.route(args)
        r = describe(router, d, note, (time.perf_counter() - t0) * 1000, "/v1/chat/completions")
        headers = {"x-aco-tier": str(r.tier), "x-aco-model": r.model, "x-aco-p-success": f"{r.p_success:.6f}",
                   "x-aco-expected-cost": f"{r.expected_cost:.6g}", "x-aco-policy": r.policy,
                   "x-aco-truncated": "true" if r.truncated else "false",
                   "x-aco-route-ms": f"{r.latency_ms:.3f}"}
        up = st.upstreams.get(r.tier)
        if up is None:
            raise ApiError(503, "no_upstream", f"tier {r.tier} ({r.model}) has no upstream configured "
                           "(set upstreams in the serve config or Tier.upstream in the router spec)",
                           tier=r.tier)
        body = dict(await request.json())  # the client's own JSON, forwarded as sent (minus our extension)
        body.pop("aco", None)
        if req.model == CASCADE_MODEL:
            return await cascade_completion(st.client, st.upstreams, engine, router, metrics, body, args, r, headers)
        try:
            resp = await forward(st.client, up, body, metrics)
        except ProxyError as e:
            e.aco_headers = headers  # type: ignore[attr-defined]
            raise
        resp.headers.update(headers)
        return resp

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker process loads the bundle named in the environment.

    Loaded before the worker accepts connections (not in the background), so no worker ever answers 503 to a
    request another, already-ready worker would have served."""
    from aco_bert.serve.config import load_serve_config

    config = load_serve_config(os.environ.get("ACO_SERVE_CONFIG_PATH") or None)
    return create_app(load_router(os.environ["ACO_SERVE_BUNDLE"], config), config)


def load_router(bundle: str | Path, config: ServeConfig) -> Any:
    from aco_bert.runtime import Router

    router = Router.load(bundle, int8=config.int8, verify=config.verify, threads=config.ort_threads)
    # one decision before /readyz turns 200: ONNX Runtime allocates its arenas and plans on the first run, so
    # the first client request on a fresh replica does not pay for it (readiness = loaded, verified and warm)
    router.route_batch(["warm-up request: route this prompt once before serving"])
    return router
