"""/metrics on prometheus_client: one scrape sums every ``--workers N`` worker; the Grafana dashboard only queries
metrics the server exports; single-process counters (decisions, cost vs frontier, load shed) count what happened."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aco_bert.serve.app import create_app, frontier_tier
from aco_bert.serve.config import ServeConfig
from aco_bert.serve.engine import Overloaded
from aco_bert.serve.metrics import MULTIPROC_ENV, ServeMetrics
from aco_bert.serve.server import multiprocess_metrics_dir

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "aco_bert_dashboard.json"
PROMPTS = ["Fix the off-by-one error in the pagination helper.",
           "Refactor the session cache so concurrent writers cannot lose updates.", "hi"]
# PromQL words a dashboard expression may use besides metric names
PROMQL = {"sum", "by", "without", "rate", "increase", "irate", "histogram_quantile", "avg", "max", "min", "count",
          "topk", "clamp_min", "le", "or", "and", "unless", "on", "ignoring", "bool", "offset"}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)], parsed by prometheus_client's own parser."""
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(text: str, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples(text).get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def exported_names(text: str) -> set[str]:
    """Every series name a scrape of ``text`` can hold (families without samples yet included, by their type)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for fam in text_string_to_metric_families(text):
        names.update(fam.name + s for s in suffixes.get(fam.type, ("",)))
        names.update(s.name for s in fam.samples)
    return names


def expr_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, strings, grouping and ranges."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e) if w not in PROMQL}


@pytest.fixture(scope="module")
def router(bundle):
    from aco_bert.runtime import Router

    return Router.load(bundle)


# --------------------------------------------------------------------------------------------------- dashboard
def test_dashboard_is_grafana_json_over_exported_metrics(router):
    dash = json.loads(DASHBOARD.read_text())
    for key in ("title", "panels", "schemaVersion", "templating", "__inputs"):
        assert key in dash, key
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"] and dash["__inputs"][0]["type"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 6
    with TestClient(create_app(router, ServeConfig())) as c:
        c.post("/v1/route", json={"prompt": PROMPTS[0]})
        names = exported_names(c.get("/metrics").text)
    used: set[str] = set()
    for p in dash["panels"]:
        assert p["type"] and set(p["gridPos"]) >= {"h", "w", "x", "y"}, p["title"]
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            found = expr_metrics(t["expr"])
            assert found and found <= names, (p["title"], found - names)
            used |= found
    for q in dash["templating"]["list"]:
        used |= expr_metrics(q["definition"].removeprefix("label_values(").split(",")[0])
    assert used <= names
    # the panels the brief asks for are all there
    for m in ("aco_route_decisions_total", "aco_route_frontier_cost_usd_total", "aco_escalations_total",
              "aco_request_latency_seconds_bucket", "aco_requests_total", "aco_requests_in_flight", "aco_shed_total"):
        assert m in used, m
    assert expr_metrics('sum by (tier) (rate(aco_nope_total{x="aco_a"}[5m]))') == {"aco_nope_total"}  # the check bites


# --------------------------------------------------------------------------------------------------- single process
def test_single_process_counters_cost_vs_frontier_and_shed(router):
    app = create_app(router, ServeConfig())
    n, f = router.spec.n_tiers, frontier_tier(router.spec)
    assert 1 <= f <= n
    with TestClient(app) as c, TestClient(create_app(router, ServeConfig())) as other:
        before = c.get("/metrics").text
        got = [c.post("/v1/route", json={"prompt": p}).json() for p in PROMPTS * 2]
        after = c.get("/metrics").text
        info = c.get("/v1/router").json()["metrics"]
        assert total(other.get("/metrics").text, "aco_route_decisions_total") == 0  # one registry per app
    d = {k: total(after, k) - total(before, k) for k in ("aco_route_decisions_total", "aco_route_expected_cost_usd_total",
                                                         "aco_route_frontier_cost_usd_total")}
    assert d["aco_route_decisions_total"] == len(got) == 6
    for t in {g["tier"] for g in got}:
        assert total(after, "aco_route_decisions_total", tier=str(t)) == sum(g["tier"] == t for g in got)
    chosen = sum(g["expected_cost"] for g in got)
    frontier = sum(g["tiers"][f - 1]["expected_cost"] for g in got)
    assert d["aco_route_expected_cost_usd_total"] == pytest.approx(chosen, rel=1e-9) and chosen > 0
    assert d["aco_route_frontier_cost_usd_total"] == pytest.approx(frontier, rel=1e-9)
    assert info["saved_vs_frontier_usd"] == pytest.approx(frontier - chosen, rel=1e-9, abs=1e-12)
    assert info["decisions_per_tier"] == {str(t): float(sum(g["tier"] == t for g in got)) for t in {g["tier"] for g in got}}
    assert total(after, "aco_requests_total", endpoint="/v1/route", status="200") == 6
    assert total(after, "aco_ready") == 1 and 'le="+Inf"' in after
    # load shedding is counted by reason
    eng = app.state.aco.engine
    with pytest.raises(Overloaded):
        eng.check_wait(0.0, 0.0, eng.max_queue)
    m: ServeMetrics = app.state.aco.metrics
    assert total(m.render().decode(), "aco_shed_total", reason="queue_full") == 1


def test_multiprocess_dir_is_fresh_private_and_removed():
    old = os.environ.get(MULTIPROC_ENV)
    with multiprocess_metrics_dir() as d:
        assert os.environ[MULTIPROC_ENV] == d and os.path.isdir(d) and not os.listdir(d) and d != old
    assert not os.path.exists(d) and os.environ.get(MULTIPROC_ENV) == old


# --------------------------------------------------------------------------------------------------- 2 workers
def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, timeout=30, trust_env=False, headers={"connection": "close"})


def _ready_pids(url: str) -> dict[int, float]:
    return {int(lab["pid"]): v for lab, v in samples(_get(url, "/metrics").text).get("aco_ready", [])}


def _stopped(pid: int):
    """SIGSTOP ``pid`` (it accepts no connection) for the body of a with-block; well under uvicorn's 5 s ping."""
    class Stop:
        def __enter__(self):
            os.kill(pid, signal.SIGSTOP)
            deadline = time.time() + 5
            while _state(pid) != "T" and time.time() < deadline:
                time.sleep(0.01)
            assert _state(pid) == "T"

        def __exit__(self, *exc):
            os.kill(pid, signal.SIGCONT)
    return Stop()


def test_metrics_sum_over_two_workers(bundle, monkeypatch):
    """The real server with --workers 2: each half of the requests is served by one worker (the other is
    SIGSTOPped, so it cannot accept); every scrape, answered by either worker, counts all of them; a killed worker's
    counters stay while its live gauges leave; the private metrics dir is gone after shutdown."""
    sys.path.insert(0, str(REPO / "scripts"))
    from load_test import start_server

    monkeypatch.setenv("ACO_BERT_ORT_THREADS", "1")
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    proc, url = start_server(bundle, 2, [])
    try:
        deadline = time.time() + 60
        while len(pids := _ready_pids(url)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(pids) == 2 and set(pids.values()) == {1.0}, pids
        a, b = sorted(pids)
        with open(f"/proc/{a}/environ", "rb") as fh:
            env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        mdir = env[MULTIPROC_ENV.encode()].decode()
        assert os.path.isdir(mdir)
        sent = {a: 5, b: 8}
        for serving, stop in ((a, b), (b, a)):
            with _stopped(stop):
                for i in range(sent[serving]):
                    r = httpx.post(url + "/v1/route", json={"prompt": PROMPTS[i % 3]}, timeout=30, trust_env=False,
                                   headers={"connection": "close"})
                    assert r.status_code == 200, r.text
                assert _get(url, "/v1/router").json()["service"]["pid"] == serving
                # the worker that served nothing else sees the other's count (and its own) in one scrape
                assert total(_get(url, "/metrics").text, "aco_route_decisions_total") == \
                    (sent[a] if serving == a else sent[a] + sent[b])
        n = sum(sent.values())
        for answering, stop in ((a, b), (b, a), (None, None), (None, None)):
            if stop is None:
                text = _get(url, "/metrics").text
            else:
                with _stopped(stop):
                    text = _get(url, "/metrics").text
            assert total(text, "aco_route_decisions_total") == n
            assert total(text, "aco_requests_total", endpoint="/v1/route", status="200") == n
            assert total(text, "aco_request_latency_seconds_count", endpoint="/v1/route") == n
            assert total(text, "aco_requests_in_flight") >= 1  # the scrape itself (summed over live workers)
        info = _get(url, "/v1/router").json()["metrics"]
        assert sum(info["decisions_per_tier"].values()) == n
        os.kill(a, signal.SIGKILL)  # the supervisor replaces it and marks it dead
        deadline = time.time() + 60
        while time.time() < deadline and (a in (pids := _ready_pids(url)) or len(pids) < 2):
            time.sleep(0.2)
        assert a not in pids and b in pids and len(pids) == 2, pids
        assert total(_get(url, "/metrics").text, "aco_route_decisions_total") == n  # a dead worker's counts stay
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()  # the workers die with it (die_with_parent)
            raise
    assert proc.returncode == 0 and not os.path.exists(mdir)
