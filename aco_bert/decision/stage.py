"""The stacking stage: fit the decision layer on a neural k-fold run's out-of-fold outputs, for export.

    python -m aco_bert.stack --run checkpoints/minilm-cpu [--spec NAME] [--data_dir DIR] [--out DIR]
                             [--policy target-success|utility|threshold] [--target 0.734] [--cascade true]

Writes ``<run>/stack/`` (what :mod:`aco_bert.export.build` picks up): ``stacker/`` (per-tier XGBoost + manifest),
``calibrators.json`` (isotonic, fitted on the stacker's inner cross-fit predictions), ``cost_model/``,
``verifier/`` (when the data carry ``api_calls`` traces) and ``routing.json`` (the policy and its knob, chosen on
held-out predictions only: Learn-then-Test tau for target-success, the nested "match" rule for utility/threshold,
and the cascade's accept threshold), plus ``stack_report.json`` with the held-out numbers behind each choice.
Every model is fitted on all prompts; every number used to *choose* something comes from predictions on prompts
the model did not train on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aco_bert.decision.verifier import Cascade, Verifier, VerifierConfig, cross_fit_verifier, trace_arrays
from aco_bert.decision.cost_model import CostModel, CostModelConfig, cost_errors
from aco_bert.decision.stacker import StackerConfig, fit_stack, load_oof


@dataclass
class StackStageConfig:
    run: str  # neural k-fold run directory (oof.safetensors + oof_meta.json)
    dataset: str | None = None  # default: the run's dataset
    spec: str | None = None  # default: the run's spec
    data_dir: str | None = None
    out: str | None = None  # default: <run>/stack
    policy: str = "target-success"  # target-success | utility | threshold
    target: float | None = None  # target success; default: the frontier's success minus `within`
    within: float = 0.01
    margin: float = 0.005  # utility/threshold "match" rule: held-out success >= frontier - within + margin
    delta: float = 0.1
    cascade: bool | None = None  # None: on when the data carry api_calls
    k: int = 5  # cross-fit folds for the held-out cost and verifier predictions
    seed: int = 0
    stacker: StackerConfig = field(default_factory=StackerConfig)
    cost: CostModelConfig = field(default_factory=CostModelConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)


def run_stack(cfg: StackStageConfig, log=print) -> dict[str, Any]:
    from aco_bert.decision.calibration import calibration_report
    from aco_bert.data import load_outcomes
    from aco_bert.signals.handcrafted import featurize
    from aco_bert.policies.base import RoutingContext, Threshold, Utility
    from aco_bert.evaluation.metrics.core import realised
    from aco_bert.evaluation.selection import TAUS, lambda_grid, select_match
    from aco_bert.policies.floors import TargetSuccess, floors_for
    from aco_bert.spec import RouterSpec
    from aco_bert.data.splits import kfold

    run = Path(cfg.run)
    meta = json.loads((run / "oof_meta.json").read_text())
    dataset = cfg.dataset or meta.get("dataset")
    spec = RouterSpec.load(cfg.spec or meta.get("spec"))
    m = load_outcomes(dataset, data_dir=cfg.data_dir).matrix(spec.models)
    pos = {p: i for i, p in enumerate(m.prompt_ids)}
    missing = [p for p in meta["prompt_ids"] if p not in pos]
    if missing:
        raise ValueError(f"{run}: {len(missing)} out-of-fold prompts are not in {dataset!r}, e.g. {missing[:3]}")
    m = m.subset([pos[p] for p in meta["prompt_ids"]])  # the run's prompts, in the run's order
    inputs, _, heads = load_oof(run, m.prompt_ids)
    if inputs.logits.shape[1] != len(spec.models) or list(meta["models"]) != spec.models:
        log(f"[stack] note: the run's {len(meta['models'])} head logits are stacker inputs for the "
            f"{spec.n_tiers} tiers of spec {spec.name!r}")
    heads_spec = None
    if heads is not None and all(mm in meta["models"] for mm in spec.models):
        heads_spec = heads[:, [list(meta["models"]).index(mm) for mm in spec.models]]
    steps = m.meta["step_type"].tolist() if "step_type" in m.meta.columns else None
    steps = None if steps is None else [s if isinstance(s, str) else None for s in steps]
    inputs.features = featurize(m.prompts, steps).astype(float)
    y, cost, n = m.success, m.cost, m.n_prompts
    out = Path(cfg.out or run / "stack")
    out.mkdir(parents=True, exist_ok=True)
    log(f"[stack] {dataset}: {n} prompts x {spec.n_tiers} tiers ({spec.name}) -> {out}")

    fs = fit_stack(inputs, y, cfg.stacker, tiers=spec.models, prompt_ids=m.prompt_ids)
    fs.stacker.save(out / "stacker")
    fs.calibrator.save(out / "calibrators.json")
    held = fs.calibrator(fs.inner_oof)  # calibrated held-out probabilities (for choosing knobs)

    cm = CostModel.fit(cost, inputs.features, inputs.embeddings, heads_spec, cfg.cost, tiers=spec.models)
    cm.save(out / "cost_model")
    folds = kfold(m.prompt_ids, cfg.k, cfg.seed + 13)
    held_cost = np.full(cost.shape, np.nan)
    sub = lambda a, i: None if a is None else a[i]  # noqa: E731
    for f in folds:
        cmi = CostModel.fit(cost[f.train], inputs.features[f.train], sub(inputs.embeddings, f.train),
                            sub(heads_spec, f.train), cfg.cost)
        held_cost[f.test] = cmi.predict(len(f.test), inputs.features[f.test], sub(inputs.embeddings, f.test),
                                        sub(heads_spec, f.test))

    min_tier = floors_for(spec, m.prompts, steps).min_tier
    ctx = RoutingContext(held, held_cost, min_tier)
    fc = spec.models.index(spec.frontier) if spec.frontier else int(np.nanargmax(np.nanmean(y, axis=0)))
    s_front = float(np.nanmean(y[:, fc]))
    target = cfg.target if cfg.target is not None else s_front - cfg.within
    routing: dict[str, Any] = {"policy": cfg.policy, "target": target, "delta": cfg.delta}
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg), "frontier": spec.models[fc],
                              "frontier_success": s_front, "calibration_held_out": calibration_report(held, y, spec.models),
                              "cost_held_out": {"xgb": cost_errors(held_cost, cost)}}
    if cfg.policy == "target-success":
        ts = TargetSuccess(target, cfg.delta, fallback_tier=fc).fit(ctx, y, cost)
        routing.update({"tau": ts.tau, "guaranteed": ts.guaranteed,
                        "tau_source": "learn-then-test on the stacker's held-out calibrated probabilities"})
        if not ts.guaranteed:
            # What the runtime can do without a guarantee: route everything to the frontier (tau above 1).
            routing["tau"] = 1.01
            routing["note"] = (f"no tau certified for target {target:.3f} at delta {cfg.delta} on {n} prompts: "
                               f"tau 1.01 routes every prompt to its most likely tier")
        report["ltt"] = ts.result.to_dict()
    elif cfg.policy in ("utility", "threshold"):
        grid = TAUS if cfg.policy == "threshold" else lambda_grid(float(np.nanmean(cost)))
        make = Threshold if cfg.policy == "threshold" else Utility
        pts = [(k, *realised(make(k).decide(ctx), y, cost)) for k in grid]
        k = select_match(pts, s_front - cfg.within + cfg.margin)
        routing["tau" if cfg.policy == "threshold" else "lam"] = float(k)
        report["selection"] = {"points": pts, "chosen": k}
    else:
        raise ValueError(f"policy must be target-success, utility or threshold, got {cfg.policy!r}")

    traces = trace_arrays(m)
    do_cascade = cfg.cascade if cfg.cascade is not None else bool(np.isfinite(traces["api_calls"]).any())
    if do_cascade:
        q = cross_fit_verifier(y, traces, folds, inputs.features, held, cfg.verifier)
        v = Verifier.fit(y, traces, inputs.features, held, cfg.verifier, tiers=spec.models)
        v.save(out / "verifier")
        from aco_bert.runtime.router import make_policy

        pol = make_policy(routing)
        pts = []
        for acc in [0.0] + [round(float(a), 3) for a in np.linspace(0.3, 0.95, 14)]:
            r = Cascade(pol, pol, acc).replay(ctx, y, cost, q)
            pts.append((acc, float(r.success.mean()), float(r.cost.mean())))
        # escalate only as much as needed: the cheapest accept threshold whose held-out success meets the target
        best = select_match(pts, target + cfg.margin)
        routing["cascade"] = {"accept": best, "max_runs": 2}
        report["cascade"] = {"points": pts, "chosen": best}
    (out / "routing.json").write_text(json.dumps(routing, indent=1))
    (out / "stack_report.json").write_text(json.dumps(report, indent=1, default=float))
    log(f"[stack] routing: {json.dumps(routing)}")
    return {"out": str(out), "routing": routing, "report": report}


def main(argv: list[str] | None = None) -> int:
    from aco_bert.config import load_config, parse_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    ov = parse_overrides(argv)
    path = ov.pop("config", None)
    cfg = load_config(StackStageConfig, path, ov)
    run_stack(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
