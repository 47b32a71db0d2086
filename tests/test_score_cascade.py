"""``python -m aco_bert.score --cascade true``: the response-aware cascade replayed offline on recorded answers, with
the real tiny stacked bundle (SWE-bench tier models) on real SWE-bench issue texts and synthetic per-tier answers.

Accept / escalate is forced through the loaded bundle's cascade rule (``router.layer.cascade``: ``accept`` 0 keeps
the first answer, 1.01 keeps none below the top tier, ``max_runs`` caps the runs), never through the tiny model's
quality. What must hold: the tiers run follow the verdicts, the kept tier is the last one run, a missing answer of a
tier the cascade wants marks the row (never a silent accept), rows are preserved, resume works, and the --evaluate
report bills every tier that ran.
"""

from __future__ import annotations

import filecmp
import json
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from aco_bert.score import ScoreConfig, ScoreError, main, score_dataset
from aco_bert.runtime.walk import CascadeWalk
from aco_bert.score.cascade import resolve_responses
from aco_bert.score.sources import InputError

N = 20


@pytest.fixture(scope="module")
def router(bundle):
    from aco_bert.runtime import Router

    return Router.load(bundle)  # this module's own instance: its cascade rule is changed per test


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [" ".join(r["problem_statement"].split()[:60]) for r in rows[:N]]


@pytest.fixture(scope="module")
def first_tiers(router, texts) -> list[int]:
    return [d.tier for d in router.route_batch(texts)]


@contextmanager
def rule(router, accept: float, max_runs: int | None = None):
    """Set the loaded bundle's cascade rule for one test (restored after)."""
    c = router.layer.cascade
    old = (c.accept, c.max_runs, c.accept_first)
    c.accept, c.max_runs, c.accept_first = accept, (max_runs or router.spec.n_tiers), None
    try:
        yield c
    finally:
        c.accept, c.max_runs, c.accept_first = old


def answer(t: int, i: int) -> str:
    return f"tier {t} patch for issue {i}: guard the empty case and add a regression test"


def wide_rows(router, texts, template="{model}|response", drop=()) -> list[dict]:
    """One row per text with each tier's answer in ``template``'s column; ``drop``: (row, tier) left empty."""
    rows = []
    for i, t in enumerate(texts):
        r = {"id": f"t{i}", "prompt": t}
        for k, m in enumerate(router.spec.models, 1):
            r[template.format(model=m, tier=k)] = None if (i, k) in drop else answer(k, i)
        rows.append(r)
    return rows


def cfg(bundle, inp, out, **kw) -> ScoreConfig:
    return ScoreConfig(bundle=bundle, input=str(inp), output=str(out), chunk_size=8, progress=False,
                       cascade=True, **kw)


def run(router, c: ScoreConfig, **kw):
    return score_dataset(c, router=router, log=lambda _m: None, **kw)


def spy_on(router, monkeypatch) -> list[tuple]:
    seen, real = [], router.escalate

    def spy(prompt, tier_run, *a, **kw):
        seen.append((prompt, tier_run, kw.get("response"), kw.get("responses")))
        return real(prompt, tier_run, *a, **kw)

    monkeypatch.setattr(router, "escalate", spy)
    return seen


def test_accept_keeps_the_first_tier(bundle, router, texts, first_tiers, tmp_path):
    rows = wide_rows(router, texts, drop={(i, 5) for i in range(N)})  # never wanted: accept keeps the first run
    rows[3]["prompt"] = ""  # the router refuses it: marked, no cascade
    inp = tmp_path / "in.csv"
    pd.DataFrame(rows).to_csv(inp, index=False)
    with rule(router, accept=0.0):
        s = run(router, cfg(bundle, inp, tmp_path / "out.parquet"))
        want = {i: router.escalate(texts[i], first_tiers[i], response=answer(first_tiers[i], i))
                for i in range(N) if i != 3}
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == N and s.n_rows == N and s.n_errors == 1 and s.n_cascade_errors == 0
    assert out.loc[3, "error"] and out.loc[3, ["cascade_tier", "cascade_tiers", "cascade_error"]].isna().all()
    ok = out.drop(index=3)
    assert (ok["cascade_tier"] == ok["tier"]).all() and (ok["cascade_runs"] == 1).all()
    assert [list(x) for x in ok["cascade_tiers"]] == [[t] for t in ok["tier"]]
    assert (ok["cascade_model"] == ok["model"]).all() and ok["cascade_error"].isna().all()
    assert ok["cascade_p_correct"].tolist() == pytest.approx([want[i].p_success for i in ok.index], abs=1e-6)


