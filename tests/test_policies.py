"""The policy registry and the routing config: names -> policies, validation that names its source, reasons.

What must hold: every selectable policy is registered under the name a ``routing:`` section uses; a config builds
the same policy a hand-written constructor does (same tiers on real SWE-bench outcomes); a bad routing section is
refused with an error that starts with where it came from; a new policy is one class plus ``@register``; each
policy explains its choice in its own words (no policy-specific code in the runtime).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from aco_bert.policies import (Budget, Cascade, PerStep, Policy, PolicyConfig, RequestBudget, RoutingConfig,
                               RoutingContext, StepContext, TargetSuccess, Threshold, Utility, from_config,
                               named_policy, names, policy_class, register)
from aco_bert.policies import registry


@pytest.fixture(scope="module")
def real_ctx(swebench):
    """Base-rate-plus-noise probabilities and mean costs over the 5-tier spec's models, on real outcomes."""
    from aco_bert.spec import RouterSpec

    spec = RouterSpec.load("swebench-verified-5tier")
    m = swebench.matrix(spec.models)
    rng = np.random.default_rng(0)
    probs = np.clip(np.nanmean(m.success, axis=0) + 0.1 * rng.normal(size=m.success.shape), 0, 1)
    cost = np.tile(np.nanmean(m.cost, axis=0), (m.n_prompts, 1))
    return RoutingContext(probs, cost, rng.integers(0, 2, m.n_prompts)), m


def test_the_selectable_policies_are_registered():
    assert set(names()) == {"threshold", "target-success", "utility", "budget"}
    assert policy_class("utility") is Utility and policy_class("target-success") is TargetSuccess
    with pytest.raises(ValueError, match=r"unknown routing policy 'cheapest'; expected one of \("):
        policy_class("cheapest")


def test_config_builds_the_same_policy_as_its_constructor(real_ctx):
    ctx, _ = real_ctx
    for cfg, want in [(PolicyConfig("threshold", tau=0.7), Threshold(0.7)), (PolicyConfig("utility", lam=2.0),
                                                                             Utility(2.0)),
                      (PolicyConfig("budget", budget=0.3), Budget(0.3)), (PolicyConfig("budget"), Budget(None)),
                      (PolicyConfig("target-success", tau=0.65), Threshold(0.65))]:
        pol = from_config(cfg)
        assert pol.name == cfg.policy
        np.testing.assert_array_equal(pol.decide(ctx), want.decide(ctx))
    routing = RoutingConfig.from_dict({"policy": "target-success", "tau": 0.65, "target": 0.7, "delta": 0.2,
                                       "guaranteed": True, "mode": "stacked"})
    ts = named_policy(routing)
    assert isinstance(ts, TargetSuccess) and (ts.target, ts.delta, ts.tau, ts.guaranteed) == (0.7, 0.2, 0.65, True)
    whole = from_config(routing)  # the bundle's rule: a request's budget wins over the default policy
    assert isinstance(whole, RequestBudget)
    np.testing.assert_array_equal(whole.decide(ctx), Threshold(0.65).decide(ctx))


def test_the_routing_rule_dispatches_request_budgets_and_step_types(real_ctx):
    ctx, m = real_ctx
    n = ctx.shape[0]
    steps = np.array(["edit" if i % 3 == 0 else None for i in range(n)], dtype=object)
    budget = np.where(np.arange(n) % 5 == 0, 0.05, np.nan)
    sctx = StepContext(ctx.probs, ctx.exp_cost, ctx.min_tier, budget, step_types=steps)
    cfg = RoutingConfig.from_dict({"policy": "threshold", "tau": 0.6,
                                   "per_step": {"edit": {"policy": "utility", "lam": 1.0}}})
    pol = from_config(cfg)
    tiers = pol.decide(sctx)
    for i in range(n):
        want = (Budget(None) if budget[i] == 0.05 else Utility(1.0) if steps[i] == "edit" else Threshold(0.6))
        assert tiers[i] == want.decide(sctx)[i]
        assert pol.label(sctx, i) == ("budget" if budget[i] == 0.05 else "utility (edit)" if steps[i] == "edit"
                                      else "threshold")
    assert pol.reason(sctx, 1, int(tiers[1])).startswith("threshold 0.600: ")
    assert pol.reason(sctx, 3, int(tiers[3])) == "utility: argmax P(success) - 1 * E[cost]"
    assert pol.reason(sctx, 0, int(tiers[0])).startswith("budget $0.05: ")
    realised = m.success[np.arange(n), tiers]
    assert 0 < np.nanmean(realised) < 1  # real outcomes of the chosen tiers


def test_budget_reason_names_the_budget_it_applied():
    ctx = RoutingContext(np.array([[0.5, 0.9], [0.5, 0.9]]), np.array([[0.1, 1.0], [0.1, 1.0]]),
                         budget=np.array([np.nan, 0.05]))
    pol = Budget(0.5)
    t = pol.decide(ctx)
    assert t.tolist() == [0, 0]
    assert pol.reason(ctx, 0, 0) == "budget $0.5: highest P(success) among tiers with E[cost] <= budget"
    assert pol.reason(ctx, 1, 0) == "budget $0.05: no allowed tier fits; cheapest allowed tier"
    assert Budget(None).reason(ctx, 0, 1).startswith("budget: none set")


