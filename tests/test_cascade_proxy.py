"""The proxy's ``aco-cascade`` model and the response fields of /v1/escalate, over real HTTP on loopback: uvicorn,
the real tiny stacked bundle (with its verifier) and real fake-upstream HTTP servers.

Accept / escalate is forced through the loaded bundle's cascade rule (``router.layer.cascade``: ``accept`` 0 keeps
every answer, 1.01 keeps none, ``max_runs`` caps the runs), never through the tiny model's quality; ``aco.budget``
0 makes the budget policy start at tier 1 (no tier fits: the cheapest allowed one)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from aco_bert.runtime.inputs import MAX_RESPONSE_CHARS
from aco_bert.serve import ServeConfig, create_app
from aco_bert.serve.schemas import ChatMessage, messages_text
from fake_upstream import FakeUpstream
from live_server import LiveServer
from test_serve import error_of, metric

PROMPT = "Fix the off-by-one error in the pagination helper so the last page is not dropped."
TEXT = messages_text([ChatMessage(role="user", content=PROMPT)])  # what the router sees of the conversation


@pytest.fixture(scope="module")
def router(tiny_bundle):
    from aco_bert.runtime import Router

    return Router.load(tiny_bundle)  # this module's own instance: its cascade rule is changed per test


@pytest.fixture(scope="module")
def broken():
    with FakeUpstream() as u:
        u.mode = "error500"
        yield u


def make_config(router, good: FakeUpstream, bad: FakeUpstream | None = None, first_bad: int = 0) -> ServeConfig:
    """Tier i -> ``good`` at /tier<i>/v1, or ``bad`` from tier ``first_bad`` on."""
    ups = {str(i): {"base_url": (bad if bad is not None and i >= first_bad else good).base_url(f"tier{i}")}
           for i in range(1, router.spec.n_tiers + 1)}
    return ServeConfig(max_body_bytes=1_000_000, upstream_timeout_s=5.0, upstream_connect_timeout_s=2.0,
                       upstreams=ups)


@pytest.fixture(scope="module")
def server(router, upstream):
    with LiveServer(create_app(router, make_config(router, upstream))) as s:
        yield s


@pytest.fixture()
def http(server):
    with server.client() as c:
        yield c


@contextmanager
def cascade_rule(router, accept: float, max_runs: int | None = None):
    """Set the loaded bundle's cascade rule for one test (restored after): one bar for every run, and a ladder of
    every tier (the shipped ladder depends on what the stack stage chose for the tiny bundle)."""
    from aco_bert.policies import Chain

    c = router.layer.cascade
    old = (c.accept, c.max_runs, c.accept_first, c.escalate)
    c.accept, c.max_runs, c.accept_first = accept, (max_runs or router.spec.n_tiers), None
    c.escalate = Chain(tuple(range(router.spec.n_tiers)))
    try:
        yield c
    finally:
        c.accept, c.max_runs, c.accept_first, c.escalate = old


def chat(**extra) -> dict:
    body = {"model": "aco-cascade", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0.1,
            "aco": {"budget": 0.0}}
    body.update(extra)
    return body


def answer(tier: int) -> str:
    return f"echo from tier{tier}: {PROMPT}"  # what the fake upstream says at /tier<i>/v1


def call_cost(router, tier: int) -> float:
    t = router.spec.tiers[tier - 1]  # the fake upstream's usage: 3 prompt + 5 completion tokens
    return (3 * t.input_price + 5 * t.output_price) / 1e6


def expected_path(router) -> list[int]:
    """The tiers the cascade must run with accept 1.01 and no cap: tier 1, then each verdict's next tier."""
    path, earlier = [1], {}
    with cascade_rule(router, accept=1.01):
        while True:
            t = path[-1]
            e = router.escalate(TEXT, t, response=answer(t), responses=dict(earlier) or None)
            if e.accept:
                return path
            earlier[t] = answer(t)
            path.append(e.next_tier)


def upstream_calls(up: FakeUpstream, since: int) -> list[dict]:
    return list(up.requests[since:])


