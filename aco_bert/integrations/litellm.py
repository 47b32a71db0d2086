"""A trained bundle as LiteLLM's routing step: a custom routing strategy for the SDK ``Router`` and a pre-call hook
for the LiteLLM proxy. Both ask the bundle which tier a chat needs and send it to the LiteLLM model group serving
that tier; LiteLLM keeps doing what it already does (keys, retries, cooldowns, spend logs, callbacks).

SDK, bundle loaded in process (or ``url=`` an aco_bert server, which answers ``POST /v1/route``)::

    router = litellm.Router(model_list=[{"model_name": "DeepSeek V3.2 Reasoner", "litellm_params": {...}}, ...])
    install(router, bundle="bundles/swebench")
    await router.acompletion(model="aco-router", messages=[...], metadata={"aco": {"budget": 0.5}})

Proxy ``config.yaml``: ``litellm_settings: {callbacks: aco_bert.integrations.litellm.proxy_handler_instance}``,
with ``ACO_BERT_BUNDLE=DIR`` (or ``ACO_BERT_ROUTE_URL=http://host:8000`` [+ ``ACO_BERT_ROUTE_API_KEY``]) in the
proxy's environment: a request for ``aco-router`` has its ``data["model"]`` rewritten to the chosen tier's model
group before LiteLLM routes it, and its answer carries ``x-aco-*`` headers (see deploy/litellm/config.yaml).

Tier -> LiteLLM ``model_name``: a tier goes to the model group named like the tier's ``model`` in the bundle's
spec unless ``model_map`` ({tier model or 1-based tier number: model_name}; for the proxy the JSON object in
``ACO_BERT_LITELLM_MODEL_MAP``) renames it. Only requests for a virtual model (``aco-router``) are routed by the
bundle; any other model name is LiteLLM's own group (the strategy picks one of its deployments at random).

The decision lands in the request's ``metadata["aco_routing"]`` (every LiteLLM callback and spend log sees it).
Routing context travels in ``metadata["aco"]`` (SDK and proxy) or a top-level ``aco`` body field (proxy; removed
before LiteLLM forwards the request): ``step_type``, ``domain``, ``budget``, ``min_tier``, ``metadata``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol, Sequence

try:
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.types.router import CustomRoutingStrategyBase
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("aco_bert.integrations.litellm needs LiteLLM: pip install 'aco-bert[litellm]' "
                      f"({e})") from e

from aco_bert.data.messages import messages_to_text
from aco_bert.types import RoutingInputError

VIRTUAL_MODELS = ("aco-router",)
BUNDLE_ENV = "ACO_BERT_BUNDLE"
ROUTE_URL_ENV = "ACO_BERT_ROUTE_URL"
ROUTE_KEY_ENV = "ACO_BERT_ROUTE_API_KEY"
MODEL_MAP_ENV = "ACO_BERT_LITELLM_MODEL_MAP"
VIRTUAL_MODELS_ENV = "ACO_BERT_LITELLM_VIRTUAL_MODELS"  # comma-separated; default aco-router
METADATA_KEY = "aco_routing"  # where the decision is recorded in the request's metadata
ROUTING_KEYS = ("step_type", "domain", "budget", "min_tier", "metadata")


class AcoRoutingError(RuntimeError):
    """The bundle (or the aco_bert server) could not decide: unreachable server, refused input, unmapped tier."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RouteChoice:
    """One routing decision, whichever decider made it."""

    tier: int  # 1-based
    model: str  # the tier's model in the bundle's spec
    p_success: float
    expected_cost: float
    policy: str
    reasons: tuple[str, ...] = ()

    def record(self, litellm_model: str) -> dict[str, Any]:
        """What goes into ``metadata["aco_routing"]``: the decision plus the LiteLLM model group it went to."""
        return {**asdict(self), "reasons": list(self.reasons), "litellm_model": litellm_model}


def response_headers(record: Mapping[str, Any]) -> dict[str, str]:
    """The ``x-aco-*`` headers of a recorded decision (the names the aco_bert proxy answers with)."""
    return {"x-aco-tier": str(record["tier"]), "x-aco-model": str(record["model"]),
            "x-aco-p-success": f"{float(record['p_success']):.6f}",
            "x-aco-expected-cost": f"{float(record['expected_cost']):.6g}", "x-aco-policy": str(record["policy"]),
            "x-aco-litellm-model": str(record["litellm_model"])}


def routed_text(messages: Any) -> str:
    """The text the bundle routes on: the same function the aco_bert server and the batch scorer use."""
    if messages is None:
        raise RoutingInputError("aco routing needs chat messages (embeddings and other inputs cannot be routed)")
    try:
        return messages_to_text(messages)
    except ValueError as e:
        raise RoutingInputError(f"messages: {e}") from None


