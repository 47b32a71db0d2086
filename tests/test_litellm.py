"""aco_bert.integrations.litellm against LiteLLM's real ``Router`` and real HTTP: the tiny stacked bundle (trained on
SWE-bench Verified prompts, see conftest) picks the tier, LiteLLM's ``openai/`` provider calls the loopback fake
upstream at /tier<i>/v1, and the test checks the upstream got the model the bundle chose. Plus the LiteLLM proxy
pre-call hook on a proxy-shaped ``data`` dict, the deploy/litellm/config.yaml callback path, and the lazy import.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported: never the network

import litellm  # noqa: E402
from fastapi import HTTPException  # noqa: E402

from aco_bert.integrations.litellm import (  # noqa: E402
    METADATA_KEY, AcoProxyHandler, AcoRoutingStrategy, BundleDecider, HttpDecider, install, proxy_handler_instance)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def aco_router(bundle):
    from aco_bert.runtime import Router

    return Router.load(bundle)


@pytest.fixture(scope="module")
def tier_models(aco_router) -> list[str]:
    return [t.model for t in aco_router.spec.tiers]


def model_list(upstream, tier_models, names=None) -> list[dict]:
    """One ``openai/<tier model>`` deployment per tier, served by the fake upstream at /tier<i>/v1."""
    return [{"model_name": (names or tier_models)[i],
             "litellm_params": {"model": f"openai/{m}", "api_base": upstream.base_url(f"tier{i + 1}"),
                                "api_key": "sk-fake-upstream-key"}}
            for i, m in enumerate(tier_models)]


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


@pytest.fixture(scope="module")
def routed(upstream, tier_models, bundle):
    """A LiteLLM Router with the aco strategy installed (bundle in process)."""
    r = litellm.Router(model_list=model_list(upstream, tier_models), num_retries=0)
    strategy = install(r, bundle=bundle)
    return r, strategy


@pytest.fixture(autouse=True)
def _ok(upstream):
    upstream.mode = "ok"
    yield
    upstream.mode = "ok"


def test_strategy_sends_each_prompt_to_the_tier_the_bundle_chose(routed, upstream, tier_models, two_tier_prompts):
    r, strategy = routed
    assert isinstance(strategy, AcoRoutingStrategy)
    for prompt, tier in two_tier_prompts:
        n0 = len(upstream.requests)
        resp = asyncio.run(r.acompletion(model="aco-router", messages=chat(prompt)))
        assert len(upstream.requests) == n0 + 1
        sent = upstream.last()
        assert sent["path"] == f"/tier{tier}/v1/chat/completions"
        assert sent["body"]["model"] == tier_models[tier - 1]  # what the bundle's spec names that tier
        assert sent["headers"]["authorization"] == "Bearer sk-fake-upstream-key"
        assert resp.choices[0].message.content == f"echo from tier{tier}: {prompt}"
    assert two_tier_prompts[0][1] != two_tier_prompts[1][1]


def test_sync_completion_streaming_and_the_decision_in_metadata(routed, upstream, tier_models, aco_router):
    r, strategy = routed
    prompt = "Fix the off-by-one error in the pagination helper so the last page is not dropped."  # streams quickly
    tier = aco_router.route(prompt).tier
    resp = r.completion(model="aco-router", messages=chat(prompt))  # the strategy's sync pick
    assert resp.choices[0].message.content == f"echo from tier{tier}: {prompt}"

    async def stream() -> str:
        out = await r.acompletion(model="aco-router", messages=chat(prompt), stream=True)
        return "".join([ch.choices[0].delta.content or "" async for ch in out])

    assert asyncio.run(stream()) == f"echo from tier{tier}: {prompt}"
    assert upstream.last()["body"]["stream"] is True and upstream.last()["path"] == f"/tier{tier}/v1/chat/completions"
    kw = {"messages": chat(prompt), "metadata": {"model_group": "aco-router"}}
    dep = asyncio.run(strategy.async_get_available_deployment("aco-router", chat(prompt), request_kwargs=kw))
    assert dep["model_name"] == tier_models[tier - 1]
    rec = kw["metadata"][METADATA_KEY]  # every LiteLLM callback sees the decision here
    assert rec["tier"] == tier and rec["litellm_model"] == tier_models[tier - 1] and 0 <= rec["p_success"] <= 1


def test_litellm_callbacks_receive_the_decision(routed, tier_models, two_tier_prompts):
    from litellm.integrations.custom_logger import CustomLogger

    seen: list = []

    class Spy(CustomLogger):  # what a team's own logging callback (Langfuse, spend logs, ...) is handed
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(((kwargs.get("litellm_params") or {}).get("metadata") or {}).get(METADATA_KEY))

    r, _ = routed
    prompt, tier = two_tier_prompts[0]

    async def call_and_wait() -> None:
        await r.acompletion(model="aco-router", messages=chat(prompt))
        for _ in range(200):  # LiteLLM logs success events from a background worker
            if seen:
                return
            await asyncio.sleep(0.02)

    saved = list(litellm.callbacks)
    litellm.callbacks = [*saved, Spy()]
    try:
        asyncio.run(call_and_wait())
    finally:
        litellm.callbacks = saved
    assert seen and seen[0]["tier"] == tier and seen[0]["litellm_model"] == tier_models[tier - 1]


def test_other_models_pass_through_and_routing_context_applies(routed, upstream, tier_models, two_tier_prompts):
    r, _ = routed
    prompt, _tier = two_tier_prompts[0]
    asyncio.run(r.acompletion(model=tier_models[0], messages=chat(prompt)))  # a LiteLLM group, not the bundle's
    assert upstream.last()["path"] == "/tier1/v1/chat/completions"
    top = len(tier_models)
    asyncio.run(r.acompletion(model="aco-router", messages=chat(prompt), metadata={"aco": {"min_tier": top}}))
    assert upstream.last()["path"] == f"/tier{top}/v1/chat/completions"
    assert "aco" not in upstream.last()["body"] and "metadata" not in upstream.last()["body"]
    with pytest.raises(Exception, match="unknown keys"):
        asyncio.run(r.acompletion(model="aco-router", messages=chat(prompt), metadata={"aco": {"tier": 1}}))


def test_upstream_failure_surfaces_as_litellm_error(routed, upstream, two_tier_prompts):
    r, _ = routed
    upstream.mode = "error500"
    with pytest.raises(litellm.exceptions.InternalServerError) as e:
        asyncio.run(r.acompletion(model="aco-router", messages=chat(two_tier_prompts[0][0])))
    assert e.value.status_code == 500 and "fake upstream exploded" in str(e.value)


def test_model_map_renames_tiers_and_bad_maps_are_refused(upstream, tier_models, aco_router, two_tier_prompts):
    names = [f"team-tier-{i + 1}" for i in range(len(tier_models))]
    r = litellm.Router(model_list=model_list(upstream, tier_models, names), num_retries=0)
    with pytest.raises(ValueError, match="no LiteLLM deployment has model_name"):
        install(r, decider=BundleDecider(aco_router))  # default names = tier models: not in this model_list
    install(r, decider=BundleDecider(aco_router), model_map={m: n for m, n in zip(tier_models, names)})
    prompt, tier = two_tier_prompts[1]
    asyncio.run(r.acompletion(model="aco-router", messages=chat(prompt)))
    assert upstream.last()["path"] == f"/tier{tier}/v1/chat/completions"
    by_number = {str(i + 1): n for i, n in enumerate(names)}
    assert install(r, decider=BundleDecider(aco_router), model_map=by_number).model_map.names == names
    with pytest.raises(ValueError, match="neither a tier model"):
        install(r, decider=BundleDecider(aco_router), model_map={"gpt-4o": "x"})
    with pytest.raises(ValueError, match="exactly one of bundle"):
        install(r)


def test_http_decider_asks_an_aco_bert_server(upstream, tier_models, aco_router, two_tier_prompts):
    from aco_bert.serve import ServeConfig, create_app
    from live_server import LiveServer

    with LiveServer(create_app(aco_router, ServeConfig())) as s:
        r = litellm.Router(model_list=model_list(upstream, tier_models), num_retries=0)
        strategy = install(r, url=s.url + "/v1")
        assert isinstance(strategy.decider, HttpDecider) and strategy.decider.tier_models == tier_models
        for prompt, tier in two_tier_prompts:
            asyncio.run(r.acompletion(model="aco-router", messages=chat(prompt)))
            assert upstream.last()["path"] == f"/tier{tier}/v1/chat/completions"
        with pytest.raises(Exception, match="refused the request"):
            asyncio.run(r.acompletion(model="aco-router", messages=chat(two_tier_prompts[0][0]),
                                      metadata={"aco": {"budget": -1}}))  # the server's own check (422)


# --------------------------------------------------------------------------------------------------- proxy hook
def proxy_data(prompt: str, model: str = "aco-router", **extra) -> dict:
    """What the LiteLLM proxy hands ``async_pre_call_hook`` for POST /v1/chat/completions."""
    return {"model": model, "messages": chat(prompt), "temperature": 0.2, "user": "u-42",
            "metadata": {"user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
                         "user_api_key_alias": "platform-team", "headers": {"content-type": "application/json"},
                         "requester_ip_address": "10.0.0.7"},
            "proxy_server_request": {"url": "http://0.0.0.0:4000/v1/chat/completions", "method": "POST",
                                     "headers": {"content-type": "application/json"},
                                     "body": {"model": model, "messages": chat(prompt)}},
            **extra}


def test_proxy_hook_rewrites_the_virtual_model(aco_router, tier_models, two_tier_prompts):
    hook = AcoProxyHandler(decider=BundleDecider(aco_router))
    for prompt, tier in two_tier_prompts:
        data = proxy_data(prompt)
        out = asyncio.run(hook.async_pre_call_hook(None, None, data, "acompletion"))
        assert out["model"] == tier_models[tier - 1]
        assert out["messages"] == chat(prompt) and out["temperature"] == 0.2 and out["user"] == "u-42"
        assert out["metadata"]["user_api_key_alias"] == "platform-team"  # the proxy's own metadata is kept
        rec = out["metadata"][METADATA_KEY]
        assert rec["tier"] == tier and rec["model"] == tier_models[tier - 1]
        headers = asyncio.run(hook.async_post_call_response_headers_hook(out, None, None))
        assert headers["x-aco-tier"] == str(tier) and headers["x-aco-model"] == tier_models[tier - 1]
        assert float(headers["x-aco-p-success"]) == pytest.approx(aco_router.route(prompt).p_success, abs=1e-5)
    top = len(tier_models)
    out = asyncio.run(hook.async_pre_call_hook(None, None, proxy_data(two_tier_prompts[0][0], aco={"min_tier": top}),
                                               "acompletion"))
    assert out["model"] == tier_models[top - 1] and "aco" not in out  # never forwarded to the provider
    other = proxy_data(two_tier_prompts[0][0], model="gpt-4o")
    assert asyncio.run(hook.async_pre_call_hook(None, None, other, "acompletion"))["model"] == "gpt-4o"
    assert asyncio.run(hook.async_post_call_response_headers_hook(other, None, None)) is None


def test_proxy_hook_refuses_bad_input_and_missing_configuration(aco_router, monkeypatch, bundle, tier_models):
    hook = AcoProxyHandler(decider=BundleDecider(aco_router))
    with pytest.raises(HTTPException) as e:
        asyncio.run(hook.async_pre_call_hook(None, None, proxy_data("\u200b  "), "acompletion"))
    assert e.value.status_code == 400 and "no text" in str(e.value.detail)
    with pytest.raises(HTTPException) as e:
        asyncio.run(hook.async_pre_call_hook(None, None, proxy_data("x", aco={"budget": 1, "bogus": 2}), "acompletion"))
    assert e.value.status_code == 400 and "bogus" in str(e.value.detail)
    for k in ("ACO_BERT_BUNDLE", "ACO_BERT_ROUTE_URL"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(HTTPException) as e:
        asyncio.run(AcoProxyHandler().async_pre_call_hook(None, None, proxy_data("fix it"), "acompletion"))
    assert e.value.status_code == 500 and "ACO_BERT_BUNDLE" in str(e.value.detail)
    monkeypatch.setenv("ACO_BERT_BUNDLE", bundle)  # how proxy_handler_instance is configured
    monkeypatch.setenv("ACO_BERT_LITELLM_MODEL_MAP", '{"1": "cheap"}')
    hook = AcoProxyHandler(virtual_models=["aco-router", "smart"])
    out = asyncio.run(hook.async_pre_call_hook(None, None, proxy_data("fix it", model="smart",
                                                                       aco={"min_tier": 1}), "acompletion"))
    want = aco_router.route("fix it", min_tier=1).tier
    assert out["model"] == ("cheap" if want == 1 else tier_models[want - 1])
    assert hook.model_map.names == ["cheap", *tier_models[1:]]


def test_deploy_config_callback_resolves_through_litellm(aco_router, monkeypatch):
    import yaml
    from litellm.proxy.types_utils.utils import get_instance_fn

    cfg = yaml.safe_load((REPO / "deploy" / "litellm" / "config.yaml").read_text())
    callbacks = cfg["litellm_settings"]["callbacks"]
    callbacks = [callbacks] if isinstance(callbacks, str) else callbacks
    assert "aco_bert.integrations.litellm.proxy_handler_instance" in callbacks
    assert get_instance_fn("aco_bert.integrations.litellm.proxy_handler_instance") is proxy_handler_instance
    names = {m["model_name"] for m in cfg["model_list"]}
    assert "aco-bert" in names  # the other way round: LiteLLM -> the aco_bert proxy as an openai/ deployment
    via = next(m for m in cfg["model_list"] if m["model_name"] == "aco-bert")["litellm_params"]
    assert via["model"] == "openai/aco-router" and via["api_base"].endswith("/v1")
    for env in ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "ACO_BERT_CLIENT_KEY"):
        monkeypatch.setenv(env, "sk-not-used")
    # its model_list has a model group for every tier of the shipped 5-tier spec (the tiny bundle's spec)
    AcoRoutingStrategy(litellm.Router(model_list=cfg["model_list"]), BundleDecider(aco_router))


def test_import_is_lazy_and_a_missing_extra_says_what_to_install():
    code = ("import sys, aco_bert, aco_bert.integrations\n"
            "assert 'litellm' not in sys.modules, 'importing the package imported litellm'\n"
            "sys.modules['litellm'] = None\n"
            "try:\n    import aco_bert.integrations.litellm\n"
            "except ImportError as e:\n    print(e)\nelse:\n    raise SystemExit('imported without litellm')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "pip install 'aco-bert[litellm]'" in out.stdout