def test_models_list_and_one_answer_per_request(http, upstream):
    assert "aco-cascade" in [m["id"] for m in http.get("/v1/models").json()["data"]]
    before, n0 = http.get("/metrics").text, len(upstream.requests)
    r = http.post("/v1/chat/completions", json=chat(n=2))
    assert r.status_code == 422 and "n must be 1" in error_of(r)["message"]
    after = http.get("/metrics").text
    assert len(upstream.requests) == n0  # refused before routing: no decision, no upstream call
    assert metric(after, "aco_route_decisions_total") == metric(before, "aco_route_decisions_total")


def test_accepted_on_first_tier(http, router, upstream):
    before, n0 = http.get("/metrics").text, len(upstream.requests)
    with cascade_rule(router, accept=0.0):
        r = http.post("/v1/chat/completions", json=chat(user="u-7"))
        want = router.escalate(TEXT, 1, response=answer(1))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == answer(1)
    assert body["model"] == router.spec.tiers[0].model  # the model that answered (the fake echoes its id)
    assert r.headers["x-aco-tiers-run"] == "1" and r.headers["x-aco-tier"] == "1"
    assert r.headers["x-aco-model"] == router.spec.tiers[0].model and r.headers["x-aco-cascade-stop"] == "accepted"
    assert float(r.headers["x-aco-p-correct"]) == pytest.approx(want.p_success, abs=1e-5)
    assert "this bundle's verifier was trained without responses" in " ".join(body["aco"]["runs"][0]["reasons"])
    assert body["aco"]["tiers_run"] == [1] and body["aco"]["cost_usd"] == pytest.approx(call_cost(router, 1))
    assert "x-fake-upstream" not in r.headers and r.headers["x-aco-policy"]  # internal headers dropped, route kept
    (sent,) = upstream_calls(upstream, n0)
    assert sent["path"] == "/tier1/v1/chat/completions" and sent["body"]["model"] == router.spec.tiers[0].model
    assert sent["body"]["user"] == "u-7" and "aco" not in sent["body"] and "stream" not in sent["body"]
    after = http.get("/metrics").text
    d = lambda name, **lab: metric(after, name, **lab) - metric(before, name, **lab)  # noqa: E731
    assert d("aco_cascade_calls_total", tier="1") == 1 and d("aco_cascade_calls_total") == 1
    assert d("aco_cascade_accepted_total", tier="1", stop="accepted") == 1
    assert d("aco_cascade_cost_usd_total", tier="1") == pytest.approx(call_cost(router, 1))
    assert d("aco_cascade_tokens_total", tier="1", kind="completion") == 5
    assert d("aco_escalations_total", tier_run="1", outcome="accept") == 1
    assert d("aco_cascade_runs_count") == 1


def test_escalated_once_then_capped(http, router, upstream, monkeypatch):
    path = expected_path(router)
    assert len(path) >= 3, path  # 1 -> a middle tier -> ... (else this test would equal the frontier one)
    n0 = len(upstream.requests)
    before = http.get("/metrics").text
    seen, real = [], router.escalate

    def spy(prompt, tier_run, *a, **kw):  # the real verdict; records what the proxy asked
        seen.append((prompt, tier_run, kw.get("response"), kw.get("responses")))
        return real(prompt, tier_run, *a, **kw)

    monkeypatch.setattr(router, "escalate", spy)
    with cascade_rule(router, accept=1.01, max_runs=2):
        r = http.post("/v1/chat/completions", json=chat())
        want = real(TEXT, path[1], response=answer(path[1]), responses={1: answer(1)})
    assert seen == [(TEXT, 1, answer(1), None), (TEXT, path[1], answer(path[1]), {1: answer(1)})]
    assert r.status_code == 200, r.text
    assert r.headers["x-aco-tiers-run"] == f"1,{path[1]}" and r.headers["x-aco-cascade-stop"] == "max_runs"
    assert r.json()["choices"][0]["message"]["content"] == answer(path[1])
    assert r.json()["model"] == router.spec.tiers[path[1] - 1].model
    assert float(r.headers["x-aco-p-correct"]) == pytest.approx(want.p_success, abs=1e-5)
    assert [c["path"] for c in upstream_calls(upstream, n0)] == [f"/tier{t}/v1/chat/completions" for t in path[:2]]
    cost = call_cost(router, 1) + call_cost(router, path[1])
    assert float(r.headers["x-aco-cascade-cost"]) == pytest.approx(cost, rel=1e-5)
    after = http.get("/metrics").text
    assert metric(after, "aco_cascade_cost_usd_total") - metric(before, "aco_cascade_cost_usd_total") == \
        pytest.approx(cost)
    assert metric(after, "aco_escalations_total", tier_run="1", outcome="escalate") - \
        metric(before, "aco_escalations_total", tier_run="1", outcome="escalate") == 1