def routing_args(aco: Any) -> dict[str, Any]:
    """The ``aco`` routing context as keyword arguments of :meth:`Router.route`; unknown keys are refused."""
    if aco is None:
        return {}
    if not isinstance(aco, Mapping):
        raise RoutingInputError(f"aco must be an object with {', '.join(ROUTING_KEYS)}, got {type(aco).__name__}")
    unknown = sorted(set(aco) - set(ROUTING_KEYS))
    if unknown:
        raise RoutingInputError(f"aco: unknown keys {unknown} (allowed: {', '.join(ROUTING_KEYS)})")
    return {k: v for k, v in aco.items() if v is not None}


# --------------------------------------------------------------------------------------------------- deciders
class Decider(Protocol):
    """Who answers "which tier": a bundle in this process or an aco_bert server over HTTP."""

    @property
    def tier_models(self) -> list[str]: ...

    def decide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice: ...

    async def adecide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice: ...


class BundleDecider:
    """A loaded :class:`aco_bert.runtime.Router` (ONNX, torch-free); the async path runs it in a worker thread so
    a routing pass never blocks LiteLLM's event loop."""

    def __init__(self, router: Any) -> None:
        self.router = router

    @classmethod
    def load(cls, bundle: str | os.PathLike, int8: bool | None = None, verify: bool = True) -> "BundleDecider":
        from aco_bert.runtime import Router

        return cls(Router.load(bundle, int8=int8, verify=verify))

    @property
    def tier_models(self) -> list[str]:
        return [t.model for t in self.router.spec.tiers]

    def decide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice:
        d = self.router.route(routed_text(messages), **dict(routing))
        return RouteChoice(d.tier, d.model, float(d.p_success), float(d.cost), d.policy, tuple(d.reasons))

    async def adecide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice:
        return await asyncio.to_thread(self.decide, messages, routing)


class HttpDecider:
    """An aco_bert server (``python -m aco_bert.serve``): ``POST {url}/v1/route`` per request, ``GET
    {url}/v1/router`` once for the tier models. ``api_key``: the server's client key, when it has auth on."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"aco route url must start with http:// or https://, got {url!r}")
        self.url, self.timeout_s = url.rstrip("/").removesuffix("/v1"), timeout_s
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._tiers: list[str] | None = None

    @property
    def tier_models(self) -> list[str]:
        if self._tiers is None:
            import httpx

            with httpx.Client(timeout=self.timeout_s, headers=self.headers, trust_env=False) as c:
                tiers = sorted(self._json(self._call(c.get, "/v1/router"))["tiers"], key=lambda t: t["tier"])
                self._tiers = [str(t["model"]) for t in tiers]
        return self._tiers

    def _body(self, messages: Any, routing: Mapping[str, Any]) -> dict[str, Any]:
        return {"prompt": routed_text(messages), **dict(routing)}

    def _call(self, send, path: str, **kw):
        import httpx

        try:
            return send(self.url + path, **kw)
        except httpx.HTTPError as e:
            raise AcoRoutingError(f"aco_bert server {self.url} unreachable: {type(e).__name__}: {e}") from None

    def _json(self, r) -> dict[str, Any]:
        if r.status_code != 200:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:200]
            if r.status_code in (400, 422):
                raise RoutingInputError(f"aco_bert server refused the request: {msg}")
            raise AcoRoutingError(f"aco_bert server {self.url} answered HTTP {r.status_code}: {msg}")
        return r.json()

    def _choice(self, r) -> RouteChoice:
        b = self._json(r)
        return RouteChoice(int(b["tier"]), str(b["model"]), float(b["p_success"]), float(b["expected_cost"]),
                           str(b["policy"]), tuple(b.get("reasons") or ()))

    def decide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice:
        import httpx

        body = self._body(messages, routing)
        with httpx.Client(timeout=self.timeout_s, headers=self.headers, trust_env=False) as c:
            return self._choice(self._call(c.post, "/v1/route", json=body))

    async def adecide(self, messages: Any, routing: Mapping[str, Any]) -> RouteChoice:
        import httpx

        body = self._body(messages, routing)
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers, trust_env=False) as c:
            try:
                r = await c.post(self.url + "/v1/route", json=body)
            except httpx.HTTPError as e:
                raise AcoRoutingError(f"aco_bert server {self.url} unreachable: {type(e).__name__}: {e}") from None
        return self._choice(r)


def make_decider(bundle: str | os.PathLike | None = None, url: str | None = None,
                 api_key: str | None = None) -> Decider:
    """Exactly one of ``bundle`` (in process) or ``url`` (an aco_bert server)."""
    if (bundle is None) == (url is None):
        raise ValueError("give exactly one of bundle= (a bundle directory) or url= (an aco_bert server)")
    return BundleDecider.load(bundle) if bundle is not None else HttpDecider(url, api_key=api_key)


# --------------------------------------------------------------------------------------------------- tier map
class TierModelMap:
    """1-based tier -> LiteLLM ``model_name``: the tier's own model name unless ``overrides`` renames it (keyed by
    the tier's model name or its 1-based number); a key that names no tier is refused."""

    def __init__(self, tier_models: Sequence[str], overrides: Mapping[Any, str] | None = None) -> None:
        names = list(tier_models)
        for key, value in (overrides or {}).items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"model_map[{key!r}] must be a LiteLLM model_name (a non-empty string)")
            if key in tier_models:
                names[list(tier_models).index(key)] = value
            elif str(key).isdigit() and 1 <= int(key) <= len(names):
                names[int(key) - 1] = value
            else:
                raise ValueError(f"model_map key {key!r} is neither a tier model of the bundle ({list(tier_models)}) "
                                 f"nor a tier number 1..{len(names)}")
        self.names = names

    def name_for(self, tier: int) -> str:
        if not 1 <= tier <= len(self.names):
            raise AcoRoutingError(f"the router chose tier {tier}, outside 1..{len(self.names)}")
        return self.names[tier - 1]


