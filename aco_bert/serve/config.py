"""Serving configuration: limits, timeouts, micro-batching and per-tier upstreams, from YAML then environment.

One dataclass so that a YAML key, an ``ACO_SERVE_<KEY>`` environment variable and a ``--key`` override all mean
the same thing (the project-wide convention of :mod:`aco_bert.config`). Upstreams default to what the bundle's
router spec says (``Tier.upstream`` / ``upstream_model`` / ``api_key_env``); the serve config can override them
per tier, because where a model is hosted is a deployment fact, not a property of the trained router.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aco_bert.config import load_config

ENV_PREFIX = "ACO_SERVE_"


@dataclass
class UpstreamConfig:
    """An OpenAI-compatible endpoint serving one tier: ``base_url`` ends where ``/chat/completions`` is appended."""

    base_url: str
    model: str | None = None  # model id sent upstream; default: the tier's upstream_model or model
    api_key_env: str | None = None  # environment variable holding the key (the key itself never lives in config)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"upstream base_url {self.base_url!r} must start with http:// or https://")
        self.base_url = self.base_url.rstrip("/")


@dataclass
class ServeConfig:
    """Every knob of ``python -m aco_bert.serve``; the defaults are safe for a single CPU host."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    int8: bool | None = None  # None: use model.int8.onnx when the bundle has it
    verify: bool = True  # verify manifest sha256 on load; /readyz reports it
    # -- limits
    max_body_bytes: int = 1_048_576  # larger request bodies -> 413 before any parsing
    max_prompt_chars: int = 100_000  # longer prompts are cut head+tail *before* tokenising (the router then cuts tokens)
    max_batch: int = 64  # items per /v1/route/batch
    max_messages: int = 1024  # messages per request
    # -- timeouts (seconds)
    route_timeout_s: float = 10.0  # a routing decision that takes longer -> 504 (the request never hangs)
    upstream_connect_timeout_s: float = 5.0
    upstream_timeout_s: float = 120.0  # read/write timeout per upstream chunk; exceeded -> 504
    body_timeout_s: float = 30.0  # a client that stops sending its request body -> 408 (slow-loris guard)
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this (uvicorn timeout_keep_alive)
    header_timeout_s: float = 10.0  # request line + headers not complete this long after connect -> closed
    # -- connection limits and backpressure (uvicorn's own settings, plus what uvicorn lacks)
    max_inflight: int = 256  # requests in flight per worker; one more -> 503 + Retry-After (probes exempt)
    limit_concurrency: int | None = None  # uvicorn limit_concurrency: connections+tasks cap (counts idle ones; 503)
    backlog: int = 2048  # uvicorn backlog: pending TCP connections the kernel queues
    h11_max_incomplete_event_size: int = 16_384  # bytes of request line + headers (larger -> 400)
    limit_max_requests: int | None = None  # uvicorn limit_max_requests: a worker exits after this many requests
    max_queue: int = 1024  # routing calls waiting for a thread; one more -> 503 + Retry-After
    shed_wait_fraction: float = 0.8  # shed (503 + Retry-After) when the expected queue wait exceeds this share of
    # route_timeout_s (0: never shed on expected wait)
    # -- client authentication
    api_key_hashes: list[str] = field(default_factory=list)  # sha256 hex of accepted client keys (never the keys)
    api_keys_file: str | None = None  # file of sha256 hex hashes, one a line (# comments)
    auth_metrics: bool = True  # /metrics needs a key too when keys are configured (/healthz, /readyz never do)
    # -- concurrency
    route_threads: int = 4  # threads running ONNX sessions (InferenceSession.run is thread-safe)
    ort_threads: int | None = None  # ONNX Runtime intra-op threads per run (None: $ACO_BERT_ORT_THREADS / ORT default)
    microbatch: bool = False  # coalesce concurrent single routes (/v1/route, proxy) into route_batch passes
    microbatch_window_ms: float = 0.0  # extra wait for company when idle (0: same event-loop tick only)
    microbatch_max: int = 32  # prompts per coalesced batch
    microbatch_inflight: int = 2  # batches running at once; arrivals meanwhile queue for the next batch
    # -- upstreams per tier: key is the 1-based tier number or the tier's model name
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict)
    log_level: str = "info"

    def __post_init__(self) -> None:
        ups: dict[str, UpstreamConfig] = {}
        for k, v in (self.upstreams or {}).items():
            if isinstance(v, str):
                v = UpstreamConfig(base_url=v)
            elif isinstance(v, Mapping):
                unknown = sorted(set(v) - {f.name for f in dataclasses.fields(UpstreamConfig)})
                if unknown:
                    raise ValueError(f"serve config: upstreams[{k!r}] has unknown key(s) {unknown}")
                v = UpstreamConfig(**v)
            elif not isinstance(v, UpstreamConfig):
                raise ValueError(f"serve config: upstreams[{k!r}] must be a URL or a mapping, got {type(v).__name__}")
            ups[str(k)] = v
        self.upstreams = ups
        for name in ("max_body_bytes", "max_prompt_chars", "max_batch", "max_messages", "route_threads",
                     "microbatch_max", "microbatch_inflight", "workers", "max_inflight", "max_queue", "backlog",
                     "h11_max_incomplete_event_size", "keep_alive_s"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"serve config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("limit_concurrency", "limit_max_requests"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"serve config: {name} must be >= 1 or null, got {getattr(self, name)}")
        if not 0 <= float(self.shed_wait_fraction) <= 10:
            raise ValueError(f"serve config: shed_wait_fraction must be in [0, 10], got {self.shed_wait_fraction}")
        for name in ("route_timeout_s", "upstream_connect_timeout_s", "upstream_timeout_s", "body_timeout_s",
                     "header_timeout_s"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"serve config: {name} must be > 0, got {getattr(self, name)}")
        if self.microbatch_window_ms < 0:
            raise ValueError("serve config: microbatch_window_ms must be >= 0")


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``ACO_SERVE_MAX_BODY_BYTES=2000`` -> ``{"max_body_bytes": "2000"}`` for every scalar field of ServeConfig."""
    environ = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(ServeConfig)} - {"upstreams", "api_key_hashes"}
    out: dict[str, Any] = {}
    for name in names:
        key = ENV_PREFIX + name.upper()
        if key in environ and environ[key] != "":
            out[name] = environ[key]
    hashes = environ.get(ENV_PREFIX + "API_KEY_HASHES", "")  # comma-separated sha256 hex digests
    if hashes.strip():
        out["api_key_hashes"] = [h.strip() for h in hashes.split(",") if h.strip()]
    return out


def load_serve_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> ServeConfig:
    """YAML file < ``ACO_SERVE_*`` environment < explicit overrides (command line)."""
    merged = env_overrides(environ)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return load_config(ServeConfig, path, merged)