def test_escalated_to_the_frontier(http, router, upstream):
    path = expected_path(router)
    top = router.spec.n_tiers
    assert path[-1] == top and path == sorted(set(path)), path
    before, n0 = http.get("/metrics").text, len(upstream.requests)
    with cascade_rule(router, accept=1.01):
        r = http.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200, r.text
    assert r.headers["x-aco-tiers-run"] == ",".join(map(str, path)) and r.headers["x-aco-tier"] == str(top)
    assert r.headers["x-aco-cascade-stop"] == "top_tier"
    assert r.json()["choices"][0]["message"]["content"] == answer(top)
    assert [run["tier"] for run in r.json()["aco"]["runs"]] == path
    assert len(upstream_calls(upstream, n0)) == len(path)
    after = http.get("/metrics").text
    for t in path:
        assert metric(after, "aco_cascade_calls_total", tier=str(t)) - \
            metric(before, "aco_cascade_calls_total", tier=str(t)) == 1
    assert metric(after, "aco_cascade_accepted_total", tier=str(top), stop="top_tier") - \
        metric(before, "aco_cascade_accepted_total", tier=str(top), stop="top_tier") == 1


def test_upstream_failure_mid_cascade_is_502_and_bills_nothing_twice(router, upstream, broken):
    path = expected_path(router)
    nxt = path[1]
    cfg = make_config(router, upstream, broken, first_bad=2)  # tier 1 answers, every tier above fails (500)
    n_good, n_bad = len(upstream.requests), len(broken.requests)
    with LiveServer(create_app(router, cfg)) as s, s.client() as c, cascade_rule(router, accept=1.01):
        r = c.post("/v1/chat/completions", json=chat())
        m = c.get("/metrics").text
    assert r.status_code == 502, r.text
    err = error_of(r)
    assert err["code"] == "upstream_error" and err["upstream_status"] == 500
    assert f"tier {nxt} upstream answered HTTP 500" in err["message"] and "after tier(s) 1" in err["message"]
    assert r.headers["x-aco-tiers-run"] == f"1,{nxt}"
    assert len(upstream_calls(upstream, n_good)) == 1 and len(upstream_calls(broken, n_bad)) == 1  # no retries
    # a fresh server: its metrics are exactly this request's
    assert metric(m, "aco_cascade_calls_total", tier="1") == 1 and metric(m, "aco_cascade_calls_total") == 2
    assert metric(m, "aco_cascade_calls_total", tier=str(nxt)) == 1
    assert metric(m, "aco_cascade_cost_usd_total") == pytest.approx(call_cost(router, 1))  # tier 1, once
    assert metric(m, "aco_cascade_failures_total", tier=str(nxt), code="upstream_error") == 1
    assert metric(m, "aco_cascade_accepted_total") == 0 and metric(m, "aco_cascade_runs_count") == 0
    assert metric(m, "aco_upstream_requests_total", tier="1", status="200") == 1
    assert metric(m, "aco_upstream_requests_total", tier=str(nxt), status="500") == 1
    assert metric(m, "aco_errors_total", code="upstream_error") == 1


