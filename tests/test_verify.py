"""The response verifier on real RouterBench responses: extractors, features, agreement, cascade replay, LTT."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.data import load_outcomes
from aco_bert.data.splits import kfold
from aco_bert.decision.cascade_search import (CachedScorer, CascadeKnob, candidate_chains, knob_grid, ltt_select,
                                              replay_knobs)
from aco_bert.decision.verifier import CrossFitScorer, Verifier, VerifierConfig, trace_arrays
from aco_bert.evaluation.metrics.core import per_tier_auc
from aco_bert.policies import Cascade, Chain, FixedTier, RoutingContext
from aco_bert.verify.extractors import get_extractor
from aco_bert.verify.features import N_HISTORY, N_OWN, ResponseReader, own_features

GPT4 = "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def rb(data_dir):
    from aco_bert.spec import RouterSpec

    m = load_outcomes("routerbench", data_dir).matrix(RouterSpec.load("routerbench").models)  # cheapest first
    rng = np.random.default_rng(0)
    return m.subset(np.sort(rng.choice(m.n_prompts, 900, replace=False)))


def _cat(m, name):
    return np.flatnonzero(m.meta["category"].astype(str).str.startswith(name).to_numpy())


def test_extractors_read_real_answers(rb):
    auto = get_extractor("auto")
    g = rb.models.index(GPT4)
    arc = [auto.extract(r) for r in rb.responses[_cat(rb, "arc"), g]]
    assert np.mean([a is not None and a.kind == "choice" for a in arc]) > 0.95
    mbpp = [auto.extract(r) for r in rb.responses[_cat(rb, "mbpp"), g]]
    assert np.mean([a is not None and a.kind == "code" for a in mbpp]) > 0.9
    assert np.mean([a.valid for a in mbpp if a is not None and a.kind == "code"]) > 0.7
    # the extracted letter of a right answer is the key: GPT-4's right answers share one letter with a right peer
    assert auto.extract("The answer is (C).").value == "C" and auto.extract("I am not sure").kind == "text"
    assert get_extractor("number").extract("so the total is #### 1,000").value == "1000"
    with pytest.raises(ValueError, match="unknown answer extractor"):
        get_extractor("nope")


def test_agreement_predicts_success(rb):
    """Two models agreeing on a multiple-choice answer are right far more often than when they disagree."""
    reader = ResponseReader()
    pr = reader.parse(rb.responses)
    rows = _cat(rb, "arc")
    a, b = rb.models.index("mistralai/mixtral-8x7b-chat"), rb.models.index("gpt-3.5-turbo-1106")
    agree = np.array([pr.answers[i, a] is not None and pr.answers[i, b] is not None
                      and pr.answers[i, a].value == pr.answers[i, b].value for i in rows])
    y = rb.success[rows, b]
    assert agree.sum() > 50 and (~agree).sum() > 20
    assert y[agree].mean() > y[~agree].mean() + 0.2
    h = reader.history(pr.answers[rows[0], b], [(pr.answers[rows[0], a], 0.8)])
    assert h.shape == (N_HISTORY,) and h[0] == 1
    assert np.isnan(reader.history(None, [])[1:]).all()


def test_response_verifier_beats_trace_only_and_agreement_helps(rb):
    y = rb.success
    traces = trace_arrays(rb)
    tr, te = np.arange(600), np.arange(600, rb.n_prompts)
    cfg = VerifierConfig(n_rounds=80, use_prompt_features=False)
    sub = lambda d, i: {k: v[i] for k, v in d.items()}  # noqa: E731
    reader = ResponseReader()
    parsed = reader.parse(rb.responses)
    v = Verifier.fit(y[tr], sub(traces, tr), None, None, cfg, responses=parsed.subset(tr))
    assert v.responses and v.n_features == len(rb.models) + 4 + 1 + N_OWN + N_HISTORY
    trace_only = Verifier.fit(y[tr], sub(traces, tr), None, None, VerifierConfig(n_rounds=80, use_prompt_features=False,
                                                                                 use_responses=False))
    pte = parsed.subset(te)
    q_first = v.predict_all(sub(traces, te), None, None, pte)
    q_trace = trace_only.predict_all(sub(traces, te))
    auc_first, auc_trace = np.nanmean(per_tier_auc(y[te], q_first)), np.nanmean(per_tier_auc(y[te], q_trace))
    assert auc_first > auc_trace, (auc_first, auc_trace)
    n_t = len(rb.models)
    ii, tt = np.meshgrid(np.arange(len(te)), np.arange(n_t), indexing="ij")
    others = [[s for s in range(n_t) if s != t] for t in tt.ravel()]
    q_all = v.score_history(ii.ravel(), tt.ravel(), others, sub(traces, te), None, None, pte).reshape(len(te), n_t)
    assert np.nanmean(per_tier_auc(y[te], q_all)) > auc_first + 0.08
    # a verifier trained with responses refuses to score without them; save/load keeps the response switch
    with pytest.raises(ValueError, match="parsed responses"):
        v.score_history(ii.ravel()[:3], tt.ravel()[:3], [[]] * 3, sub(traces, te))


def test_runtime_blocks_match_training_features(rb, tmp_path):
    """The runtime's one-run blocks (DecisionLayer.response_blocks) score exactly as the offline scorer does."""
    from aco_bert.runtime.layer import DecisionLayer
    from aco_bert.types import RunOutput

    traces = trace_arrays(rb)
    parsed = ResponseReader().parse(rb.responses)
    v = Verifier.fit(rb.success[:500], {k: a[:500] for k, a in traces.items()}, None, None,
                     VerifierConfig(n_rounds=30, use_prompt_features=False), responses=parsed.subset(np.arange(500)))
    v = Verifier.load(v.save(tmp_path / "verifier"))
    i, t, earlier = 600, 5, [0, 3]
    offline = v.score_history(np.array([i]), np.array([t]), [earlier], traces, None, None, parsed)[0]
    run = RunOutput(rb.responses[i, t], {s: rb.responses[i, s] for s in earlier})
    own, hist = DecisionLayer.response_blocks(v, t, run)
    online = v.predict_runs(np.array([t]), {k: np.array([traces[k][i, t]]) for k in traces}, None, None, own, hist)[0]
    assert online == pytest.approx(offline, abs=1e-6)
    assert own_features(None, None).shape == (N_OWN,) and np.isnan(own_features(None, None)).all()