def test_escalates_to_the_top_and_a_missing_answer_marks_the_row(bundle, router, texts, first_tiers, tmp_path,
                                                                  monkeypatch):
    top = router.spec.n_tiers
    low = [i for i, t in enumerate(first_tiers) if t < top]
    assert len(low) >= 3, first_tiers  # else this test would not see an escalation
    gap = low[1]  # its second run's answer is missing
    with rule(router, accept=1.01):
        nxt = router.escalate(texts[gap], first_tiers[gap], response=answer(first_tiers[gap], gap)).next_tier
        inp = tmp_path / "in.jsonl"
        pd.DataFrame(wide_rows(router, texts, drop={(gap, nxt)})).to_json(inp, orient="records", lines=True)
        seen = spy_on(router, monkeypatch)
        s = run(router, cfg(bundle, inp, tmp_path / "out.jsonl"))
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert len(out) == N and out["error"].isna().all()
    assert s.n_cascade_errors == 1 and s.cascade_errors[0][0] == gap and "cascade row" in s.text()
    m = router.spec.models[nxt - 1]
    assert out.loc[gap, "cascade_error"] == f"no response for tier {nxt} ({m})"
    assert out.loc[gap, "cascade_tiers"] == [first_tiers[gap]] and pd.isna(out.loc[gap, "cascade_tier"])
    for i in range(N):
        if i == gap:
            continue
        tiers = out.loc[i, "cascade_tiers"]
        assert tiers[0] == out.loc[i, "tier"] == first_tiers[i] and tiers == sorted(set(tiers)) and tiers[-1] == top
        assert out.loc[i, "cascade_tier"] == top and out.loc[i, "cascade_runs"] == len(tiers)
        assert out.loc[i, "cascade_model"] == router.spec.models[top - 1]
        calls = [c for c in seen if c[0] == texts[i]]  # what the replay asked the verifier, run by run
        assert [c[1] for c in calls] == tiers and [c[2] for c in calls] == [answer(t, i) for t in tiers]
        assert [c[3] for c in calls] == [({t: answer(t, i) for t in tiers[:k]} or None) for k in range(len(tiers))]
    with rule(router, accept=1.01), pytest.raises(ScoreError, match="cascade: no response") as ei:
        run(router, cfg(bundle, inp, tmp_path / "stop.jsonl", on_error="stop"))
    assert ei.value.row == gap


def test_max_runs_caps_the_cascade(bundle, router, texts, first_tiers, tmp_path):
    inp = tmp_path / "in.parquet"
    pd.DataFrame(wide_rows(router, texts, template="response_{tier}")).to_parquet(inp)
    with rule(router, accept=1.01, max_runs=1):  # nothing is good enough, but only one run is allowed
        run(router, cfg(bundle, inp, tmp_path / "out.parquet", response_columns="response_{tier}"))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert [list(x) for x in out["cascade_tiers"]] == [[t] for t in first_tiers]
    assert out["cascade_tier"].tolist() == first_tiers and out["cascade_error"].isna().all()


def test_cli_runs_the_bundles_own_rule(bundle, router, texts, tmp_path):
    """``--cascade true --response-columns ...`` on the command line (one worker process) = the API in this process
    with a freshly loaded bundle."""
    from aco_bert.runtime import Router

    inp = tmp_path / "in.csv"
    pd.DataFrame(wide_rows(router, texts, template="ans {tier}")).to_csv(inp, index=False)
    cli, api = tmp_path / "cli.jsonl", tmp_path / "api.jsonl"
    assert main(["--bundle", bundle, "--input", str(inp), "--output", str(cli), "--cascade", "true",
                 "--response-columns", "ans {tier}", "--no-progress", "--chunk-size", "8", "--workers", "1"]) == 0
    run(Router.load(bundle), cfg(bundle, inp, api, response_columns="ans {tier}"))
    assert filecmp.cmp(cli, api, shallow=False)
    out = pd.read_json(cli, lines=True)
    assert len(out) == N and out["cascade_tier"].notna().all() and out["cascade_error"].isna().all()


