"""Isotonic calibration per tier, ECE/Brier/reliability, JSON round trip (runtime applies it with np.interp only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from aco_bert.decision.calibration import IsotonicCalibrator
from aco_bert.evaluation.calibration import brier, calibration_report, ece, plot_reliability, reliability


def _miscalibrated(n: int, seed: int = 0):
    """Scores s ~ U(0, 1) whose true P(success) is s**3: badly over-confident in the middle."""
    rng = np.random.default_rng(seed)
    s = rng.random((n, 2))
    y = (rng.random((n, 2)) < s**3).astype(float)
    return s, y


def test_isotonic_fixes_miscalibration_on_held_out_data():
    s, y = _miscalibrated(4000)
    cal = IsotonicCalibrator.fit(s[:2000], y[:2000])
    raw = [ece(s[2000:, t], y[2000:, t]) for t in range(2)]
    fixed = [ece(cal(s[2000:])[:, t], y[2000:, t]) for t in range(2)]
    for r, f in zip(raw, fixed):
        assert r > 0.1  # the test data really is miscalibrated
        assert f < 0.04 and f < r / 3
    assert brier(cal(s[2000:]), y[2000:]) < brier(s[2000:], y[2000:])


def test_interp_equals_sklearn_predict_and_json_round_trip(tmp_path):
    s, y = _miscalibrated(500, seed=1)
    cal = IsotonicCalibrator.fit(s, y, tiers=["cheap", "strong"])
    grid = np.column_stack([np.linspace(-0.5, 1.5, 301)] * 2)  # includes out-of-range scores (clipped)
    for t in range(2):
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s[:, t], y[:, t])
        np.testing.assert_allclose(cal(grid)[:, t], iso.predict(grid[:, t]), atol=1e-12)
    path = tmp_path / "cal.json"
    cal.save(path)
    assert json.loads(path.read_text())["tiers"] == ["cheap", "strong"]
    back = IsotonicCalibrator.load(path)
    np.testing.assert_array_equal(back(grid), cal(grid))
    out = back(grid)
    assert (np.diff(out, axis=0) >= -1e-12).all() and out.min() >= 0 and out.max() <= 1


def test_nan_labels_are_masked_per_tier_not_failures():
    s, y = _miscalibrated(600, seed=2)
    y_nan = y.copy()
    y_nan[:300, 0] = np.nan
    cal = IsotonicCalibrator.fit(s, y_nan)
    ref = IsotonicCalibrator.fit(s[300:], y[300:])
    np.testing.assert_allclose(cal(s)[:, 0], ref(s)[:, 0])
    assert cal.n_fit == [300, 600]
    # Treating NaN as failure would drag tier 0 down; masking keeps its mean close to the true rate.
    assert abs(cal(s[300:])[:, 0].mean() - y[300:, 0].mean()) < 0.02


def test_degenerate_tiers_get_a_constant_map():
    s = np.random.default_rng(3).random((50, 3))
    y = np.column_stack([np.ones(50), np.zeros(50), np.full(50, np.nan)])
    cal = IsotonicCalibrator.fit(s, y)
    out = cal(s)
    assert (out[:, 0] == 1).all() and (out[:, 1] == 0).all() and (out[:, 2] == 0.5).all()


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="must both be"):
        IsotonicCalibrator.fit(np.zeros((3, 2)), np.zeros((3, 1)))
    cal = IsotonicCalibrator.fit(*_miscalibrated(100))
    with pytest.raises(ValueError, match=r"expected \(P, 2\)"):
        cal(np.zeros((4, 3)))
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="format"):
        IsotonicCalibrator.load(p)


def test_ece_bins_and_reliability():
    rng = np.random.default_rng(4)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    assert ece(p, y) < 0.02 and ece(p, y, strategy="quantile") < 0.02  # calibrated by construction
    assert ece(np.clip(p + 0.2, 0, 1), y) > 0.15  # a shifted predictor is not
    r = reliability(p, y, n_bins=5, strategy="quantile")
    assert r["count"] == [4000] * 5  # equal-mass bins
    r = reliability(np.array([0.05, 0.95, np.nan]), np.array([0.0, 1.0, 1.0]), n_bins=10)
    assert r["count"] == [1, 1]  # NaN predictions and empty bins skipped
    with pytest.raises(ValueError, match="strategy"):
        ece(p, y, strategy="bogus")


def test_report_and_plot_on_real_swebench_slice(swebench, tmp_path):
    """Real outcomes: a prompt-length score calibrated on half the prompts, judged on the other half."""
    from aco_bert.signals.handcrafted import FEATURE_NAMES, featurize

    m = swebench.matrix()
    cols = [m.models.index(x) for x in m.models[:4]]
    y = m.success[:, cols]
    length = featurize(m.prompts)[:, FEATURE_NAMES.index("log_chars")]
    score = np.tile((-length)[:, None], (1, 4))  # shorter issues are easier; raw score is no probability
    cal = IsotonicCalibrator.fit(score[:250], y[:250], tiers=[m.models[c] for c in cols])
    held = cal(score[250:])
    rep = calibration_report(held, y[250:], cal.tiers)
    assert [r["tier"] for r in rep] == cal.tiers and all(r["n"] == 250 for r in rep)
    for r in rep:
        assert 0 <= r["ece"] < 0.25 and 0 < r["brier"] < 0.3
    png = plot_reliability(held, y[250:], tmp_path / "rel.png", tiers=cal.tiers)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