def test_cascade_replay_with_history_scorer(rb):
    y, cost = rb.success, rb.cost
    n_t = len(rb.models)
    ctx = RoutingContext(np.full(y.shape, 0.5), np.tile(np.nanmean(cost, axis=0), (rb.n_prompts, 1)))
    q = np.random.default_rng(1).random(y.shape)
    chain = Chain((0, 4, n_t - 1))
    a = Cascade(chain, chain, 0.6, max_runs=3).replay(ctx, y, cost, q)
    b = Cascade(chain, chain, 0.6, max_runs=3).replay(ctx, y, cost, CachedScorer(lambda r, t, e: q[r, t]))
    assert np.array_equal(a.final, b.final) and np.allclose(a.cost, b.cost, equal_nan=True)
    assert {tuple(r) for r in a.runs} <= {(0,), (0, 4), (0, 4, n_t - 1)}
    # every run is billed: the cost of an escalated prompt is the sum over its runs
    i = next(k for k, r in enumerate(a.runs) if len(r) == 3)
    assert a.cost[i] == pytest.approx(cost[i, [0, 4, n_t - 1]].sum())
    # the chain respects floors: a prompt whose floor is above the bottom starts at the next ladder tier
    floor = RoutingContext(ctx.probs, ctx.exp_cost, np.full(rb.n_prompts, 2))
    assert (chain.decide(floor) == 4).all() and (FixedTier(1).decide(floor) == 2).all()


