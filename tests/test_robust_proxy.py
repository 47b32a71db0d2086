"""The proxy's relay rules against a hostile upstream, over real HTTP on loopback (uvicorn + the real tiny bundle +
the fake upstream in ``reply`` mode): error bodies that echo the credential, cookies, internal headers, redirects,
rate limits and credential failures, for ``aco-router`` and ``aco-cascade`` alike, plus the retry count an
OpenAI-style client makes against each mapped status."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from aco_bert.serve import ServeConfig, create_app
from aco_bert.serve.relay import DEFAULT_RETRY_AFTER_S, map_status, reason_token, retry_after
from fake_upstream import FakeUpstream
from test_cascade_proxy import cascade_rule
from live_server import LiveServer
from test_serve import error_of

KEY_ENV = "ACO_ROBUST_PROXY_TEST_KEY"
SECRET = "sk-robust-test-not-a-real-key-4c1f"
PROMPT = "Fix the off-by-one error in the pagination helper so the last page is not dropped."
ECHO = json.dumps({"error": {"message": "Incorrect API key provided: {authorization}", "code": "{authorization}",
                             "type": "invalid_request_error", "param": "{authorization}"}})
HOSTILE_HEADERS = {"set-cookie": "session=upstream-secret; Path=/", "location": "http://127.0.0.1:1/elsewhere",
                   "server": "internal-gw/1.2", "x-internal-host": "10.0.0.7:8443", "x-ratelimit-remaining-requests":
                   "4999", "x-echo": "{authorization}", "x-request-id": "req_abc123", "openai-processing-ms": "12"}
MODELS = ("aco-router", "aco-cascade")


@pytest.fixture(scope="module")
def router(tiny_bundle):
    from aco_bert.runtime import Router

    return Router.load(tiny_bundle)  # own instance: the cascade rule is set per test


@pytest.fixture(scope="module")
def server(router, upstream):
    ups = {str(i): {"base_url": upstream.base_url(f"tier{i}"), "api_key_env": KEY_ENV}
           for i in range(1, router.spec.n_tiers + 1)}
    cfg = ServeConfig(upstream_timeout_s=2.0, upstream_connect_timeout_s=1.0, upstreams=ups)
    os.environ[KEY_ENV] = SECRET
    with LiveServer(create_app(router, cfg)) as s:
        yield s
    os.environ.pop(KEY_ENV, None)


@pytest.fixture()
def http(server, router, upstream):
    upstream.mode, upstream.extra_headers = "ok", {}
    with cascade_rule(router, accept=0.0), server.client() as c:  # cascades keep their first answer
        yield c
    upstream.mode, upstream.extra_headers = "ok", {}


def chat(model: str = "aco-router", **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "aco": {"budget": 0.0}}
    body.update(extra)
    return body


def leaked(r: httpx.Response) -> list[str]:
    """Every place the client-visible answer carries the upstream credential or an upstream-only header."""
    out = [f"header {k}" for k, v in r.headers.items() if SECRET in v]
    out += ["body"] if SECRET in r.text else []
    out += [f"header {h}" for h in ("set-cookie", "location", "x-internal-host", "x-echo",
                                    "x-ratelimit-remaining-requests", "x-fake-upstream") if h in r.headers]
    return out + (["header server"] if "internal-gw" in r.headers.get("server", "") else [])  # uvicorn's is fine


# upstream status -> (client status, code)
MAPPED = {400: (400, "upstream_rejected_request"), 401: (502, "upstream_auth_failed"),
          403: (502, "upstream_auth_failed"), 404: (400, "upstream_not_found"), 409: (400, "upstream_rejected_request"),
          422: (422, "upstream_rejected_request"), 429: (429, "upstream_rate_limited"), 500: (502, "upstream_error"),
          503: (502, "upstream_error"), 302: (502, "upstream_redirect"), 307: (502, "upstream_redirect")}


@pytest.mark.parametrize("model", MODELS)
def test_error_bodies_and_headers_that_echo_the_key_never_reach_the_client(http, upstream, model):
    upstream.mode = "reply"
    for status, (want, code) in MAPPED.items():
        upstream.reply = (status, {"content-type": "application/json", **HOSTILE_HEADERS}, ECHO)
        for stream in (False, True):
            r = http.post("/v1/chat/completions", json=chat(model, stream=stream))
            assert upstream.last()["headers"]["authorization"] == f"Bearer {SECRET}"  # the upstream did get it
            assert r.status_code == want, (status, r.status_code, r.text)
            assert not leaked(r), (status, leaked(r))
            err = error_of(r)
            assert err["code"] == code and err["upstream_status"] == status, err
            assert "upstream_body" not in err and "Incorrect API key" not in r.text
            if status >= 400:  # the short reason: the type token (the code is the key itself, so refused)
                assert f"answered HTTP {status} (invalid_request_error): " in err["message"], err
            assert r.headers["x-aco-tier"]  # the route's own headers still say where it went


@pytest.mark.parametrize("model", MODELS)
def test_only_allow_listed_headers_are_relayed_and_an_echoed_key_is_redacted(http, upstream, model):
    upstream.extra_headers = {k: v.replace("{authorization}", f"Bearer {SECRET}") for k, v in HOSTILE_HEADERS.items()}
    r = http.post("/v1/chat/completions", json=chat(model, messages=[{"role": "user", "content": f"say {SECRET}"}]))
    assert r.status_code == 200, r.text
    assert not leaked(r), leaked(r)  # the fake echoes the prompt, key included: redacted in the answer
    assert "[redacted]" in r.json()["choices"][0]["message"]["content"]
    assert r.headers["x-request-id"] == "req_abc123" and r.headers["openai-processing-ms"] == "12"
    assert r.headers["content-type"].startswith("application/json") and r.headers["x-aco-upstream-status"] == "200"
    with http.stream("POST", "/v1/chat/completions", json=chat(model, stream=True)) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
        s.read()
        assert not leaked(s) and s.headers["x-request-id"] == "req_abc123"


def test_a_redirect_is_never_followed_nor_relayed(http, upstream):
    with FakeUpstream() as elsewhere:
        upstream.mode = "reply"
        for status in (301, 302, 307, 308):
            n0 = len(upstream.requests)
            upstream.reply = (status, {"location": elsewhere.base_url("steal") + "/chat/completions",
                                       "set-cookie": "s=1"}, "")
            r = http.post("/v1/chat/completions", json=chat())
            assert r.status_code == 502 and error_of(r)["code"] == "upstream_redirect", r.text
            assert r.headers["x-should-retry"] == "false" and not leaked(r)
            assert len(upstream.requests) == n0 + 1
        assert elsewhere.requests == []  # the credential never went where the upstream pointed


def test_429_keeps_a_checked_retry_after(http, upstream):
    upstream.mode = "reply"
    for given, want in (({"retry-after": "7"}, "7"), ({}, str(DEFAULT_RETRY_AFTER_S)),
                        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, str(DEFAULT_RETRY_AFTER_S)),
                        ({"retry-after": "86400"}, "3600"), ({"retry-after-ms": "1500"}, "2")):
        upstream.reply = (429, given, '{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}')
        r = http.post("/v1/chat/completions", json=chat())
        assert r.status_code == 429 and error_of(r)["code"] == "upstream_rate_limited", r.text
        assert r.headers["retry-after"] == want, (given, r.headers)
        assert "x-should-retry" not in r.headers and "slow down" not in r.text
        assert "answered HTTP 429 (rate_limit_exceeded): rate limited" in error_of(r)["message"]


def openai_like(c: httpx.Client, body: dict, max_retries: int = 2) -> httpx.Response:
    """POST with the OpenAI SDK's retry rule (``x-should-retry`` first, then 408/409/429/5xx; ``retry-after-ms``)."""
    for attempt in range(max_retries + 1):
        r = c.post("/v1/chat/completions", json=body)
        hint = r.headers.get("x-should-retry")
        retry = hint == "true" or (hint != "false" and (r.status_code in (408, 409, 429) or r.status_code >= 500))
        if not retry or attempt == max_retries:
            return r
        time.sleep(min(float(r.headers.get("retry-after-ms", "20")) / 1000, 0.05))
    raise AssertionError("unreachable")