def test_long_column_and_routerbench_list_cells(bundle, router, texts, tmp_path, monkeypatch):
    models = router.spec.models
    rows = [{"prompt": t, "responses": json.dumps({models[0]: answer(1, i), **{str(k): answer(k, i)
                                                                              for k in range(2, 6)}})}
            for i, t in enumerate(texts)]
    rows[2]["responses"] = "{not json"
    rows[4]["responses"] = json.dumps({"no such model": "x"})
    inp = tmp_path / "long.jsonl"
    pd.DataFrame(rows).to_json(inp, orient="records", lines=True)
    with rule(router, accept=0.0):
        run(router, cfg(bundle, inp, tmp_path / "long.parquet"))  # default: finds the `responses` column
    out = pd.read_parquet(tmp_path / "long.parquet")
    assert "not valid JSON" in out.loc[2, "cascade_error"] and "neither a tier model" in out.loc[4, "cascade_error"]
    assert out.drop(index=[2, 4])["cascade_error"].isna().all() and len(out) == N

    # RouterBench's wide cells: a stringified Python list of strings, joined by newlines for the verifier
    wide = pd.DataFrame([{"prompt": t, **{f"{m}|model_response": str([f"part a {i}", f"part b {k}"])
                                          for k, m in enumerate(models, 1)}} for i, t in enumerate(texts)])
    wide.to_csv(tmp_path / "rb.csv", index=False)
    seen = spy_on(router, monkeypatch)
    with rule(router, accept=0.0):
        run(router, cfg(bundle, tmp_path / "rb.csv", tmp_path / "rb.parquet"))
    assert len(seen) == N and all(c[2] == f"part a {texts.index(c[0])}\npart b {c[1]}" for c in seen)


def test_resume_with_cascade_is_byte_identical(bundle, router, texts, tmp_path):
    inp = tmp_path / "in.parquet"
    pd.DataFrame(wide_rows(router, texts)).to_parquet(inp)
    full, part = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"

    class Stop(Exception):
        pass

    def boom(res):
        if res.index == 1:
            raise Stop

    with rule(router, accept=1.01):
        run(router, cfg(bundle, inp, full))
        with pytest.raises(Stop):
            run(router, cfg(bundle, inp, part), on_chunk=boom)
        s = run(router, cfg(bundle, inp, part))
    assert s.chunks_resumed == 2 and s.n_chunks == 3 and filecmp.cmp(full, part, shallow=False)
    with rule(router, accept=0.0), pytest.raises(Stop):  # parts scored under another rule ...
        run(router, cfg(bundle, inp, part), on_chunk=boom)
    logs: list[str] = []
    with rule(router, accept=1.01):  # ... are not reused
        s = score_dataset(cfg(bundle, inp, part), router=router, log=logs.append)
    assert s.chunks_resumed == 0 and any("different cascade" in m for m in logs), logs
    assert filecmp.cmp(full, part, shallow=False)


def test_evaluate_bills_every_tier_that_ran(bundle, router, swebench, tmp_path):
    models = router.spec.models
    df = swebench.df
    pids = df["prompt_id"].drop_duplicates().tolist()[:N]
    df = df[df["prompt_id"].isin(pids) & df["model"].isin(models)].reset_index(drop=True)
    df["prompt"] = df["prompt"].str.split().str[:60].str.join(" ")
    df["response"] = [f"{m} says: patch {p}" for m, p in zip(df["model"], df["prompt_id"])]
    df.loc[(df["prompt_id"] == pids[0]) & (df["model"] == models[-1]), "response"] = None  # tier 5 never answered
    inp, out = tmp_path / "outcomes.parquet", tmp_path / "scored.parquet"
    df.to_parquet(inp)
    with rule(router, accept=1.01):  # the CLI (a fresh router, the bundle's own rule) is run in the next test
        s = run(router, ScoreConfig(bundle=bundle, input=str(inp), output=str(out), evaluate=True, cascade=True,
                                    progress=False))
    assert "+ cascade" in s.evaluation.markdown()
    scored = pd.read_parquet(out).set_index("prompt_id")
    assert len(scored) == N and scored["error"].isna().all()
    assert scored.loc[pids[0], "cascade_error"].startswith(f"no response for tier {len(models)}")
    rep = json.loads((tmp_path / "scored.eval.json").read_text())
    row = next(p for p in rep["policies"] if p["name"].endswith("+ cascade"))
    ex_ante = next(p for p in rep["policies"] if p["name"].startswith("router (") and "cascade" not in p["name"])
    assert ex_ante["n"] == N and row["n"] == N - 1
    cost = df.pivot(index="prompt_id", columns="model", values="cost_usd")
    succ = df.pivot(index="prompt_id", columns="model", values="success")
    ok = scored[scored["cascade_error"].isna()]
    billed = [sum(cost.loc[p, models[t - 1]] for t in ok.loc[p, "cascade_tiers"]) for p in ok.index]
    assert row["cost_per_task"] == pytest.approx(np.mean(billed))
    assert row["success"] == pytest.approx(np.mean([succ.loc[p, models[int(ok.loc[p, "cascade_tier"]) - 1]]
                                                    for p in ok.index]))
    assert (ok["cascade_runs"] > 1).any() and (ok["cascade_tier"] == len(models)).all()  # every answer climbed
    assert row["chosen"]["mean_runs"] == pytest.approx(ok["cascade_runs"].mean())
    assert any("stopped short" in n for n in rep["notes"])