def env_model_map(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    raw = (os.environ if environ is None else environ).get(MODEL_MAP_ENV)
    if not raw:
        return None
    try:
        out = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{MODEL_MAP_ENV} is not JSON: {e.msg}") from None
    if not isinstance(out, dict):
        raise ValueError(f"{MODEL_MAP_ENV} must be a JSON object {{tier model or number: LiteLLM model_name}}")
    return out


def _deployments(litellm_router: Any, model_name: str) -> list[dict[str, Any]]:
    """The deployments of one model group: ``registry().deployments`` (LiteLLM >= 1.110), else ``model_list``."""
    registry = getattr(litellm_router, "registry", None)
    if callable(registry):
        return list(registry().deployments(model_name) or [])
    return [d for d in getattr(litellm_router, "model_list", None) or [] if d.get("model_name") == model_name]


def _metadata_of(request: dict[str, Any]) -> dict[str, Any]:
    """The request's metadata bucket LiteLLM passes on (``litellm_metadata`` on routes that use it)."""
    key = "litellm_metadata" if isinstance(request.get("litellm_metadata"), dict) else "metadata"
    if not isinstance(request.get(key), dict):
        request[key] = {}
    return request[key]


# --------------------------------------------------------------------------------------------------- SDK Router
class AcoRoutingStrategy(CustomRoutingStrategyBase):
    """LiteLLM custom routing strategy: a request for a virtual model goes to a deployment of the model group
    serving the tier the bundle chose; any other model name to one of its own group's deployments."""

    def __init__(self, litellm_router: Any, decider: Decider, model_map: Mapping[Any, str] | None = None,
                 virtual_models: Sequence[str] = VIRTUAL_MODELS) -> None:
        self.litellm_router, self.decider = litellm_router, decider
        self.model_map = TierModelMap(decider.tier_models, model_map)
        self.virtual_models = tuple(virtual_models)
        missing = [n for n in dict.fromkeys(self.model_map.names) if not _deployments(litellm_router, n)]
        if missing:
            raise ValueError(f"no LiteLLM deployment has model_name {missing} (one per bundle tier; rename with "
                             "model_map={tier model or number: model_name})")

    def _pick(self, model: str) -> dict[str, Any]:
        deps = _deployments(self.litellm_router, model)
        if not deps:
            raise ValueError(f"no LiteLLM deployment has model_name {model!r}")
        return random.choice(deps)

    def _routed(self, choice: RouteChoice, request_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        name = self.model_map.name_for(choice.tier)
        if isinstance(request_kwargs, dict):
            _metadata_of(request_kwargs)[METADATA_KEY] = choice.record(name)
        return self._pick(name)

    @staticmethod
    def _routing(request_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        meta = (request_kwargs or {}).get("metadata") or (request_kwargs or {}).get("litellm_metadata") or {}
        return routing_args(meta.get("aco") if isinstance(meta, Mapping) else None)

    async def async_get_available_deployment(self, model: str, messages: list[dict[str, Any]] | None = None,
                                             input: Any = None, specific_deployment: bool | None = False,
                                             request_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if model not in self.virtual_models:
            return self._pick(model)
        choice = await self.decider.adecide(messages, self._routing(request_kwargs))
        return self._routed(choice, request_kwargs)

    def get_available_deployment(self, model: str, messages: list[dict[str, Any]] | None = None,
                                 input: Any = None, specific_deployment: bool | None = False,
                                 request_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        if model not in self.virtual_models:
            return self._pick(model)
        return self._routed(self.decider.decide(messages, self._routing(request_kwargs)), request_kwargs)


def install(litellm_router: Any, bundle: str | os.PathLike | None = None, url: str | None = None, *,
            api_key: str | None = None, decider: Decider | None = None, model_map: Mapping[Any, str] | None = None,
            virtual_models: Sequence[str] = VIRTUAL_MODELS) -> AcoRoutingStrategy:
    """Make ``litellm_router`` route virtual-model requests with a bundle (``bundle=`` dir, ``url=`` an aco_bert
    server, or a ready ``decider=``). Uses ``register_plugin`` (LiteLLM >= 1.110), else the older
    ``set_custom_routing_strategy``. Every tier must map to a model group in the router's model_list."""
    if decider is None:
        decider = make_decider(bundle, url, api_key)
    elif bundle is not None or url is not None:
        raise ValueError("give decider= or bundle=/url=, not both")
    strategy = AcoRoutingStrategy(litellm_router, decider, model_map, virtual_models)
    register = getattr(litellm_router, "register_plugin", None) or litellm_router.set_custom_routing_strategy
    register(strategy)
    return strategy


# --------------------------------------------------------------------------------------------------- proxy hook
class AcoProxyHandler(CustomLogger):
    """LiteLLM proxy callback: rewrites ``data["model"]`` of a virtual-model request to the chosen tier's model
    group (``async_pre_call_hook``) and answers the decision as ``x-aco-*`` response headers. Without a
    ``decider`` it builds one on first use from ``ACO_BERT_BUNDLE`` or ``ACO_BERT_ROUTE_URL``."""

    def __init__(self, decider: Decider | None = None, model_map: Mapping[Any, str] | None = None,
                 virtual_models: Sequence[str] | None = None) -> None:
        super().__init__()
        self._decider, self._overrides, self._map = decider, model_map, None
        env_virtual = [m.strip() for m in os.environ.get(VIRTUAL_MODELS_ENV, "").split(",") if m.strip()]
        self.virtual_models = tuple(virtual_models or env_virtual or VIRTUAL_MODELS)

    @property
    def decider(self) -> Decider:
        if self._decider is None:
            bundle, url = os.environ.get(BUNDLE_ENV) or None, os.environ.get(ROUTE_URL_ENV) or None
            if (bundle is None) == (url is None):
                raise AcoRoutingError(f"aco proxy hook: set exactly one of {BUNDLE_ENV} (a bundle directory) or "
                                      f"{ROUTE_URL_ENV} (an aco_bert server) in the LiteLLM proxy's environment", 500)
            self._decider = make_decider(bundle, url, os.environ.get(ROUTE_KEY_ENV) or None)
        return self._decider

    @property
    def model_map(self) -> TierModelMap:
        if self._map is None:
            self._map = TierModelMap(self.decider.tier_models, self._overrides or env_model_map())
        return self._map

    async def route(self, data: dict[str, Any]) -> dict[str, Any]:
        """Rewrite one request in place (also what the hook does); refused input -> :class:`RoutingInputError`."""
        meta = _metadata_of(data)
        aco = data.pop("aco", None)
        routing = routing_args(aco if aco is not None else meta.get("aco"))
        choice = await self.decider.adecide(data.get("messages"), routing)
        name = self.model_map.name_for(choice.tier)
        data["model"] = name
        meta[METADATA_KEY] = choice.record(name)
        return data

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        if data.get("model") not in self.virtual_models:
            return data
        try:
            return await self.route(data)
        except (RoutingInputError, AcoRoutingError) as e:
            status = 400 if isinstance(e, RoutingInputError) else e.status
            try:
                from fastapi import HTTPException
            except ImportError:  # pragma: no cover - the LiteLLM proxy always has fastapi
                raise e from None
            raise HTTPException(status_code=status, detail={"error": f"aco routing: {e}"}) from None

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: dict[str, str] | None = None,
                                                    litellm_call_info: dict[str, object] | None = None,
                                                    ) -> dict[str, str] | None:
        for key in ("metadata", "litellm_metadata"):
            bucket = data.get(key)
            if isinstance(bucket, dict) and isinstance(bucket.get(METADATA_KEY), dict):
                return response_headers(bucket[METADATA_KEY])
        return None


# What a LiteLLM proxy config names: litellm_settings: callbacks: aco_bert.integrations.litellm.proxy_handler_instance
proxy_handler_instance = AcoProxyHandler()