@pytest.mark.parametrize("section, match", [
    ({"policy": "nope", "tau": 0.5}, r"unknown routing policy 'nope'"),
    ({"policy": "utility"}, r"routing policy 'utility' needs lam"),
    ({"policy": "threshold"}, r"needs tau"),
    ({"policy": "threshold", "tau": "high"}, r"tau"),
    ({"policy": "threshold", "tau": float("inf")}, r"tau must be a finite number"),
    ({"policy": "budget", "budget": -1.0}, r"budget -1.0 must be >= 0"),
    ({"policy": "threshold", "tau": 0.5, "mode": "fancy"}, r"routing mode 'fancy'"),
    ({"policy": "threshold", "tau": 0.5, "typo_key": 1}, r"unknown key\(s\) \['typo_key'\]"),
    ({"policy": "threshold", "tau": 0.5, "cascade": {"accept": 1.5}}, r"\.cascade: cascade\.accept 1\.5 not in"),
    ({"policy": "threshold", "tau": 0.5, "cascade": {"max_runs": 0}}, r"max_runs 0 must be >= 1"),
    ({"policy": "threshold", "tau": 0.5, "per_step": {"deploy": {"policy": "threshold", "tau": 0.1}}},
     r"unknown step types \['deploy'\]"),
    ({"policy": "threshold", "tau": 0.5, "per_step": {"edit": {"policy": "utility"}}},
     r"\.per_step\.edit: routing policy 'utility' needs lam"),
    ({"policy": "threshold", "tau": 0.5, "per_step": {"edit": "utility"}}, r"\.per_step\.edit: expected a mapping"),
    ({"policy": "threshold", "tau": 0.5, "cost_heads_input": "eur"}, r"cost_heads_input 'eur'"),
    (None, r"expected a mapping"),
])
def test_a_bad_routing_section_is_refused_naming_where_it_came_from(section, match):
    with pytest.raises(ValueError, match=match) as e:
        RoutingConfig.from_dict(section, where="bundles/x/router.yaml:routing")
    assert str(e.value).startswith("bundles/x/router.yaml:routing")


def test_the_exporters_routing_sections_load_and_round_trip(tiny_bundle, tiny_heads_bundle):
    import yaml

    for b in (tiny_bundle, tiny_heads_bundle):
        section = yaml.safe_load((b / "router.yaml").read_text())["routing"]
        cfg = RoutingConfig.from_dict(section, where=str(b))
        assert cfg.policy == section["policy"] and cfg.tau == section["tau"]
        assert cfg.cascade.accept == section["cascade"]["accept"]
        assert RoutingConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.with_overrides(tau=0.5).tau == 0.5


def test_cascade_from_config_escalates_with_the_default_policy():
    cfg = RoutingConfig.from_dict({"policy": "threshold", "tau": 0.8, "cascade": {"accept": 0.6}})
    c = Cascade.from_config(cfg, n_tiers=4)
    assert (c.accept, c.max_runs) == (0.6, 4) and isinstance(c.escalate, Threshold) and c.escalate.tau == 0.8
    ctx = RoutingContext(np.array([[0.5, 0.7, 0.85, 0.9]]), np.array([[1.0, 2.0, 3.0, 4.0]]))
    e = c.step(ctx, 0, 0.3)
    assert not e.accept and e.next_tier == 3  # cheapest tier above the one that ran with P >= 0.8
    assert c.decide(ctx).tolist() == [2] and c.reason(ctx, 0, 2).startswith("threshold 0.800: P(success)=0.850")
    assert Cascade.from_config(RoutingConfig.from_dict({"policy": "utility", "lam": 1.0,
                                                        "cascade": {"max_runs": 2}})).max_runs == 2


def test_a_new_policy_is_one_class_and_one_registration(real_ctx):
    with registry.REGISTRY.snapshot():  # leave the real registry as it was
        _new_policy_is_one_class_and_one_registration(real_ctx)


def _new_policy_is_one_class_and_one_registration(real_ctx):
    ctx, _ = real_ctx

    @register("most-likely")
    @dataclass
    class MostLikely(Policy):
        name: str = "most-likely"

        def choose(self, c: RoutingContext) -> np.ndarray:
            return np.argmax(np.where(c.allowed(), c.probs, -np.inf), axis=1)

        def reason(self, c: RoutingContext, i: int, raw_tier: int) -> str:
            return f"most likely: P(success)={c.probs[i, raw_tier]:.3f}"

        @classmethod
        def from_config(cls, cfg) -> "MostLikely":
            return cls()

    cfg = RoutingConfig.from_dict({"policy": "most-likely", "mode": "stacked"})
    pol = from_config(cfg)
    tiers = pol.decide(ctx)
    np.testing.assert_array_equal(tiers, Threshold(2.0).decide(ctx))  # nothing reaches tau 2: the most likely tier
    assert pol.label(ctx, 0) == "most-likely" and pol.reason(ctx, 0, int(tiers[0])).startswith("most likely: ")
    with pytest.raises(ValueError, match="already registered"):
        register("most-likely")(Threshold)


def test_per_step_refuses_unknown_step_types_and_floors_still_apply():
    ctx = StepContext(np.tile([0.95, 0.96, 0.99], (3, 1)), np.tile([1.0, 2.0, 3.0], (3, 1)), min_tier=[0, 1, 2],
                      step_types=["search", "search", None])
    pol = PerStep(Threshold(0.98), {"search": Threshold(0.9)})
    assert pol.choose(ctx).tolist() == [0, 1, 2] and pol.decide(ctx).tolist() == [0, 1, 2]
    assert [pol.label(ctx, i) for i in range(3)] == ["threshold (search)", "threshold (search)", "threshold"]
    with pytest.raises(ValueError, match="unknown step types"):
        PerStep(Threshold(0.5), {"deploy": Threshold(0.1)})