def test_stream_is_verify_then_stream(server, router, upstream):
    path = expected_path(router)
    n0 = len(upstream.requests)
    with cascade_rule(router, accept=1.01, max_runs=2), server.client() as c, \
            c.stream("POST", "/v1/chat/completions",
                     json=chat(stream=True, stream_options={"include_usage": True})) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-aco-tiers-run"] == f"1,{path[1]}" and r.headers["x-aco-p-correct"]
        events = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == answer(path[1]) and len(chunks) > 3  # the accepted answer, in several chunks
    assert {ch["model"] for ch in chunks} == {router.spec.tiers[path[1] - 1].model}
    assert [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    sent = upstream_calls(upstream, n0)  # the upstream calls themselves were plain, judged before streaming
    assert len(sent) == 2 and all("stream" not in s["body"] and "stream_options" not in s["body"] for s in sent)
    assert all(s["headers"]["accept"] == "application/json" for s in sent)


def test_escalate_takes_the_response_of_the_tier_that_ran(http, router):
    body = {"prompt": PROMPT, "tier_run": 2, "response": "The fix: use <= in the last-page check.",
            "responses": [{"tier": 1, "text": "Use < instead."}], "logprobs": [-0.1, -2.5, 0.0]}
    r = http.post("/v1/escalate", json=body)
    assert r.status_code == 200, r.text
    want = router.escalate(PROMPT, 2, {}, response=body["response"], responses={1: "Use < instead."},
                           logprobs=body["logprobs"])
    got = r.json()
    assert (got["accept"], got["next_tier"], got["reasons"]) == (want.accept, want.next_tier, want.reasons)
    assert got["p_success"] == pytest.approx(want.p_success, abs=1e-5)
    assert any("response" in x for x in got["reasons"])  # this bundle's verifier says it cannot read responses
    old = http.post("/v1/escalate", json={"prompt": PROMPT, "tier_run": 2, "trace": {"api_calls": 3}})
    assert old.status_code == 200 and not any("response" in x for x in old.json()["reasons"])  # old shape still ok


@pytest.mark.parametrize("extra, needle", [
    ({"response": 5}, "response"),
    ({"responses": [{"tier": 1, "text": "a"}]}, "give 'response'"),
    ({"logprobs": [-0.5]}, "give 'response'"),
    ({"response": "b", "responses": [{"tier": 2, "text": "a"}]}, "the tier that ran"),
    ({"response": "b", "responses": [{"tier": 1, "text": "a"}, {"tier": 1, "text": "c"}]}, "twice"),
    ({"response": "b", "responses": [{"tier": 0, "text": "a"}]}, "responses.0.tier"),
    ({"response": "b", "responses": [{"tier": 1, "text": "a", "model": "x"}]}, "model"),
    ({"response": "b", "responses": {"1": "a"}}, "responses"),
    ({"response": "b", "logprobs": [-0.5, 0.3]}, "logprobs.1"),
    ({"response": "b", "logprobs": ["x"]}, "logprobs.0"),
    ({"respnse": "b"}, "respnse"),
    ({"response": "x" * (MAX_RESPONSE_CHARS + 1)}, f"at most {MAX_RESPONSE_CHARS} characters"),
])
def test_bad_escalate_payloads_are_422_with_a_reason(http, extra, needle):
    r = http.post("/v1/escalate", json={"prompt": PROMPT, "tier_run": 2, **extra})
    assert r.status_code == 422, r.text
    assert needle in error_of(r)["message"]


def test_escalate_refuses_tiers_outside_the_spec_nan_and_huge_bodies(http, router):
    n = router.spec.n_tiers
    r = http.post("/v1/escalate", json={"prompt": PROMPT, "tier_run": 1, "response": "b",
                                        "responses": [{"tier": n + 1, "text": "a"}]})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_input" and f"1..{n}" in error_of(r)["message"]
    raw = '{"prompt": "p", "tier_run": 1, "response": "b", "logprobs": [NaN]}'
    r = http.post("/v1/escalate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "logprobs.0" in error_of(r)["message"]

    def chunks():  # a response past the body limit (no Content-Length: the server reads up to the limit, then 413)
        yield b'{"prompt": "p", "tier_run": 1, "response": "'
        for _ in range(1_000_000 // 8192 + 2):
            yield b"x" * 8192

    r = http.post("/v1/escalate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"
    assert "1000000 bytes" in error_of(r)["message"]