@pytest.mark.parametrize("status,calls", [(401, 1), (403, 1), (400, 1), (404, 1), (302, 1), (500, 3), (429, 3)])
def test_client_retries_multiply_upstream_calls_only_where_a_retry_can_help(http, upstream, status, calls):
    upstream.mode, upstream.reply = "reply", (status, {"retry-after-ms": "10"}, ECHO)
    n0 = len(upstream.requests)
    r = openai_like(http, chat())
    assert r.status_code == MAPPED[status][0] and len(upstream.requests) - n0 == calls


def test_real_openai_client_does_not_retry_a_bad_credential(server, upstream):
    openai = pytest.importorskip("openai")
    upstream.mode, upstream.reply = "reply", (401, {"set-cookie": "s=1"}, ECHO)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="client-side-key", max_retries=2)
    n0 = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="aco-router", messages=[{"role": "user", "content": PROMPT}])
    assert e.value.status_code == 502 and SECRET not in str(e.value.body) and SECRET not in e.value.response.text
    assert len(upstream.requests) - n0 == 1
    assert upstream.last()["headers"]["authorization"] == f"Bearer {SECRET}"  # never the client's key
    upstream.mode = "ok"


def test_relay_rules_unit():
    assert map_status(418).status == 400 and map_status(502).status == 502 and map_status(600).status == 502
    assert reason_token(b'{"error": {"code": "context_length_exceeded"}}') == "context_length_exceeded"
    assert reason_token(b'{"error": {"code": "sk_live_abcdef123456"}}', secret="sk_live_abcdef123456") is None
    assert reason_token(b'{"error": {"code": "Bad Thing!", "type": "x"}}') is None  # neither is a plain token
    assert reason_token(b"<html>oops</html>") is None and reason_token(b"[1]") is None
    assert retry_after({"Retry-After": "0"}) == {"retry-after": str(DEFAULT_RETRY_AFTER_S),
                                                 "retry-after-ms": str(DEFAULT_RETRY_AFTER_S * 1000)}


def test_a_trailing_slash_is_not_a_redirect_built_from_the_host_header(http):
    for path in ("/v1/chat/completions/", "/v1/route/"):
        r = http.post(path, json=chat(), headers={"host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers and "evil.example" not in r.text, r.headers
    r = http.get("/healthz/", headers={"host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers
