"""Safety floors (never violated, by any policy), per-step routing and the target-success policy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aco_bert.data.schema import STEP_TYPES
from aco_bert.signals.handcrafted import DOMAIN_TERMS
from aco_bert.policies import (Budget, FixedTier, PerStep, Random, RoutingContext, StepContext, TargetSuccess,
                               Threshold, Utility, build_context, floors_for)
from aco_bert.spec import RouterSpec, Tier

SPEC = RouterSpec(
    name="t5", tiers=[Tier(f"m{i}") for i in range(5)],
    floors={"legal": 4, "medical": 4, "security": 3, "finance": 2},
    step_type_min={"plan": 3, "edit": 2, "verify": 2},
)


def _every_policy(ctx: RoutingContext, rng_seed: int) -> list:
    """One of each policy, with knobs drawn from the seed (TargetSuccess fitted on the same random data)."""
    rng = np.random.default_rng(rng_seed)
    t = ctx.shape[1]
    y = (rng.random(ctx.shape) < ctx.probs).astype(float)
    ts = TargetSuccess(target=float(rng.uniform(0.05, 0.95)), delta=0.2).fit(ctx, y)
    return [
        FixedTier(int(rng.integers(t))), FixedTier(0), Threshold(float(rng.random())), Utility(float(rng.random() * 10)),
        Budget(float(rng.random())), Budget(None), Random(rng_seed), ts,
        PerStep(Threshold(0.9), {"search": FixedTier(0), "plan": Utility(0.0)}),
    ]


@st.composite
def contexts(draw):
    p = draw(st.integers(1, 40))
    t = draw(st.integers(1, 6))
    probs = draw(arrays(float, (p, t), elements=st.floats(0, 1)))
    cost = draw(arrays(float, (p, t), elements=st.floats(0, 5)))
    min_tier = draw(arrays(int, (p,), elements=st.integers(0, t - 1)))
    budget = draw(st.one_of(st.none(), arrays(float, (p,), elements=st.floats(0, 5))))
    steps = draw(st.lists(st.sampled_from(list(STEP_TYPES) + [None]), min_size=p, max_size=p))
    return StepContext(probs, cost, min_tier, budget, step_types=steps), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contexts())
def test_no_policy_ever_routes_below_the_floor(case):
    ctx, seed = case
    for pol in _every_policy(ctx, seed):
        tiers = pol.decide(ctx)
        assert tiers.shape == (ctx.shape[0],)
        assert (tiers >= ctx.min_tier).all(), pol
        assert (tiers < ctx.shape[1]).all() and (tiers >= 0).all(), pol


_FILLER = ["please fix the parser", "the build fails on windows", "add a flag", "refactor the cache", "thanks!"]


@st.composite
def requests(draw):
    """A text mixing filler and strong domain terms, a step type, declared domains and a requested minimum."""
    picks = draw(st.lists(st.sampled_from(sorted(DOMAIN_TERMS)), max_size=3))
    words = [draw(st.sampled_from(_FILLER)) for _ in range(draw(st.integers(1, 3)))]
    for d in picks:
        words.append(draw(st.sampled_from([t for t in DOMAIN_TERMS[d] if "\\" not in t])))
    text = " ".join(draw(st.permutations(words)))
    step = draw(st.sampled_from(list(STEP_TYPES) + [None]))
    declared = draw(st.lists(st.sampled_from(sorted(SPEC.floors) + ["unknown-domain"]), max_size=2))
    req = draw(st.one_of(st.none(), st.integers(1, SPEC.n_tiers)))
    return text, picks, step, declared, req


@settings(max_examples=200, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_spec_floors_from_text_step_type_and_request_are_never_violated(reqs, seed):
    texts = [r[0] for r in reqs]
    fl = floors_for(SPEC, texts, [r[2] for r in reqs], [r[3] for r in reqs], [r[4] for r in reqs])
    for i, (text, picks, step, declared, req) in enumerate(reqs):
        expect = 1
        for d in set(picks) | set(declared):
            expect = max(expect, SPEC.floors.get(d, 1))
        if step is not None:
            expect = max(expect, SPEC.step_type_min.get(step, 1))
        if req is not None:
            expect = max(expect, req)
        # detected domains can only add to what the text was built from (a filler word is never a domain term)
        assert fl.min_tier[i] + 1 >= expect
        assert set(picks) <= set(fl.domains[i])
    rng = np.random.default_rng(seed)
    ctx, _ = build_context(SPEC, rng.random((len(reqs), 5)), rng.random((len(reqs), 5)), texts,
                           [r[2] for r in reqs], [r[3] for r in reqs], [r[4] for r in reqs])
    np.testing.assert_array_equal(ctx.min_tier, fl.min_tier)
    for pol in _every_policy(ctx, seed):
        assert (pol.decide(ctx) >= fl.min_tier).all(), pol


def test_floors_reasons_and_errors():
    fl = floors_for(SPEC, ["The plaintiff filed a lawsuit.", "rename a variable"], ["search", "plan"],
                    min_tiers=[None, 2])
    assert fl.min_tier.tolist() == [3, 2]
    assert fl.reasons[0] == ["floor: legal -> tier >= 4"] and fl.reasons[1] == ["step_type: plan -> tier >= 3"]
    # a request can raise its minimum but never lower a floor
    assert floors_for(SPEC, ["the patient needs a dosage"], min_tiers=[1]).min_tier.tolist() == [3]
    with pytest.raises(ValueError, match="unknown step_type"):
        floors_for(SPEC, ["x"], ["deploy"])
    with pytest.raises(ValueError, match="not in 1..5"):
        floors_for(SPEC, ["x"], min_tiers=[9])
    with pytest.raises(ValueError, match="spec 't5' has 5"):
        build_context(SPEC, np.zeros((1, 3)), np.zeros((1, 3)), ["x"])


def test_per_step_dispatches_by_step_type():
    probs = np.tile([0.95, 0.96, 0.99], (4, 1))
    ctx = StepContext(probs, np.tile([1.0, 2.0, 3.0], (4, 1)), step_types=["search", "edit", None, "plan"])
    pol = PerStep(Threshold(0.9), {"edit": FixedTier(2), "plan": Threshold(0.98)})
    assert pol.decide(ctx).tolist() == [0, 2, 0, 2]
    with pytest.raises(ValueError, match="unknown step types"):
        PerStep(Threshold(0.5), {"deploy": FixedTier(0)})


def test_target_success_on_real_swebench_with_5_tier_spec(swebench):
    """Real outcomes and spec: tau certified on half of the prompts (base-rate router) meets its target on the rest."""
    spec = RouterSpec.load("swebench-verified-5tier")
    m = swebench.matrix(spec.models)
    rng = np.random.default_rng(0)
    perm = rng.permutation(m.n_prompts)
    cal, test = perm[:250], perm[250:]
    base = np.nanmean(m.success[cal], axis=0)
    probs = np.clip(base + 0.05 * rng.normal(size=m.success.shape), 0, 1)  # a weak, prompt-varying router
    ctx, fl = build_context(spec, probs, np.tile(np.nanmean(m.cost[cal], axis=0), (m.n_prompts, 1)), m.prompts)
    sub = RoutingContext(ctx.probs[cal], ctx.exp_cost[cal], ctx.min_tier[cal])
    pol = TargetSuccess(target=0.62, delta=0.1).fit(sub, m.success[cal], m.cost[cal])
    assert pol.guaranteed
    t = pol.decide(RoutingContext(ctx.probs[test], ctx.exp_cost[test], ctx.min_tier[test]))
    assert (t >= ctx.min_tier[test]).all()
    realised = m.success[test, t].mean()
    assert realised >= 0.62 - 2 * np.sqrt(0.62 * 0.38 / 250)  # within sampling noise of the population guarantee
    assert m.cost[test, t].mean() < m.cost[test, -1].mean()  # cheaper than always-frontier
    with pytest.raises(RuntimeError, match="not fitted"):
        TargetSuccess(0.7).decide(sub)


def test_target_success_falls_back_to_the_given_tier_when_nothing_is_certified():
    rng = np.random.default_rng(5)
    probs = rng.random((100, 3))
    y = (rng.random((100, 3)) < 0.5).astype(float)
    ctx = RoutingContext(probs, np.tile([1.0, 2.0, 3.0], (100, 1)), min_tier=np.where(np.arange(100) < 10, 1, 0))
    pol = TargetSuccess(target=0.95, delta=0.1, fallback_tier=2).fit(ctx, y)
    assert not pol.guaranteed
    assert (pol.decide(ctx) == 2).all()
    no_fb = TargetSuccess(target=0.95, delta=0.1).fit(ctx, y)
    np.testing.assert_array_equal(no_fb.decide(ctx), Threshold(no_fb.tau).decide(ctx))
