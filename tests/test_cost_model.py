"""Expected cost per tier: mean baseline vs XGBoost regression, held-out error, save -> load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from aco_bert.decision.cost_model import CostModel, CostModelConfig, cost_errors, evaluate_cost
from aco_bert.data.splits import kfold

FAST = CostModelConfig(n_rounds=60, max_depth=2, pca_dim=3, nthread=1)


def test_regression_beats_mean_when_cost_depends_on_the_prompt_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 4))
    cost = np.exp(-3 + 0.8 * x[:, [0]] + np.array([[0.0, 1.5]]) + rng.normal(0, 0.3, (n, 2)))
    cost[:40, 1] = np.nan  # unknown cost: masked, not zero
    r = evaluate_cost(cost, kfold(n, 5, 0), features=x, cfg=FAST)
    assert r["xgb"]["log_error"] < 0.7 * r["mean"]["log_error"]
    assert r["xgb"]["mae"] < r["mean"]["mae"]
    m = CostModel.fit(cost, features=x, embeddings=rng.normal(size=(n, 6)), cfg=FAST, tiers=["a", "b"])
    emb = rng.normal(size=(n, 6))
    d = m.save(tmp_path / "cost")
    back = CostModel.load(d)
    np.testing.assert_array_equal(back.predict(features=x, embeddings=emb), m.predict(features=x, embeddings=emb))
    assert back.tiers == ["a", "b"] and (back.predict(features=x, embeddings=emb) >= 0).all()
    with pytest.raises(ValueError, match="input columns"):
        m.predict(features=x)  # the embeddings it was trained with are missing


def test_mean_method_needs_no_inputs_and_masks_nan():
    cost = np.array([[1.0, np.nan], [3.0, 4.0]])
    m = CostModel.fit(cost, cfg=CostModelConfig(method="mean"))
    np.testing.assert_allclose(m.predict(n=3), [[2.0, 4.0]] * 3)
    with pytest.raises(ValueError, match="no observed cost"):
        CostModel.fit(np.array([[1.0, np.nan]]))
    e = cost_errors(np.array([[2.0, 4.0], [2.0, 4.0]]), cost)
    assert e["mae_per_tier"] == [1.0, 0.0]


def test_real_swebench_cost_regression_beats_the_tier_mean(swebench):
    """Real per-instance USD costs: prompt features predict an agent's spend better than the tier mean."""
    from aco_bert.signals.handcrafted import featurize

    models = ["DeepSeek V3.2 Reasoner", "Gemini 3 Pro Preview (2025-11-18)", "Claude 4.5 Opus medium (20251101)"]
    m = swebench.matrix().select_models(models)
    x = featurize(m.prompts)
    r = evaluate_cost(m.cost, kfold(m.prompt_ids, 5, 0), features=x, cfg=FAST)
    assert r["xgb"]["log_error"] < r["mean"]["log_error"]
    assert r["oof_pred"].shape == m.cost.shape and not np.isnan(r["oof_pred"]).any()
