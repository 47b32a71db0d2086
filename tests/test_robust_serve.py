"""One client can never hurt the others (issue 14, serving side), over real HTTP on loopback with the real bundle:
unencodable / invisible-only text is a 4xx on every endpoint and never fails a micro-batch-mate; idle and
slow-header sockets are closed; over the in-flight limit or past the route timeout -> 503 + Retry-After at once;
abandoned requests are cancelled; client API keys (sha256 in config, constant-time check); a hypothesis fuzz of the
HTTP surface that finds no 5xx."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aco_bert.serve import ServeConfig, create_app
from aco_bert.serve.__main__ import build_cli, main as serve_main
from aco_bert.serve.auth import hash_key, key_matches, load_key_hashes
from aco_bert.serve.server import HeaderTimeoutH11Protocol, uvicorn_config
from aco_bert.serve.middleware import body_text_problem
from live_server import LiveServer

GOOD = "Fix the off-by-one error in the pagination helper so the last page is not dropped."
KEY = "client-key-for-tests-0123456789"


class Wrapped:
    """The real router, slowed down and/or failing inside the forward pass on a poisoned prompt (what an item that
    breaks the tokeniser does), to show what that does to *other* requests."""

    def __init__(self, router, delay_s: float = 0.0) -> None:
        self._r, self.delay_s = router, delay_s

    def __getattr__(self, name):
        return getattr(self._r, name)

    def route(self, prompt, **kw):
        time.sleep(self.delay_s)
        if "POISON" in prompt:
            raise UnicodeEncodeError("utf-8", prompt, 0, 1, "poisoned")
        return self._r.route(prompt, **kw)

    def route_batch(self, prompts, **kw):
        time.sleep(self.delay_s)
        if any("POISON" in p for p in prompts):
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "poisoned")
        return self._r.route_batch(prompts, **kw)


@pytest.fixture(scope="module")
def router(tiny_bundle):
    from aco_bert.runtime import Router

    return Router.load(tiny_bundle)


def _upstreams(router, upstream) -> dict:
    return {str(i): {"base_url": upstream.base_url(f"tier{i}")} for i in range(1, router.spec.n_tiers + 1)}


def _raw(c: httpx.Client, path: str, text: str) -> httpx.Response:
    return c.post(path, content=text.encode(), headers={"content-type": "application/json"})


def _err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


# ------------------------------------------------------------------------------------------------- bad text
SURROGATE_BODIES = {
    "/v1/route": r'{"prompt": "fix this \ud800 bug"}',
    "/v1/route/batch": r'{"items": [{"prompt": "ok"}, {"prompt": "\udfff"}]}',
    "/v1/escalate": r'{"prompt": "hello", "tier_run": 1, "response": "x\ud800"}',
    "/v1/chat/completions": r'{"model": "aco-router", "messages": [{"role": "user", "content": "hi \ud800"}]}',
}


def test_lone_surrogates_and_invisible_prompts_are_4xx_on_every_endpoint(router, upstream):
    cfg = ServeConfig(upstreams=_upstreams(router, upstream))
    with LiveServer(create_app(router, cfg), cfg) as s, s.client() as c:
        for path, body in SURROGATE_BODIES.items():
            r = _raw(c, path, body)
            assert r.status_code == 400, (path, r.text)
            e = _err(r)
            assert e["code"] == "invalid_text" and "surrogate" in e["message"], e
        r = _raw(c, "/v1/chat/completions", r'{"model": "aco-router", "user": "\ud83d", '
                                            r'"messages": [{"role": "user", "content": "hi"}]}')
        assert r.status_code == 400 and "user" in _err(r)["message"]  # any field, not only the prompt
        r = _raw(c, "/v1/route", r'{"prompt": "ok \ud83d\ude00 emoji pair"}')  # a valid pair is text
        assert r.status_code == 200, r.text
        for blank in ["\u200b\u200c\u200d", "\ufeff", "\x00\x00", "\u2060 \u00a0\t\u200b"]:
            r = c.post("/v1/route", json={"prompt": blank})
            assert r.status_code == 422 and "empty" in _err(r)["message"], (repr(blank), r.text)
            r = c.post("/v1/chat/completions", json={"model": "aco-router",
                                                     "messages": [{"role": "user", "content": blank}]})
            assert r.status_code == 422 and "empty prompt" in _err(r)["message"], r.text
            r = c.post("/v1/escalate", json={"prompt": blank, "tier_run": 1})
            assert r.status_code == 422, r.text
        assert c.get("/healthz").status_code == 200


def test_text_helpers():
    assert "a[1].b" in body_text_problem('{"a": ["x", {"b": "\\ud800"}]}')
    assert body_text_problem('{"a": "\\\\ud800"}') is None  # an escaped backslash, not a surrogate
    assert body_text_problem('{"a": "\\ud83d\\ude00"}') is None


def test_one_bad_client_never_fails_its_micro_batch_mates(router):
    """The issue's 21-of-300: 300 concurrent clients over HTTP into the micro-batcher; a few send a lone surrogate
    (refused at the boundary) and a few a prompt that fails *inside* the batched forward pass: every good one 200."""
    cfg = ServeConfig(microbatch=True, microbatch_window_ms=5, microbatch_max=32, max_inflight=512)
    bodies = []
    for i in range(300):
        if i % 50 == 7:
            bodies.append(r'{"prompt": "bad \ud800 %d"}' % i)
        elif i % 50 == 9:
            bodies.append(json.dumps({"prompt": f"POISON {i}"}))
        else:
            bodies.append(json.dumps({"prompt": f"{GOOD} #{i}"}))
    with LiveServer(create_app(Wrapped(router), cfg), cfg) as s, \
            s.client(limits=httpx.Limits(max_connections=64)) as c:
        with ThreadPoolExecutor(48) as ex:
            got = list(ex.map(lambda b: _raw(c, "/v1/route", b), bodies))
        sizes = c.get("/metrics").text
    codes = [r.status_code for r in got]
    good = [r for r, b in zip(got, bodies) if "bad" not in b and "POISON" not in b]
    assert all(r.status_code == 200 for r in good), sorted(set(codes))
    assert len(good) == 288
    assert all(codes[i] == 400 for i in range(300) if i % 50 == 7)
    assert all(codes[i] == 500 for i in range(300) if i % 50 == 9)  # only the poisoned caller sees its failure
    assert "aco_route_batch_size" in sizes


# ------------------------------------------------------------------------------------------------- sockets
def _closed_within(sock: socket.socket, limit_s: float) -> float:
    sock.settimeout(limit_s)
    t0 = time.perf_counter()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.perf_counter() - t0


def test_idle_and_slow_header_sockets_are_closed_and_healthz_still_answers(router):
    cfg = ServeConfig(header_timeout_s=1.0)
    with LiveServer(create_app(router, cfg), cfg) as s:
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(300)]
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished (slow loris)
        with s.client() as c:
            t0 = time.perf_counter()
            assert c.get("/healthz").status_code == 200  # while 300 idle sockets are open
            assert time.perf_counter() - t0 < 2
            assert c.post("/v1/route", json={"prompt": GOOD}).status_code == 200
        assert _closed_within(idle[0], 5) < 4
        assert _closed_within(slow, 5) < 4
        time.sleep(0.3)
        assert all(_closed_within(k, 0.5) < 0.5 for k in idle[1:])  # every one of them
        for k in idle + [slow]:
            k.close()
        with s.client() as c:  # a keep-alive client that is quick is not affected
            for _ in range(3):
                assert c.get("/healthz").status_code == 200


def test_over_the_inflight_limit_is_503_with_retry_after(router):
    cfg = ServeConfig(max_inflight=2, route_threads=8)
    with LiveServer(create_app(Wrapped(router, delay_s=0.6), cfg), cfg) as s, s.client() as c:
        with ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(c.post, "/v1/route", json={"prompt": f"{GOOD} {i}"}) for i in range(8)]
            time.sleep(0.2)
            t0 = time.perf_counter()
            assert c.get("/healthz").status_code == 200 and time.perf_counter() - t0 < 0.5  # probes exempt
            got = [f.result() for f in futs]
    codes = sorted(r.status_code for r in got)
    assert codes.count(200) >= 2 and codes.count(503) >= 3, codes
    for r in got:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and _err(r)["code"] == "overloaded"


def test_load_shedding_answers_503_at_once_instead_of_504_late(router):
    """One slow thread, 1.2 s timeout: a queue that would wait past it is refused at once (never 504 later)."""
    cfg = ServeConfig(route_threads=1, route_timeout_s=1.2, shed_wait_fraction=0.75)  # margin for CPU jitter
    with LiveServer(create_app(Wrapped(router, delay_s=0.3), cfg), cfg) as s, s.client() as c:
        assert c.post("/v1/route", json={"prompt": GOOD}).status_code == 200  # the engine learns ~0.3 s a call
        t0 = time.perf_counter()
        with ThreadPoolExecutor(12) as ex:
            got = list(ex.map(lambda i: c.post("/v1/route", json={"prompt": f"{GOOD} {i}"}), range(12)))
        took = time.perf_counter() - t0
    codes = sorted(r.status_code for r in got)
    assert 504 not in codes and codes.count(200) >= 2 and codes.count(503) >= 5, codes
    shed = [r for r in got if r.status_code == 503]
    assert all(int(r.headers["retry-after"]) >= 1 and _err(r)["code"] == "overloaded" for r in shed)
    assert took < 3, took


def test_abandoned_batches_are_cancelled_and_do_not_starve_later_requests(router):
    cfg = ServeConfig(route_threads=1, route_timeout_s=30, shed_wait_fraction=0)
    body = json.dumps({"items": [{"prompt": f"{GOOD} {i}"} for i in range(8)]}).encode()
    req = (b"POST /v1/route/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with LiveServer(create_app(Wrapped(router, delay_s=0.4), cfg), cfg) as s, s.client() as c:
        socks = []
        for _ in range(15):  # 15 x 0.4 s of queued work if nobody cancels it
            k = socket.create_connection(("127.0.0.1", s.port))
            k.sendall(req)
            socks.append(k)
        time.sleep(0.3)
        for k in socks:
            k.close()
        time.sleep(0.2)
        t0 = time.perf_counter()
        r = c.post("/v1/route", json={"prompt": GOOD})
        took = time.perf_counter() - t0
        assert r.status_code == 200 and took < 2.0, (r.status_code, took)
        assert 'code="client_gone"' in c.get("/metrics").text


# ------------------------------------------------------------------------------------------------- API keys
def test_client_api_keys_over_http(router, upstream, tmp_path, capsys):
    f = tmp_path / "keys.txt"
    f.write_text(f"# clients\n{hash_key('other-key')}\n")
    cfg = ServeConfig(api_key_hashes=[hash_key(KEY)], api_keys_file=str(f), upstreams=_upstreams(router, upstream))
    chat = {"model": "aco-router", "messages": [{"role": "user", "content": GOOD}]}
    with LiveServer(create_app(router, cfg), cfg) as s, s.client() as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        for path, body in [("/v1/route", {"prompt": GOOD}), ("/v1/chat/completions", chat)]:
            for hdr, why in [({}, "missing"), ({"authorization": "Bearer wrong-key"}, "invalid"),
                             ({"authorization": f"Basic {KEY}"}, "bearer")]:
                r = c.post(path, json=body, headers=hdr)
                assert r.status_code == 401 and why in _err(r)["message"].lower(), r.text
                assert r.headers["www-authenticate"] == "Bearer" and KEY not in r.text
            assert c.post(path, json=body, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.post("/v1/route", json={"prompt": GOOD},
                      headers={"authorization": "Bearer other-key"}).status_code == 200  # from the file
        assert c.get("/metrics").status_code == 401 and c.get("/v1/router").status_code == 401
        assert upstream.last()["headers"].get("authorization") != f"Bearer {KEY}"  # never forwarded
    cfg2 = ServeConfig(api_key_hashes=[hash_key(KEY)], auth_metrics=False)
    with LiveServer(create_app(router, cfg2), cfg2) as s, s.client() as c:
        assert c.get("/metrics").status_code == 200
    f.write_text("my-plaintext-key\n")
    with pytest.raises(ValueError, match="not a sha256"):
        load_key_hashes([], str(f))
    assert key_matches(KEY, [hash_key("a"), hash_key(KEY)]) and not key_matches("a" + KEY, [hash_key(KEY)])
    import sys
    old = sys.stdin
    try:
        sys.stdin = io.StringIO(KEY + "\n")
        assert serve_main(["hash-key"]) == 0
    finally:
        sys.stdin = old
    assert capsys.readouterr().out.strip() == hashlib.sha256(KEY.encode()).hexdigest()


def test_limits_are_config_keys_with_flags_and_reach_uvicorn():
    flags = build_cli().format_help()
    for name in ("header_timeout_s", "max_inflight", "limit_concurrency", "backlog", "h11_max_incomplete_event_size",
                 "limit_max_requests", "max_queue", "shed_wait_fraction", "api_keys_file", "keep_alive_s"):
        assert f"--{name}" in flags, name
    cfg = ServeConfig(limit_concurrency=500, backlog=64, keep_alive_s=3, h11_max_incomplete_event_size=8192,
                      limit_max_requests=10_000, header_timeout_s=2.5)
    u = uvicorn_config(lambda *a: None, cfg)
    assert (u.limit_concurrency, u.backlog, u.timeout_keep_alive, u.h11_max_incomplete_event_size,
            u.limit_max_requests, u.aco_header_timeout_s, u.http) == (500, 64, 3, 8192, 10_000, 2.5,
                                                                      HeaderTimeoutH11Protocol)
    with pytest.raises(ValueError, match="max_inflight"):
        ServeConfig(max_inflight=0)


# ------------------------------------------------------------------------------------------------- fuzz
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                     st.text(max_size=40))
_json = st.recursive(_scalars, lambda ch: st.one_of(st.lists(ch, max_size=4),
                                                    st.dictionaries(st.text(max_size=10), ch, max_size=4)),
                     max_leaves=12)
_text = st.one_of(st.text(max_size=60), st.sampled_from(["", " ", "\u200b", GOOD, "x" * 500]))
_msg = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "", 5]),
                              "content": st.one_of(_text, st.none(), st.lists(
                                  st.one_of(_text, st.fixed_dictionaries({"type": st.just("text"), "text": _text})),
                                  max_size=3), _json)})
_route = st.fixed_dictionaries({}, optional={
    "prompt": st.one_of(_text, _json), "messages": st.lists(_msg, max_size=3),
    "step_type": st.one_of(st.none(), st.sampled_from(["edit", "plan", "nope"]), _json),
    "domain": st.one_of(st.none(), _text, st.lists(_text, max_size=3)),
    "budget": st.one_of(st.none(), st.floats(), st.integers()), "min_tier": st.one_of(st.none(), st.integers()),
    "metadata": st.one_of(st.none(), st.dictionaries(_text, _text, max_size=3), _json)})
_bodies = {
    "/v1/route": st.one_of(_route, _json),
    "/v1/route/batch": st.one_of(st.fixed_dictionaries({"items": st.lists(_route, max_size=4)}), _json),
    "/v1/escalate": st.one_of(_route.map(lambda d: {**d, "tier_run": 1}), st.fixed_dictionaries({}, optional={
        "prompt": _text, "tier_run": st.one_of(st.integers(), _json), "trace": _json, "response": _text,
        "responses": st.lists(st.fixed_dictionaries({"tier": st.integers(), "text": _text}), max_size=2),
        "logprobs": st.lists(st.floats(), max_size=3)}), _json),
    "/v1/chat/completions": st.one_of(st.fixed_dictionaries(
        {"model": st.sampled_from(["aco-router", "aco-cascade", "gpt-4", ""]), "messages": st.lists(_msg, max_size=3)},
        optional={"stream": st.one_of(st.booleans(), _json), "aco": st.one_of(_route, _json), "temperature": _json}),
        _json),
}
_case = st.one_of(
    *[st.tuples(st.just(p), st.just("json"), b) for p, b in _bodies.items()],
    st.tuples(st.sampled_from(sorted(_bodies)), st.just("raw"), st.binary(max_size=200)),
    st.tuples(st.sampled_from(sorted(_bodies)), st.just("raw"),
              st.sampled_from([rb'{"prompt": "\ud800"}', b'{"prompt": "\\u0000"}', b'{"prompt":', b"\xff\xfe",
                               rb'{"items": [{"prompt": "\udc00"}]}', b"[]", b"null", b'"\\ud800"'])))


@pytest.fixture(scope="module")
def fuzz_server(router, upstream):
    cfg = ServeConfig(upstreams=_upstreams(router, upstream), max_body_bytes=200_000, max_inflight=64)
    with LiveServer(create_app(router, cfg), cfg) as s, s.client() as c:
        yield c


def _no_5xx(c: httpx.Client, case) -> None:
    path, kind, body = case
    if kind == "json":
        r = c.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    else:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, (path, body, r.status_code, r.text[:300])
    if r.status_code >= 400:
        _err(r)  # one error shape


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=_case)
def test_fuzz_http_surface_no_5xx_fast(fuzz_server, case):
    _no_5xx(fuzz_server, case)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_case)
def test_fuzz_http_surface_no_5xx(fuzz_server, case):
    _no_5xx(fuzz_server, case)
