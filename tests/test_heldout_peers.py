"""Held-out peer rows of the demo table (aco_bert.evaluation.heldout_peers) on a real SWE-bench Verified slice."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.data import load_outcomes
from aco_bert.data.splits import subsample
from aco_bert.evaluation.heldout_peers import PromptSet, add_to_report, fit_heldout_peer
from aco_bert.evaluation.replay import evaluate_policies
from aco_bert.spec import RouterSpec

N_TRAIN, N_TEST = 90, 30


@pytest.fixture(scope="module")
def split():
    try:
        table = load_outcomes("swebench-verified")
    except (FileNotFoundError, ValueError) as e:  # no shared data on this machine
        pytest.skip(f"SWE-bench Verified not available: {e}")
    spec = RouterSpec.load("swebench-verified-5tier")
    m = table.matrix(spec.models)
    m = m.subset(subsample(m.n_prompts, N_TRAIN + N_TEST, 0))
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(m.n_prompts, 16))  # seeded stand-in for MiniLM embeddings (kNN only needs a metric)
    emb[:, 0] += 3 * np.nan_to_num(m.success[:, 0])  # ... with some signal, so the curve is not flat noise
    floors = np.zeros(m.n_prompts, dtype=int)
    floors[N_TRAIN::7] = 2  # a few held-out prompts with a floor at tier 3
    tr, te = np.arange(N_TRAIN), np.arange(N_TRAIN, N_TRAIN + N_TEST)

    def side(idx, success=None):
        return PromptSet([m.prompts[i] for i in idx], m.success[idx] if success is None else success, m.cost[idx],
                         floors[idx], emb[idx])

    return spec, m, side, tr, te


def test_peer_rows_in_table_with_training_knobs_and_floors(split):
    spec, m, side, tr, te = split
    fc = spec.models.index(spec.frontier)
    train, test = side(tr), side(te)
    fitted = [fit_heldout_peer(p, train, test, frontier=fc, k_inner=3) for p in ("tfidf-lr", "knn")]

    # the knob and the decisions depend on the training prompts only: shuffled (or hidden) held-out labels
    # change nothing
    y_shuf = np.random.default_rng(1).permutation(m.success[te])
    for labels in (y_shuf, np.full_like(m.success[te], np.nan)):
        again = [fit_heldout_peer(p, train, side(te, labels), frontier=fc, k_inner=3) for p in ("tfidf-lr", "knn")]
        for a, b in zip(fitted, again):
            assert a.tau == b.tau and np.array_equal(a.tiers, b.tiers)
    # ... while the training labels do drive them: the target is the training frontier's success - 1 pt, and
    # other training labels give other held-out decisions
    y_tr = m.success[tr]
    assert fitted[0].target == pytest.approx(np.nanmean(y_tr[:, fc]) - 0.01)
    other = PromptSet(train.texts, np.random.default_rng(2).permutation(y_tr), train.cost, train.min_tier,
                      train.embeddings)
    moved = fit_heldout_peer("tfidf-lr", other, test, frontier=fc, k_inner=3)
    assert (moved.tau, moved.train_success) != (fitted[0].tau, fitted[0].train_success) \
        or not np.array_equal(moved.probs, fitted[0].probs)

    sub, floors = m.subset(te), test.min_tier
    for p in fitted:
        assert (p.tiers >= floors).all()
        assert all((t >= floors).all() for _, t in p.curve)
        assert 0.0 <= p.tau <= 1.0 and np.isfinite(p.train_success)

    router = np.full(N_TEST, len(spec.models) - 1)
    report = evaluate_policies(sub, spec.models, decisions={"router (threshold)": router}, min_tier=floors,
                               frontier=spec.frontier)
    n_before = len(report.policies)
    add_to_report(report, sub, floors, fitted)
    names = [p.name for p in report.policies]
    assert len(names) == n_before + 2
    i = names.index("router (threshold)")
    assert names[i + 1: i + 3] == ["tfidf-lr (threshold, tau chosen on training)",
                                   "knn (threshold, tau chosen on training)"]
    row = report.get("knn (threshold, tau chosen on training)")
    assert row.n == N_TEST and row.param == fitted[1].tau
    rows = np.arange(N_TEST)
    cols = [sub.models.index(mm) for mm in spec.models]
    assert row.success == pytest.approx(np.nanmean(sub.success[rows, np.asarray(cols)[fitted[1].tiers]]))
    assert np.isfinite(row.savings_vs_frontier)
    for name in ("tfidf-lr-threshold", "knn-threshold"):
        assert len(report.curves[name].points) == 51
        assert 0.0 < report.metrics[name]["aiq"] < 1.0
    md = report.markdown()
    assert "tfidf-lr (threshold, tau chosen on training)" in md and "knn-threshold" in md
    d = report.to_dict()
    assert any(p["name"].startswith("knn (") for p in d["policies"]) and "tfidf-lr-threshold" in d["curves"]


def test_floor_above_every_prediction_is_kept(split):
    spec, m, side, tr, te = split
    test = side(te)
    test.min_tier = np.full(N_TEST, len(spec.models) - 1)  # every held-out prompt floored at the top tier
    p = fit_heldout_peer("tfidf-lr", side(tr), test, k_inner=3)
    assert (p.tiers == len(spec.models) - 1).all()
    with pytest.raises(ValueError, match="rows"):
        PromptSet(["a", "b"], np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(2, dtype=int))
