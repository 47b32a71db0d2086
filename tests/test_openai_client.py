"""The official ``openai`` Python SDK against the package's OpenAI-compatible proxy, as a platform team runs it:
``python -m aco_bert.serve --bundle DIR --config serve.yaml`` in its own process (client keys on, upstreams = the
loopback fake upstream at /tier<i>/v1), the tiny stacked bundle choosing the tier. Plain and streamed completions
(content and the ``x-aco-*`` routing headers), the errors the SDK raises for a failing upstream, a bad request and
a wrong key, and ``model: "aco-cascade"``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from aco_bert.serve.auth import hash_key
from live_server import wait_ready

REPO = Path(__file__).resolve().parents[1]
CLIENT_KEY = "aco-client-key-for-openai-sdk-tests"
UPSTREAM_KEY_ENV = "ACO_OPENAI_CLIENT_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-not-a-real-key-9f2e"
SHORT = "Fix the off-by-one error in the pagination helper so the last page is not dropped."


@pytest.fixture(scope="module")
def aco_router(bundle):
    from aco_bert.runtime import Router

    return Router.load(bundle)


@pytest.fixture(scope="module")
def proxy_url(bundle, aco_router, upstream, tmp_path_factory):
    """The CLI server in its own process, configured by a serve.yaml (upstreams + client key hashes)."""
    cfg = {"upstream_timeout_s": 3.0, "upstream_connect_timeout_s": 1.0, "api_key_hashes": [hash_key(CLIENT_KEY)],
           "upstreams": {str(i): {"base_url": upstream.base_url(f"tier{i}"), "api_key_env": UPSTREAM_KEY_ENV}
                         for i in range(1, aco_router.spec.n_tiers + 1)}}
    d = tmp_path_factory.mktemp("openai_client")
    (d / "serve.yaml").write_text(yaml.safe_dump(cfg))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(d / "server.log", "w+b")
    cmd = [sys.executable, "-m", "aco_bert.serve", "--bundle", bundle, "--config", str(d / "serve.yaml"),
           "--host", "127.0.0.1", "--port", str(port), "--log_level", "warning"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "ACO_BERT_ORT_THREADS": "1", UPSTREAM_KEY_ENV: UPSTREAM_KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, lambda: (log.seek(0), log.read().decode())[1])
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture()
def client(proxy_url, upstream):
    upstream.mode = "ok"
    with openai.OpenAI(base_url=proxy_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30,
                       http_client=httpx.Client(trust_env=False)) as c:
        yield c
    upstream.mode = "ok"


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def test_completion_content_and_routing_headers(client, upstream, aco_router, two_tier_prompts):
    for prompt, tier in two_tier_prompts:
        raw = client.chat.completions.with_raw_response.create(model="aco-router", messages=chat(prompt),
                                                               temperature=0.2, user="u-7")
        assert raw.status_code == 200
        want = aco_router.route(prompt)
        assert want.tier == tier and raw.headers["x-aco-tier"] == str(tier) and raw.headers["x-aco-model"] == want.model
        assert float(raw.headers["x-aco-p-success"]) == pytest.approx(want.p_success, abs=1e-5)
        assert raw.headers["x-aco-policy"] == want.policy
        done = raw.parse()
        assert isinstance(done, openai.types.chat.ChatCompletion)
        assert done.choices[0].message.content == f"echo from tier{tier}: {prompt}"
        assert done.model == want.model and done.usage.total_tokens == 8
        sent = upstream.last()
        assert sent["path"] == f"/tier{tier}/v1/chat/completions" and sent["body"]["model"] == want.model
        assert sent["body"]["temperature"] == 0.2 and sent["body"]["user"] == "u-7"
        assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # never the client's key


def test_streaming_joins_to_the_upstream_text(client, upstream, aco_router):
    prompt = SHORT  # the fake upstream streams one word per 5 ms: a real SWE-bench issue would take seconds
    tier = aco_router.route(prompt).tier
    stream = client.chat.completions.create(model="aco-router", messages=chat(prompt), stream=True)
    chunks = list(stream)
    assert len(chunks) > 2 and all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"echo from tier{tier}: {prompt}"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.last()["body"]["stream"] is True
    with client.chat.completions.with_streaming_response.create(model="aco-router", messages=chat(prompt),
                                                                stream=True) as r:
        assert r.headers["x-aco-tier"] == str(tier) and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(c.choices[0].delta.content or "" for c in r.parse())
    assert text == f"echo from tier{tier}: {prompt}"


def test_upstream_failure_is_an_api_status_error_with_the_mapped_status(client, upstream, two_tier_prompts):
    prompt, tier = two_tier_prompts[0]
    upstream.mode = "error500"
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="aco-router", messages=chat(prompt))
    assert isinstance(e.value, openai.APIStatusError) and e.value.status_code == 502
    assert e.value.response.headers["x-aco-upstream-status"] == "500"
    assert e.value.response.headers["x-aco-tier"] == str(tier)
    assert e.value.body["code"] == "upstream_error" and e.value.body["upstream_status"] == 500
    assert "answered HTTP 500" in str(e.value) and "fake upstream exploded" not in str(e.value)  # bodies not relayed
    with pytest.raises(openai.InternalServerError) as e:  # a stream fails the same way before its first byte
        list(client.chat.completions.create(model="aco-router", messages=chat(prompt), stream=True))
    assert e.value.status_code == 502


def test_bad_requests_raise_the_sdks_4xx_errors_with_the_reason(client, upstream):
    n0 = len(upstream.requests)
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model="aco-router", messages=chat("fix it"), extra_body={"aco": {"budget": -2}})
    assert e.value.status_code == 422 and "budget" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model="aco-router", messages=chat(" \u200b "))
    assert e.value.status_code == 422 and "empty" in e.value.message
    json_headers = {"headers": {"content-type": "application/json"}}
    for raw, code in ((b'{"model": "aco-router", "messages": [{"role": "user", "content": "fix \\ud800"}]}',
                       "invalid_text"),  # a lone surrogate escape: JSON, but not Unicode text
                      (b'{"model": "aco-router", "messages": [', "invalid_json")):
        with pytest.raises(openai.BadRequestError) as e:
            client.post("/chat/completions", cast_to=openai.types.chat.ChatCompletion, content=raw,
                        options=json_headers)
        assert e.value.status_code == 400 and e.value.body["code"] == code, e.value.body
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=chat("fix it"))
    assert e.value.status_code == 404 and e.value.body["code"] == "model_not_found" and "gpt-4o" in e.value.message
    assert len(upstream.requests) == n0  # none of them reached a provider


def test_a_wrong_or_missing_key_is_an_authentication_error(proxy_url, upstream):
    n0 = len(upstream.requests)
    for key in ("not-the-key", CLIENT_KEY[:-1]):
        with openai.OpenAI(base_url=proxy_url + "/v1", api_key=key, max_retries=2,
                           http_client=httpx.Client(trust_env=False)) as c:
            with pytest.raises(openai.AuthenticationError) as e:
                c.chat.completions.create(model="aco-router", messages=chat("fix it"))
        assert e.value.status_code == 401 and key not in str(e.value) and key not in e.value.response.text
        assert e.value.response.headers["www-authenticate"].lower().startswith("bearer")
    assert len(upstream.requests) == n0


def test_aco_cascade_model(client, upstream, two_tier_prompts):
    prompt, _ = two_tier_prompts[0]
    n0 = len(upstream.requests)
    raw = client.chat.completions.with_raw_response.create(model="aco-cascade", messages=chat(prompt),
                                                           extra_body={"aco": {"budget": 0.0}})
    done = raw.parse()
    runs = [int(t) for t in raw.headers["x-aco-tiers-run"].split(",")]
    answered = int(raw.headers["x-aco-tier"])
    assert runs[-1] == answered and len(upstream.requests) - n0 == len(runs)
    assert [r["path"] for r in upstream.requests[n0:]] == [f"/tier{t}/v1/chat/completions" for t in runs]
    assert done.choices[0].message.content == f"echo from tier{answered}: {prompt}"
    assert raw.headers["x-aco-cascade-stop"] in ("accepted", "top_tier", "max_runs")
    assert done.model_extra["aco"]  # the cascade's own record rides along as an extra field


def test_models_list_names_the_routers_models(client, aco_router):
    ids = [m.id for m in client.models.list()]
    assert "aco-router" in ids and "aco-cascade" in ids


def test_models_retrieve_a_served_model(client):
    m = client.models.retrieve("aco-router")
    assert m.id == "aco-router" and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