def test_knob_search_and_ltt_on_training_replays(rb):
    y, cost = rb.success, rb.cost
    traces = trace_arrays(rb)
    n_t = len(rb.models)
    fc = rb.models.index(GPT4)
    parsed = ResponseReader().parse(rb.responses)
    folds = kfold(rb.prompt_ids, 3, 0)
    cfs = CrossFitScorer(y, traces, folds, None, None, VerifierConfig(n_rounds=40, use_prompt_features=False), parsed)
    scorer = CachedScorer(lambda r, t, e: cfs.score_history(r, t, e, traces, None, None, parsed))
    chains = candidate_chains(y, cost, fc)
    assert chains and all(list(c) == sorted(c) and (len(c) == 1 or c[-1] == fc) for c in chains)
    assert any(len(c) == 1 for c in chains) and any(len(c) == 3 for c in chains)
    knobs = knob_grid(chains[-3:], accepts=[0.0, 0.5, 0.9], first_taus=())
    ctx = RoutingContext(np.full(y.shape, 0.5), np.tile(np.nanmean(cost, axis=0), (rb.n_prompts, 1)))
    res = replay_knobs(knobs, ctx, y, cost, scorer)
    front = float(np.nanmean(y[:, fc]))
    j, info = ltt_select(knobs, res, front - 0.05, 0.1)
    assert info["n_select"] + info["n_calibrate"] == rb.n_prompts
    if j is not None:  # certified: its training success clears the target
        assert np.nanmean(np.nan_to_num(res[j].success)) >= front - 0.05
    assert ltt_select(knobs, res, 0.999, 0.1)[0] is None  # nothing certifies an impossible target
    # escalating more (higher accept) never makes a ladder cheaper
    fam = [k for k, kn in enumerate(knobs) if kn.chain == chains[-1] and kn.first == "chain" and kn.accept_first is None]
    costs = [float(np.nanmean(res[k].cost)) for k in fam]
    assert costs == sorted(costs)
    with pytest.raises(ValueError, match="router"):
        CascadeKnob("router", chains[0], 0.5).policy()
    assert n_t == 11


def test_cascade_start_and_config_round_trip():
    """A bundle's cascade section: the ladder is resolved against the spec's models; ``first: chain`` starts at
    the ladder's bottom at or above the prompt's floor (the proxy and the scorer both ask the layer)."""
    from types import SimpleNamespace

    from aco_bert.policies import CascadeConfig, RoutingConfig
    from aco_bert.runtime.layer import DecisionLayer

    models = ["a", "b", "c", "d"]
    rc = RoutingConfig(policy="threshold", tau=0.5,
                       cascade=CascadeConfig(accept=0.8, accept_first=0.95, chain=["b", "d"], first="chain"))
    rc = RoutingConfig.from_dict(rc.to_dict())  # what router.yaml holds
    casc = Cascade.from_config(rc, 4, models)
    assert isinstance(casc.escalate, Chain) and casc.escalate.tiers == (1, 3) and casc.accept_first == 0.95
    layer = SimpleNamespace(routing=rc, spec=SimpleNamespace(models=models, n_tiers=4))
    assert DecisionLayer.cascade_start(layer, 1, 1) == 2 and DecisionLayer.cascade_start(layer, 1, 3) == 4
    layer.routing = RoutingConfig(policy="threshold", tau=0.5)
    assert DecisionLayer.cascade_start(layer, 3, 1) == 3
    with pytest.raises(ValueError, match="not tiers of the spec"):
        Cascade.from_config(RoutingConfig(policy="threshold", tau=0.5, cascade=CascadeConfig(chain=["x"])), 4, models)
    with pytest.raises(ValueError, match="needs cascade.chain"):
        CascadeConfig(first="chain")
    # the first run's bar is accept_first, later runs' is accept (the runtime's one-step rule)
    ctx = RoutingContext(np.full((1, 4), 0.5), np.ones((1, 4)))
    assert not casc.step(ctx, 1, 0.9, models, n_earlier=0).accept and casc.step(ctx, 1, 0.9, models, n_earlier=1).accept