def test_bad_settings_are_clear_errors(bundle, router, texts, tmp_path, capsys):
    with pytest.raises(ValueError, match="only read with cascade"):
        ScoreConfig(bundle=bundle, input="i.csv", output="o.parquet", response_columns="{model}|response")
    with pytest.raises(ValueError, match="placeholders"):
        ScoreConfig(bundle=bundle, input="i.csv", output="o.parquet", cascade=True, response_columns="{name}|r")
    with pytest.raises(ValueError, match="one column for every tier"):
        ScoreConfig(bundle=bundle, input="i.csv", output="o.parquet", cascade=True, response_columns="{{x}}")
    inp = tmp_path / "plain.csv"
    pd.DataFrame({"prompt": texts}).to_csv(inp, index=False)
    assert main(["--bundle", bundle, "--input", str(inp), "--output", str(tmp_path / "o.parquet"), "--cascade",
                 "true", "--no-progress"]) == 2
    assert "--cascade needs each tier's response" in capsys.readouterr().err
    with pytest.raises(InputError, match="matches no column"):
        resolve_responses("answer_{tier}", router.spec.models, ["prompt", "response_1"], "x.csv")
    assert resolve_responses(None, ["a", "b"], ["prompt", "b|model_response"], "x") == \
        (["a|model_response", "b|model_response"], None)


def test_walk_stops_at_accept_cap_and_no_higher_tier():
    from aco_bert.types import Escalation

    def esc(accept, nxt):
        return Escalation(accept, 0.3, 1, nxt, None)

    w = CascadeWalk(1, max_runs=3)
    assert w.responses() is None and w.judged("a", esc(False, 3)) == 3 and w.responses() == {1: "a"}
    assert w.judged("b", esc(False, 2)) is None and w.tiers == [1, 3]  # a verdict that would go down stops
    w = CascadeWalk(2, max_runs=2)
    assert w.judged("a", esc(False, 4)) == 4 and w.judged("b", esc(False, 5)) is None and w.tier == 4
    assert CascadeWalk(1, 5).judged("a", esc(True, None)) is None


def test_evaluate_without_answers_replays_a_trace_only_cascade(bundle, router, swebench, tmp_path):
    """SWE-bench carries no answers: the tiny bundle's verifier reads traces only, so --cascade --evaluate replays
    the cascade on each run's recorded api_calls and cost (what the demo's held-out table shows)."""
    models = router.spec.models
    df = swebench.df
    pids = df["prompt_id"].drop_duplicates().tolist()[:N]
    df = df[df["prompt_id"].isin(pids) & df["model"].isin(models)].reset_index(drop=True).drop(columns=["response"])
    df["prompt"] = df["prompt"].str.split().str[:60].str.join(" ")
    inp, out = tmp_path / "outcomes.parquet", tmp_path / "scored.parquet"
    df.to_parquet(inp)
    assert not router.layer.verifier.responses
    with rule(router, accept=1.01):
        s = run(router, ScoreConfig(bundle=bundle, input=str(inp), output=str(out), evaluate=True, cascade=True,
                                    progress=False))
    scored = pd.read_parquet(out)
    assert s.n_cascade_errors == 0 and scored["cascade_error"].isna().all()
    assert (scored["cascade_runs"] >= 1).all() and (scored["cascade_runs"] > 1).any()  # accept 1.01 escalates
    assert "+ cascade" in s.evaluation.markdown()
