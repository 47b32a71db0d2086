"""The routing service, end to end over real HTTP: uvicorn on a free loopback port, a real router bundle, and a
real fake-upstream HTTP server for the OpenAI-compatible proxy. Every endpoint, every refused input, the proxy
(plain, streamed, upstream 500, upstream timeout, broken stream), micro-batching and the CLI."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from aco_bert.serve import ServeConfig, create_app, load_serve_config
from aco_bert.serve.metrics import ServeMetrics
from aco_bert.serve.proxy import resolve_upstreams
from aco_bert.serve.schemas import ChatMessage, messages_text
from live_server import LiveServer, wait_ready

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "ACO_SERVE_TEST_UPSTREAM_KEY"
SECRET = "sk-test-not-a-real-key-123"


# --------------------------------------------------------------------------------------------------- harness
def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert m, f"malformed exposition line: {line!r}"
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] and body["error"]["message"], body
    return body["error"]


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundle_dir(tiny_bundle) -> Path:
    """The real tiny stacked bundle (2-layer DistilBERT trained on SWE-bench Verified prompts; see conftest)."""
    return Path(tiny_bundle)


@pytest.fixture(scope="module")
def router(bundle_dir):
    from aco_bert.runtime import Router

    return Router.load(bundle_dir)


@pytest.fixture(scope="module")
def config(router, upstream) -> ServeConfig:
    n = router.spec.n_tiers
    ups = {str(i): {"base_url": upstream.base_url(f"tier{i}"), "api_key_env": KEY_ENV} for i in range(1, n + 1)}
    return ServeConfig(max_body_bytes=64_000, max_prompt_chars=20_000, max_batch=8, upstream_timeout_s=1.0,
                       upstream_connect_timeout_s=1.0, upstreams=ups)


@pytest.fixture(scope="module")
def server(router, config):
    os.environ[KEY_ENV] = SECRET
    with LiveServer(create_app(router, config)) as s:
        yield s
    os.environ.pop(KEY_ENV, None)


@pytest.fixture()
def http(server):
    with server.client() as c:
        yield c


@pytest.fixture(autouse=True)
def _reset_upstream(request):
    if "upstream" in request.fixturenames:
        up = request.getfixturevalue("upstream")
        up.mode = "ok"
    yield


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


PROMPTS = [
    "Fix the off-by-one error in the pagination helper so the last page is not dropped.",
    "Refactor the ORM query compiler to support window functions across all database backends, "
    "keeping backwards compatibility for custom expressions and updating the migration framework.",
    "Typo in README: 'recieve' should be 'receive'.",
]


# --------------------------------------------------------------------------------------------------- ops endpoints
def test_health_ready_and_openapi(http, router):
    assert http.get("/healthz").json() == {"status": "ok"}
    r = http.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True and r.json()["verified"] is True
    spec = http.get("/openapi.json").json()
    for path in ("/v1/route", "/v1/route/batch", "/v1/escalate", "/healthz", "/readyz", "/v1/router", "/metrics",
                 "/v1/chat/completions"):
        assert path in spec["paths"], path
    assert "RouteRequest" in spec["components"]["schemas"]
    models = http.get("/v1/models").json()
    assert "aco-router" in [m["id"] for m in models["data"]]


def test_router_info_lists_tiers_manifest_and_hides_keys(http, router, upstream):
    info = http.get("/v1/router").json()
    assert [t["model"] for t in info["tiers"]] == router.spec.models
    assert info["manifest"] == json.loads(json.dumps(router.manifest))
    assert info["max_length"] == router.max_length
    assert info["spec"]["floors"] == router.spec.floors
    for i, t in enumerate(info["tiers"], start=1):
        assert t["upstream"]["base_url"] == upstream.base_url(f"tier{i}")
        assert t["upstream"]["api_key_present"] is True
    assert SECRET not in json.dumps(info)
    assert {"requests", "errors", "decisions_per_tier", "escalations"} <= set(info["metrics"])


# --------------------------------------------------------------------------------------------------- routing
def test_route_matches_the_runtime(http, router):
    for p in PROMPTS:
        r = http.post("/v1/route", json={"prompt": p})
        assert r.status_code == 200, r.text
        got, want = r.json(), router.route(p)
        assert got["tier"] == want.tier and got["model"] == want.model == router.spec.models[want.tier - 1]
        assert _close([t["p_success"] for t in got["tiers"]], list(want.probs))
        assert _close([t["expected_cost"] for t in got["tiers"]], list(want.expected_cost), 1e-9)
        assert [t["model"] for t in got["tiers"]] == router.spec.models
        assert got["p_success"] == pytest.approx(want.p_success, abs=1e-5)
        assert got["reasons"] == list(want.reasons) and got["policy"] == want.policy
        assert got["truncated"] is False and got["truncation"] is None
        assert all(0.0 <= t["p_success"] <= 1.0 for t in got["tiers"])


def test_bare_string_content_parts_route_as_text_like_the_scorer(http, router, upstream):
    """OpenAI content may be a list mixing text parts and bare strings: both are text, joined exactly as the batch
    scorer joins them (one function, aco_bert.data.messages), in /v1/route and in the proxy."""
    from aco_bert.data.messages import messages_to_text

    head, tail = PROMPTS[1][:len(PROMPTS[1]) // 2], PROMPTS[1][len(PROMPTS[1]) // 2:]
    msgs = [{"role": "system", "content": ["You are a coding agent.", {"type": "image_url", "image_url": {}}]},
            {"role": "user", "content": [head, {"type": "text", "text": tail}]}]
    text = messages_to_text(msgs)
    assert text == f"You are a coding agent.\n\n{head}\n{tail}"
    want = router.route(text)
    r = http.post("/v1/route", json={"messages": msgs})
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == want.tier and _close([t["p_success"] for t in r.json()["tiers"]], list(want.probs))
    r = http.post("/v1/chat/completions", json={"model": "aco-router", "messages": msgs})
    assert r.status_code == 200, r.text
    assert r.headers["x-aco-tier"] == str(want.tier)
    assert upstream.last()["body"]["messages"] == msgs  # forwarded as sent
    r = http.post("/v1/route", json={"messages": [{"role": "user", "content": [{"type": "text"}, "x"]}]})
    assert r.status_code == 422 and "part 0 has no text" in r.text


def test_route_messages_min_tier_domain_and_budget(http, router):
    msgs = [{"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": [{"type": "text", "text": PROMPTS[1]}]}]
    r = http.post("/v1/route", json={"messages": msgs})
    assert r.status_code == 200, r.text
    want = router.route(messages_text([ChatMessage(**m) for m in msgs]))
    assert r.json()["tier"] == want.tier and _close([t["p_success"] for t in r.json()["tiers"]], list(want.probs))

    top = router.spec.n_tiers
    r = http.post("/v1/route", json={"prompt": PROMPTS[2], "min_tier": top})
    assert r.status_code == 200 and r.json()["tier"] == top and r.json()["min_tier"] == top
    if router.spec.floors:
        dom, floor = next(iter(router.spec.floors.items()))
        r = http.post("/v1/route", json={"prompt": PROMPTS[2], "domain": [dom]})
        assert r.status_code == 200 and r.json()["tier"] >= floor
    r = http.post("/v1/route", json={"prompt": PROMPTS[0], "budget": 0.5})
    want = router.route(PROMPTS[0], budget=0.5)
    assert r.status_code == 200 and r.json()["tier"] == want.tier


def test_batch_equals_single_routes_and_is_bounded(http, router):
    items = [{"prompt": p} for p in PROMPTS] + [{"prompt": PROMPTS[0], "min_tier": router.spec.n_tiers}]
    r = http.post("/v1/route/batch", json={"items": items})
    assert r.status_code == 200, r.text
    ds = r.json()["decisions"]
    assert len(ds) == len(items)
    for it, d in zip(items, ds):
        want = router.route(it["prompt"], min_tier=it.get("min_tier"))
        assert d["tier"] == want.tier
        assert _close([t["p_success"] for t in d["tiers"]], list(want.probs), 1e-4)
    r = http.post("/v1/route/batch", json={"items": [{"prompt": "x y z"}] * 9})
    assert r.status_code == 422 and error_of(r)["code"] == "batch_too_large"
    r = http.post("/v1/route/batch", json={"items": []})
    assert r.status_code == 422
    r = http.post("/v1/route/batch", json={"items": [{"prompt": "ok"}, {"prompt": "ok", "step_type": "no-such-step"}]})
    assert r.status_code == 422 and "items[1]" in error_of(r)["message"]


def test_escalate(http, router):
    for tier_run, trace in ((1, {"api_calls": 3, "cost": 0.01, "latency_s": 4.0}), (1, {"api_calls": 250}),
                            (router.spec.n_tiers, {})):
        r = http.post("/v1/escalate", json={"prompt": PROMPTS[1], "tier_run": tier_run, "trace": trace})
        assert r.status_code == 200, r.text
        got, want = r.json(), router.escalate(PROMPTS[1], tier_run, {k: float(v) for k, v in trace.items()})
        assert got["accept"] == want.accept and got["next_tier"] == want.next_tier
        assert got["p_success"] == pytest.approx(want.p_success, abs=1e-5)
        if not got["accept"] and got["next_tier"] is not None:
            assert got["next_tier"] > tier_run and got["next_model"] == router.spec.models[got["next_tier"] - 1]
    r = http.post("/v1/escalate", json={"prompt": "x", "tier_run": router.spec.n_tiers + 1, "trace": {}})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_input"
    r = http.post("/v1/escalate", json={"prompt": "x", "tier_run": 1, "trace": {"api_calls": -1}})
    assert r.status_code == 422 and "api_calls" in error_of(r)["message"]


def test_over_long_prompts_are_truncated_and_say_so(http, router):
    words = " ".join(f"word{i}" for i in range(router.max_length * 3))  # over the token limit, under chars
    r = http.post("/v1/route", json={"prompt": words})
    assert r.status_code == 200 and r.json()["truncated"] is True
    assert "tokens" in r.json()["truncation"] and r.json()["n_tokens"] <= router.max_length
    huge = "lorem ipsum " * 3000  # 36k chars > max_prompt_chars (20k), < body limit (64k)
    r = http.post("/v1/route", json={"prompt": huge})
    assert r.status_code == 200 and r.json()["truncated"] is True
    assert "36000 to 20000 characters" in r.json()["truncation"]


# --------------------------------------------------------------------------------------------------- bad input
BAD = [
    ("invalid json", b'{"prompt": "hi",', 400, "invalid_json", "JSON"),
    ("invalid utf-8", b'{"prompt": "caf\xe9 \xff"}', 400, "invalid_utf8", "UTF-8"),
    ("wrong type prompt", json.dumps({"prompt": 5}).encode(), 422, "invalid_request", "prompt"),
    ("wrong type budget", json.dumps({"prompt": "hi", "budget": "5"}).encode(), 422, "invalid_request", "budget"),
    ("bool as tier", json.dumps({"prompt": "hi", "min_tier": True}).encode(), 422, "invalid_request", "min_tier"),
    ("empty prompt", json.dumps({"prompt": ""}).encode(), 422, "invalid_request", "empty"),
    ("blank prompt", json.dumps({"prompt": " \n\t "}).encode(), 422, "invalid_request", "empty"),
    ("blank messages", json.dumps({"messages": [{"role": "user", "content": "  "}]}).encode(), 422,
     "invalid_request", "empty"),
    ("no prompt", json.dumps({"step_type": "x"}).encode(), 422, "invalid_request", "exactly one"),
    ("both", json.dumps({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}).encode(), 422,
     "invalid_request", "exactly one"),
    ("negative budget", json.dumps({"prompt": "hi", "budget": -1.0}).encode(), 422, "invalid_request", "budget"),
    ("nan budget", b'{"prompt": "hi", "budget": NaN}', 422, "invalid_request", "budget"),
    ("unknown step type", json.dumps({"prompt": "hi", "step_type": "no-such-step"}).encode(), 422, "invalid_input",
     "no-such-step"),
    ("tier 0", json.dumps({"prompt": "hi", "min_tier": 0}).encode(), 422, "invalid_request", "min_tier"),
    ("tier too high", json.dumps({"prompt": "hi", "min_tier": 99}).encode(), 422, "invalid_input", "99"),
    ("unknown key", json.dumps({"prompt": "hi", "step-type": "edit"}).encode(), 422, "invalid_request", "step-type"),
    ("not an object", b'["hi"]', 422, "invalid_request", ""),
    ("empty body", b"", 422, "invalid_request", "missing or empty"),
    ("undeclared metadata", json.dumps({"prompt": "hi", "metadata": {"repo": "django/django"}}).encode(), 422,
     "invalid_input", "not declared"),
    ("metadata not a mapping", json.dumps({"prompt": "hi", "metadata": ["repo"]}).encode(), 422, "invalid_request",
     "metadata"),
]


@pytest.mark.parametrize("name,body,status,code,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_route_input_is_refused_with_a_reason(http, name, body, status, code, needle):
    r = http.post("/v1/route", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["code"] == code and needle.lower() in err["message"].lower(), err


def test_body_size_limit_413(http):
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    r = http.post("/v1/route", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * 8192

    r = http.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"
    assert http.get("/healthz").status_code == 200  # still serving


def test_unknown_path_and_method(http):
    r = http.get("/v1/nope")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = http.get("/v1/route")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"


# --------------------------------------------------------------------------------------------------- metrics
def test_metrics_count_requests_decisions_escalations_errors(http, router):
    before = http.get("/metrics").text
    for p in PROMPTS:
        assert http.post("/v1/route", json={"prompt": p}).status_code == 200
    assert http.post("/v1/route", json={"prompt": ""}).status_code == 422
    assert http.post("/v1/escalate", json={"prompt": PROMPTS[0], "tier_run": 1, "trace": {}}).status_code == 200
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text

    def d(name, **lab):
        return metric(after, name, **lab) - metric(before, name, **lab)

    assert d("aco_requests_total", endpoint="/v1/route", method="POST", status="200") == 3
    assert d("aco_requests_total", endpoint="/v1/route", method="POST", status="422") == 1
    assert d("aco_route_decisions_total", endpoint="/v1/route") == 3
    tiers = [router.route(p).tier for p in PROMPTS]
    for t in set(tiers):
        assert d("aco_route_decisions_total", endpoint="/v1/route", tier=str(t)) == tiers.count(t)
    assert d("aco_escalations_total", tier_run="1") == 1
    assert d("aco_errors_total", endpoint="/v1/route", code="invalid_request") == 1
    assert d("aco_request_latency_seconds_count", endpoint="/v1/route") == 4
    assert "# TYPE aco_request_latency_seconds histogram" in after
    inf = metric(after, "aco_request_latency_seconds_bucket", endpoint="/v1/route", le="+Inf")
    assert inf == metric(after, "aco_request_latency_seconds_count", endpoint="/v1/route")
    assert metric(after, "aco_ready") == 1


def test_histogram_and_counter_exposition():
    """The keyword-label wrapper over prometheus_client: le is inclusive, label values are escaped, counters
    refuse to go down, a wrong label set is refused (a fresh registry per ServeMetrics: no name collisions)."""
    m, m2 = ServeMetrics(), ServeMetrics()
    for v in (0.0005, 0.001, 0.003, 200.0):
        m.route_latency.observe(v, kind="a")
    text = m.render().decode()
    assert 'aco_route_seconds_bucket{kind="a",le="0.001"} 2.0' in text  # le is inclusive
    assert 'aco_route_seconds_bucket{kind="a",le="0.005"} 3.0' in text
    assert 'aco_route_seconds_bucket{kind="a",le="+Inf"} 4.0' in text
    assert 'aco_route_seconds_count{kind="a"} 4.0' in text
    assert math.isclose(metric(text, "aco_route_seconds_sum", kind="a"), 200.0045)
    m.errors.inc(endpoint='a"b\\c\nd', code="x")
    assert 'aco_errors_total{code="x",endpoint="a\\"b\\\\c\\nd"} 1.0' in m.render().decode()
    assert "aco_errors_total{" not in m2.render().decode()
    with pytest.raises(ValueError):
        m.errors.inc(-1, endpoint="a", code="x")
    with pytest.raises(ValueError):
        m.errors.inc(endpoint="a")


# --------------------------------------------------------------------------------------------------- proxy
def _chat(**extra):
    body = {"model": "aco-router", "messages": [{"role": "user", "content": PROMPTS[0]}], "temperature": 0.2}
    body.update(extra)
    return body


def test_proxy_forwards_to_the_routed_tier(http, router, upstream):
    want = router.route(PROMPTS[0])
    r = http.post("/v1/chat/completions", json=_chat(user="u-42"))
    assert r.status_code == 200, r.text
    assert r.headers["x-aco-tier"] == str(want.tier) and r.headers["x-aco-model"] == want.model
    assert float(r.headers["x-aco-p-success"]) == pytest.approx(want.p_success, abs=1e-5)
    assert "x-fake-upstream" not in r.headers  # upstream internal headers are not relayed (serve/relay.py)
    assert r.json()["choices"][0]["message"]["content"].startswith(f"echo from tier{want.tier}:")
    sent = upstream.last()
    assert sent["path"] == f"/tier{want.tier}/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {SECRET}"
    assert sent["body"]["model"] == want.model  # rewritten from aco-router to the tier's model
    assert sent["body"]["temperature"] == 0.2 and sent["body"]["user"] == "u-42"  # OpenAI params pass through
    assert "aco" not in sent["body"]


def test_proxy_routing_extension_and_policy_model(http, router, upstream):
    top = router.spec.n_tiers
    r = http.post("/v1/chat/completions", json=_chat(aco={"min_tier": top}))
    assert r.status_code == 200 and r.headers["x-aco-tier"] == str(top)
    assert upstream.last()["path"] == f"/tier{top}/v1/chat/completions" and "aco" not in upstream.last()["body"]
    policy = http.get("/v1/router").json()["policy"]
    if policy:
        assert http.post("/v1/chat/completions", json=_chat(model=f"router-{policy}")).status_code == 200
    r = http.post("/v1/chat/completions", json=_chat(model="gpt-4o"))
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
    r = http.post("/v1/chat/completions", json=_chat(aco={"budget": -2}))
    assert r.status_code == 422 and "budget" in error_of(r)["message"]
    r = http.post("/v1/chat/completions", json=_chat(aco={"step_type": "no-such-step"}))
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_input"


def test_proxy_streams_sse_through(server, router, upstream):
    want = router.route(PROMPTS[0])
    events, first_at = [], None
    t0 = time.perf_counter()
    with server.client() as c, c.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-aco-tier"] == str(want.tier)
        for line in r.iter_lines():
            if line.startswith("data: "):
                first_at = first_at or time.perf_counter() - t0
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == f"echo from tier{want.tier}: {PROMPTS[0]}"
    assert upstream.last()["body"]["stream"] is True
    assert upstream.last()["headers"]["accept"] == "text/event-stream"


def test_proxy_upstream_500_is_502_with_its_status(http, upstream):
    before = http.get("/metrics").text
    upstream.mode = "error500"
    for stream in (False, True):
        r = http.post("/v1/chat/completions", json=_chat(stream=stream))
        assert r.status_code == 502, r.text
        err = error_of(r)
        assert err["code"] == "upstream_error" and err["upstream_status"] == 500
        assert "upstream_body" not in err and "fake upstream exploded" not in r.text  # bodies never relayed
        assert "answered HTTP 500 (server_error)" in err["message"]
        assert r.headers["x-aco-upstream-status"] == "500" and "x-aco-tier" in r.headers
    after = http.get("/metrics").text
    assert metric(after, "aco_upstream_requests_total", status="500") - \
        metric(before, "aco_upstream_requests_total", status="500") == 2
    assert metric(after, "aco_errors_total", code="upstream_error") - \
        metric(before, "aco_errors_total", code="upstream_error") == 2


def test_proxy_upstream_timeout_is_504_not_a_hang(http, upstream):
    upstream.mode, upstream.delay_s = "slow", 3.0  # the server's upstream timeout is 1 s
    t0 = time.perf_counter()
    r = http.post("/v1/chat/completions", json=_chat())
    took = time.perf_counter() - t0
    assert r.status_code == 504 and error_of(r)["code"] == "upstream_timeout"
    assert took < 2.5, took


def test_proxy_broken_stream_ends_with_an_error_event(server, upstream):
    upstream.mode = "break"
    with server.client() as c, c.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as r:
        assert r.status_code == 200
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"
    assert json.loads(lines[-1][6:])["error"]["code"] == "upstream_stream_broken"


def test_proxy_without_upstream_unreachable_or_missing_key(router):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()  # nothing listens there now
    n = router.spec.n_tiers
    cfg = ServeConfig(upstream_timeout_s=1.0, upstream_connect_timeout_s=1.0,
                      upstreams={str(i): {"base_url": f"http://127.0.0.1:{dead_port}/v1"} for i in range(1, n + 1)})
    with LiveServer(create_app(router, cfg)) as s, s.client() as c:
        r = c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 502 and error_of(r)["code"] == "upstream_unreachable"
    cfg = ServeConfig(upstreams={str(i): {"base_url": f"http://127.0.0.1:{dead_port}/v1",
                                          "api_key_env": "ACO_SERVE_TEST_UNSET_KEY"} for i in range(1, n + 1)})
    os.environ.pop("ACO_SERVE_TEST_UNSET_KEY", None)
    with LiveServer(create_app(router, cfg)) as s, s.client() as c:
        r = c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 503 and error_of(r)["code"] == "upstream_key_missing"
        assert "ACO_SERVE_TEST_UNSET_KEY" in error_of(r)["message"]
    with LiveServer(create_app(router, ServeConfig())) as s, s.client() as c:
        tiers_with_upstream = [t for t in router.spec.tiers if t.upstream]
        r = c.post("/v1/chat/completions", json=_chat())
        if not tiers_with_upstream:
            assert r.status_code == 503 and error_of(r)["code"] == "no_upstream"


# --------------------------------------------------------------------------------------------------- concurrency
def test_concurrent_requests_share_one_session(http, router):
    prompts = [f"{PROMPTS[i % 3]} (variant {i})" for i in range(32)]
    want = [router.route(p) for p in prompts]
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda p: http.post("/v1/route", json={"prompt": p}), prompts))
    for r, w in zip(got, want):
        assert r.status_code == 200 and r.json()["tier"] == w.tier
        assert _close([t["p_success"] for t in r.json()["tiers"]], list(w.probs))


def test_microbatching_coalesces_concurrent_requests(router):
    cfg = ServeConfig(microbatch=True, microbatch_window_ms=50, microbatch_max=32)
    prompts = [f"{PROMPTS[i % 3]} #{i}" for i in range(16)] + ["hi"]
    want = [router.route(p) for p in prompts[:-1]]
    with LiveServer(create_app(router, cfg)) as s, s.client() as c:
        bodies = [{"prompt": p} for p in prompts[:-1]] + [{"prompt": "hi", "step_type": "no-such-step"}]
        with ThreadPoolExecutor(len(bodies)) as ex:
            got = list(ex.map(lambda b: c.post("/v1/route", json=b), bodies))
        text = c.get("/metrics").text
    for r, w in zip(got[:-1], want):
        assert r.status_code == 200, r.text
        assert r.json()["tier"] == w.tier and _close([t["p_success"] for t in r.json()["tiers"]], list(w.probs), 1e-4)
    assert got[-1].status_code == 422  # a bad item refuses only its own request
    n_batches = metric(text, "aco_route_batch_size_count")
    assert metric(text, "aco_route_batch_size_sum") == len(bodies)
    assert n_batches < len(bodies)  # at least two requests shared a forward pass


def test_route_timeout_is_504(router):
    # 64 long prompts take the router far longer (tokenising ~1.3 MB) than the 1 ms allowed; a timeout only
    # counts when the router is still busy when it fires, so the work must clearly outlast it.
    cfg = ServeConfig(route_timeout_s=0.001, max_batch=64, max_body_bytes=4_000_000)
    items = [{"prompt": f"{i} " + PROMPTS[1] * 100} for i in range(64)]
    with LiveServer(create_app(router, cfg)) as s, s.client() as c:
        t0 = time.perf_counter()
        r = c.post("/v1/route/batch", json={"items": items})
        assert r.status_code == 504 and error_of(r)["code"] == "route_timeout", r.text[:200]
        assert time.perf_counter() - t0 < 5
        assert c.get("/healthz").status_code == 200


# --------------------------------------------------------------------------------------------------- config
def test_serve_config_yaml_env_and_overrides(tmp_path, router):
    y = tmp_path / "serve.yaml"
    y.write_text("max_body_bytes: 1000\nmicrobatch: true\nupstreams:\n  '1': http://127.0.0.1:9/v1\n"
                 f"  {router.spec.models[-1]}: {{base_url: 'http://127.0.0.1:9/x/', model: m-up, api_key_env: K}}\n")
    cfg = load_serve_config(y, {"port": 8123}, environ={"ACO_SERVE_MAX_BODY_BYTES": "2000",
                                                         "ACO_SERVE_ROUTE_TIMEOUT_S": "2.5"})
    assert cfg.max_body_bytes == 2000 and cfg.route_timeout_s == 2.5 and cfg.port == 8123 and cfg.microbatch
    ups = resolve_upstreams(router.spec, cfg)
    assert ups[1].base_url == "http://127.0.0.1:9/v1"
    last = ups[router.spec.n_tiers]
    assert (last.base_url, last.model, last.api_key_env) == ("http://127.0.0.1:9/x", "m-up", "K")
    with pytest.raises(ValueError, match="unknown key"):
        load_serve_config(None, {"max_body_byte": 5})
    with pytest.raises(ValueError, match="unknown tier"):
        resolve_upstreams(router.spec, ServeConfig(upstreams={"99": "http://127.0.0.1:9"}))
    with pytest.raises(ValueError, match="http"):
        ServeConfig(upstreams={"1": "ftp://x"})


def test_stalled_request_body_is_408_not_a_hang(router):
    with LiveServer(create_app(router, ServeConfig(body_timeout_s=0.5))) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"prompt\": ")
            t0 = time.perf_counter()
            data = b""
            while chunk := sock.recv(65536):  # the server closes the connection after the 408
                data += chunk
            took = time.perf_counter() - t0
        assert data.startswith(b"HTTP/1.1 408"), data[:80]
        assert b"body_timeout" in data and took < 4, took


# --------------------------------------------------------------------------------------------------- bundle + CLI
def _tamper(bundle_dir: Path, dst: Path) -> Path:
    shutil.copytree(bundle_dir, dst)
    with open(dst / "router.yaml", "a") as f:
        f.write("\n# hand-edited after export\n")  # still valid YAML: only the manifest can catch it
    return dst


def test_tampered_bundle_is_never_ready(bundle_dir, tmp_path):
    from aco_bert.serve.app import load_router

    bad = _tamper(bundle_dir, tmp_path / "bundle")
    app = create_app(config=ServeConfig(), loader=lambda: load_router(bad, ServeConfig()))
    with LiveServer(app) as s, s.client() as c:
        assert c.get("/healthz").status_code == 200  # the process is up ...
        deadline = time.time() + 30
        while (r := c.get("/readyz")).json().get("error") == "bundle is still loading" and time.time() < deadline:
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["ready"] is False  # ... but never ready
        assert "router.yaml" in r.json()["error"]
        r = c.post("/v1/route", json={"prompt": PROMPTS[0]})
        assert r.status_code == 503 and error_of(r)["code"] == "not_ready" and "router.yaml" in error_of(r)["message"]
        assert metric(c.get("/metrics").text, "aco_ready") == 0


def test_loader_becomes_ready_and_unverified_is_not_ready(bundle_dir, router):
    from aco_bert.serve.app import load_router

    app = create_app(config=ServeConfig(), loader=lambda: load_router(bundle_dir, ServeConfig()))
    with LiveServer(app) as s, s.client() as c:
        deadline = time.time() + 60
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert c.get("/readyz").json() == {"ready": True, "verified": True, "bundle": str(bundle_dir), "error": None}
        assert c.post("/v1/route", json={"prompt": PROMPTS[0]}).json()["tier"] == router.route(PROMPTS[0]).tier
    with LiveServer(create_app(router, ServeConfig(verify=False))) as s, s.client() as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["verified"] is False and "verification" in r.json()["error"]


def test_cli_refuses_a_tampered_bundle(bundle_dir, tmp_path, capsys):
    from aco_bert.serve.__main__ import main

    bad = _tamper(bundle_dir, tmp_path / "bundle")
    assert main(["--bundle", str(bad), "--port", "1"]) == 2  # fails before binding anything
    err = capsys.readouterr().err
    assert "cannot load bundle" in err and "router.yaml" in err
    assert main(["--bundle", str(bundle_dir), "--no_such_knob", "3"]) == 2
    assert "unrecognized arguments: --no_such_knob" in capsys.readouterr().err
    from aco_bert.cli import main as aco_bert_main

    assert aco_bert_main(["serve", "--bundle", str(tmp_path / "missing")]) == 2  # `aco-bert serve` reaches it
    assert "cannot load bundle" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_cli_serves_a_bundle(bundle_dir, router, workers):
    """`python -m aco_bert.serve` in its own process; 2 workers = uvicorn's factory path (each loads the bundle)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "aco_bert.serve", "--bundle", str(bundle_dir), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--max_batch", "3", "--log_level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "ACO_BERT_ORT_THREADS": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, lambda: proc.stdout.read().decode() if proc.poll() is not None else "", poll_s=0.2)
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            for p in PROMPTS * 4:
                r = c.post("/v1/route", json={"prompt": p}, headers={"connection": "close"})
                assert r.status_code == 200 and r.json()["tier"] == router.route(p).tier
            for _ in range(6):
                info = c.get("/v1/router", headers={"connection": "close"}).json()
                assert info["service"]["max_batch"] == 3  # CLI overrides reach every worker
            r = c.post("/v1/route/batch", json={"items": [{"prompt": "a b"}] * 4})
            assert r.status_code == 422 and error_of(r)["code"] == "batch_too_large"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


def test_load_test_script_runs_bounded_on_loopback_only(server, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("load_test", REPO / "scripts" / "load_test.py")
    lt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lt)
    rc = lt.main(["--url", server.url, "--clients", "3", "--duration", "1", "--warmup", "0", "--max-requests", "40"])
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("| route"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert rc == 0 and cells[0] == "route" and int(cells[3]) <= 40 and int(cells[5]) == 0 and int(cells[6]) == 0
    for bad in (["--url", "http://10.1.2.3:8000"], ["--url", server.url, "--clients", "1000"],
                ["--url", server.url, "--duration", "3600"]):
        with pytest.raises(SystemExit):
            lt.main(bad)
