"""The stack stage: fit the whole decision layer on a neural k-fold run's out-of-fold outputs, for export.

    python -m aco_bert.stack --run checkpoints/minilm-cpu [--mode stacked|heads] [--spec NAME_OR_PATH]
                             [--dataset NAME_OR_PATH] [--data_dir DIR] [--out DIR]
                             [--policy target-success|utility|threshold] [--target 0.734] [--cascade true]

Everything the bundle's decision layer needs is fitted here -- the exporter fits nothing. Two modes:

* ``stacked``: ``signals/<name>/`` (the fitted signals the stacker reads: TF-IDF-LR, kNN neighbour outcomes,
  spec-declared metadata; :mod:`aco_bert.signals`), ``stacker/`` (per-tier XGBoost over head logits + prompt
  features + embeddings + signal blocks, started from each tier's best single source),
  ``calibrators.json`` (isotonic, fitted on the stacker's inner cross-fit predictions), ``cost_model/`` (XGBoost),
  ``verifier/`` (when the data carry ``api_calls`` traces).
* ``heads``: ``calibrators.json`` (isotonic on the out-of-fold head sigmoid) and ``cost_model/`` (per-tier mean);
  the spec's tiers must be the heads' tiers.

The policy and its knob are chosen on held-out predictions only: Learn-then-Test tau for target-success, the
nested "match" rule for utility/threshold, and the cascade's accept threshold. Every model is fitted on all
prompts; every number used to *choose* something comes from predictions on prompts the model did not train on:
the signals' blocks the stacker is fitted on are cross-fitted over the stage's ``k`` folds (each prompt's block from
a signal fitted without it), then each signal is refitted on all prompts for the bundle. ``stack_report.json``
records the held-out AUC of every single source next to the stack's (``sources_held_out``).

Input: the run's ``run.json`` (:class:`aco_bert.artifacts.layout.RunInfo`: the whole spec, an absolute dataset
reference, the prompt ids), so ``stack --run R`` works from any directory for a spec given by path. Output
(default ``<run>/stack``): ``stack.json`` (:class:`~aco_bert.artifacts.layout.StackInfo`: mode, whole spec, dataset,
routing as :class:`aco_bert.policies.config.RoutingConfig` writes it, head order, prompt ids), the decision files
above and ``stack_report.json`` with the held-out numbers behind each choice.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aco_bert.artifacts import layout as L
from aco_bert.decision.cost_model import CostModel, CostModelConfig, cost_errors, cross_fit_cost
from aco_bert.decision.stacker import StackerConfig, fit_stack, load_oof
from aco_bert.decision.verifier import CrossFitScorer, Verifier, VerifierConfig, cascade_signals, trace_arrays
from aco_bert.signals.base import SignalData
from aco_bert.signals.fitting import signal_data

MODES = ("stacked", "heads")
POLICIES = ("target-success", "utility", "threshold")


@dataclass
class StackStageConfig:
    run: str  # neural k-fold run directory (run.json + oof.safetensors + oof_meta.json)
    mode: str = "stacked"  # stacked (XGBoost stacker) | heads (isotonic-calibrated head sigmoid, mean cost)
    dataset: str | None = None  # registry name or path; default: the run's dataset (run.json)
    spec: str | None = None  # spec name or YAML path; default: the run's whole spec (run.json)
    data_dir: str | None = None  # default: the run's data_dir
    out: str | None = None  # default: <run>/stack
    policy: str = "target-success"  # target-success | utility | threshold
    target: float | None = None  # target success; default: the frontier's success minus `within`
    within: float = 0.01
    margin: float = 0.005  # utility/threshold "match" rule: held-out success >= frontier - within + margin
    delta: float = 0.1
    cascade: bool | None = None  # None: on in stacked mode when the data carry responses or api_calls
    cascade_rule: str = "match"  # how the shipped cascade knob is chosen: match (target + margin) | ltt
    k: int = 5  # cross-fit folds for the held-out calibrated (heads), cost and verifier predictions
    seed: int = 0
    stacker: StackerConfig = field(default_factory=StackerConfig)
    signal_options: dict[str, dict] = field(default_factory=dict)  # per-signal config, e.g. {knn: {k: 20}}
    cost: CostModelConfig = field(default_factory=CostModelConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} not in {MODES}")
        if self.cascade_rule not in ("match", "ltt"):
            raise ValueError(f"cascade_rule must be 'match' or 'ltt', got {self.cascade_rule!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")


def _dataset_ref(cfg: StackStageConfig, run: L.RunInfo) -> L.DatasetRef:
    """The run's dataset, or the ``--dataset`` / ``--data_dir`` override made absolute (stored whole)."""
    if cfg.dataset:
        return L.DatasetRef.make(cfg.dataset, cfg.data_dir or run.dataset.data_dir, run.dataset.options)
    if cfg.data_dir:
        return dataclasses.replace(run.dataset, data_dir=str(Path(cfg.data_dir).expanduser().resolve()))
    return run.dataset


def fit_signals(cfg: StackStageConfig, data: SignalData, y, cost, folds, tiers, out: Path, log) -> dict:
    """Each usable signal the stacker lists (:func:`aco_bert.signals.fitting.usable_signals`): cross-fitted blocks
    over ``folds`` (the stacker's inputs) and a refit on all prompts saved to ``out/signals/<name>/`` (the
    bundle's)."""
    from aco_bert.signals.fitting import cross_fit_blocks, fit_all, usable_signals

    shutil.rmtree(out / L.SIGNALS_DIR, ignore_errors=True)
    names = [s for s in cfg.stacker.signals if cfg.stacker.uses(s)]
    signals = usable_signals(names, data, cfg.signal_options, log)
    blocks = cross_fit_blocks(signals, data, y, cost, folds, tiers)
    for name, sig in fit_all(signals, data, y, cost, tiers).items():
        sig.save(out / L.SIGNALS_DIR / name)
    return blocks


def sources_report(fs, inputs, y, tiers) -> dict[str, Any]:
    """Held-out per-tier AUC of every single source, the stack before and after the guarantee, and each tier's
    mode: the numbers behind "the stack is never below its best input"."""
    from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc
    from aco_bert.signals.sources import source_scores

    st = fs.stacker
    rows = {k: per_tier_auc(y, v) for k, v in source_scores(inputs, st.layout, st.n_tiers).items()}
    best = max(rows, key=lambda k: mean_auc(rows[k])) if rows else None
    blends = [t for t, s in enumerate(st.sources) if s is not None and "terms" in s]
    if blends:  # a blend's held-out AUC: the inner folds' own blends (the guarantee's comparison), never in sample
        rows["blend"] = np.full(st.n_tiers, np.nan)
        for t in blends:
            g = st.guarantee[t] or {}
            rows["blend"][t] = g.get("source_cross_fit_auc", st.sources[t]["auc"])
    if rows:  # per tier the best source *on these rows*: an oracle no fitted choice can promise
        rows["per_tier_oracle"] = np.nanmax(np.vstack(list(rows.values())), axis=0)
    rows["stack"] = per_tier_auc(y, fs.stacked_oof)
    rows["stack_guaranteed"] = per_tier_auc(y, fs.inner_oof)
    out: dict[str, Any] = {k: {"mean_auc": mean_auc(v), "per_tier_auc": v.tolist()} for k, v in rows.items()}
    out["best_single_source"] = best
    out["tiers"] = list(tiers)
    out["modes"] = list(st.modes)
    out["sources"] = [None if s is None else s["source"] for s in st.sources]
    out["signals"] = dict(st.layout.get("signals", {}))
    return out


def _fit_stacked(cfg, inputs, y, cost, heads_spec, folds, spec, m, out: Path, head_models, log):
    """Signals + stacker + isotonic + XGBoost cost model; held-out calibrated probabilities, cross-fitted costs
    and the per-source held-out AUCs."""
    inputs.signals = fit_signals(cfg, signal_data(m, spec, inputs.embeddings), y, cost, folds, spec.models, out,
                                 log)
    fs = fit_stack(inputs, y, cfg.stacker, tiers=spec.models, prompt_ids=m.prompt_ids, head_tiers=head_models)
    shutil.rmtree(out / L.STACKER_DIR, ignore_errors=True)  # no stale tier file of an earlier fit
    fs.stacker.save(out / L.STACKER_DIR)
    fs.calibrator.save(out / L.CALIBRATORS)
    held = fs.calibrator(fs.inner_oof)  # calibrated held-out probabilities (for choosing knobs)
    cm = CostModel.fit(cost, inputs.features, inputs.embeddings, heads_spec, cfg.cost, tiers=spec.models)
    cm.save(out / L.COST_MODEL_DIR)
    held_cost = cross_fit_cost(cost, folds, inputs.features, inputs.embeddings, heads_spec, cfg.cost)
    return held, held_cost, sources_report(fs, inputs, y, spec.models)


def _fit_heads(cfg, inputs, y, cost, spec, m, out: Path):
    """Isotonic calibrators on the out-of-fold head sigmoid and the per-tier mean cost; held-out probabilities
    cross-fitted (each prompt calibrated by a map not fitted on it), expected cost = the mean."""
    from aco_bert.data.splits import kfold
    from aco_bert.decision.calibration import IsotonicCalibrator, sigmoid

    raw = sigmoid(inputs.logits)
    IsotonicCalibrator.fit(raw, y, spec.models).save(out / L.CALIBRATORS)
    cm = CostModel.fit(cost, cfg=CostModelConfig(method="mean"), tiers=spec.models)
    cm.save(out / L.COST_MODEL_DIR)
    held = np.full(raw.shape, np.nan)
    for f in kfold(list(m.prompt_ids), cfg.k, cfg.seed + 7):
        held[f.test] = IsotonicCalibrator.fit(raw[f.train], y[f.train]).transform(raw[f.test])
    return held, cm.predict(n=len(raw))


def _fit_cascade(cfg: StackStageConfig, m, y, cost, traces, features, held, ctx, folds, fc: int, target: float,
                 spec, out: Path, routing: dict, log) -> tuple[Any, dict]:
    """The bundle's verifier (all prompts) and cascade knob, chosen on held-out replays by ``cascade_rule``
    (:mod:`aco_bert.decision.cascade_search`: ``match`` = the cheapest knob whose held-out success meets the
    target + margin; ``ltt`` = Learn-then-Test at ``delta``; the report measures both)."""
    from aco_bert.decision.cascade_search import (ACCEPT_FIRST, ACCEPTS, CachedScorer, candidate_chains, knob_grid, ltt_select,
                                                  points, replay_knobs)
    from aco_bert.evaluation.selection import select_match
    from aco_bert.policies import CascadeConfig, PolicyConfig, named_policy
    from aco_bert.verify.features import ResponseReader

    parsed = ResponseReader(cfg.verifier.extractor).parse(m.responses) \
        if m.responses is not None and cfg.verifier.use_responses else None
    cfs = CrossFitScorer(y, traces, folds, features, held, cfg.verifier, parsed)
    scorer = CachedScorer(lambda r, t, e: cfs.score_history(r, t, e, traces, features, held, parsed))
    v = Verifier.fit(y, traces, features, held, cfg.verifier, tiers=spec.models, responses=parsed)
    v.save(out / L.VERIFIER_DIR)
    pol = named_policy(PolicyConfig(policy=routing["policy"], tau=routing.get("tau"), lam=routing.get("lam")))
    # the runtime starts a cascade where route() does (the proxy, the scorer), so the shipped knob starts there too
    knobs = [k for k in knob_grid(candidate_chains(y, cost, fc), ACCEPTS, first_taus=(), router=True,
                                  accept_first=ACCEPT_FIRST if v.responses else (None,))
             if k.first == "router"]
    res = replay_knobs(knobs, ctx, y, cost, scorer, router=pol)
    pts = points(res)
    info: dict[str, Any] = {"signals": cascade_signals(m), "verifier_responses": v.responses, "n_knobs": len(knobs)}
    j = None
    if cfg.cascade_rule == "ltt":
        j, info["ltt"] = ltt_select(knobs, res, target, cfg.delta)
    if j is None:  # "match", or no knob certified
        j = select_match(pts, target + cfg.margin)
    k = knobs[j]
    info |= {"rule": cfg.cascade_rule, "chosen": k.to_dict(spec.models),
             "held_out": {"success": pts[j][1], "cost_per_task": pts[j][2], **res[j].summary()}}
    log(f"[stack] cascade: {info['chosen']} held-out success {pts[j][1]:.3f} cost {pts[j][2]:.4g}")
    cc = CascadeConfig(accept=float(k.accept), max_runs=k.max_runs, accept_first=k.accept_first,
                       chain=[spec.models[t] for t in k.chain], first="chain" if k.first == "chain" else "router")
    return cc, info


def run_stack(cfg: StackStageConfig, log=print) -> dict[str, Any]:
    """Fit the decision layer of ``cfg.run``; returns ``{"out", "routing" (dict), "report", "info" (StackInfo)}``."""
    from aco_bert.data.splits import kfold
    from aco_bert.evaluation.calibration import calibration_report
    from aco_bert.evaluation.metrics.core import realised
    from aco_bert.evaluation.selection import TAUS, frontier_col, lambda_grid, select_match
    from aco_bert.policies import (RoutingConfig, RoutingContext, TargetSuccess, Threshold, Utility,
                                   floors_for)
    from aco_bert.signals.handcrafted import featurize
    from aco_bert.spec import RouterSpec

    run = Path(cfg.run)
    ri = L.RunInfo.load(run)
    spec = RouterSpec.load(cfg.spec) if cfg.spec else ri.router_spec()
    ds = _dataset_ref(cfg, ri)
    if cfg.mode == "heads" and spec.models != ri.models:
        raise ValueError(f"--mode heads routes among the heads' tiers {ri.models}; spec {spec.name!r} has "
                         f"{spec.models} (a different tier set needs --mode stacked)")
    m = ds.load(spec=spec).matrix(spec.models)  # spec tier prices derive a missing cost (aco_bert.data.costs)
    pos = {p: i for i, p in enumerate(m.prompt_ids)}
    missing = [p for p in ri.prompt_ids if p not in pos]
    if missing:
        raise ValueError(f"{run}: {len(missing)} of the run's prompts are not in {ds.dataset!r}, e.g. {missing[:3]}")
    m = m.subset([pos[p] for p in ri.prompt_ids])  # the run's prompts, in the run's order
    inputs, meta, heads = load_oof(run, m.prompt_ids)
    if list(meta["models"]) != ri.models:
        raise L.ContractError(f"{run}: {L.OOF_META} heads {meta['models']} are not {L.RUN_INFO}'s {ri.models}")
    if ri.models != spec.models:
        log(f"[stack] note: the run's {len(ri.models)} head logits are stacker inputs for the "
            f"{spec.n_tiers} tiers of spec {spec.name!r}")
    heads_spec = None
    if heads is not None and all(mm in ri.models for mm in spec.models):
        heads_spec = heads[:, [ri.models.index(mm) for mm in spec.models]]
    steps = m.meta["step_type"].tolist() if "step_type" in m.meta.columns else None
    steps = None if steps is None else [s if isinstance(s, str) else None for s in steps]
    inputs.features = featurize(m.prompts, steps).astype(float)
    y, cost, n = m.success, m.cost, m.n_prompts
    out = Path(cfg.out or run / L.STACK_DIR)
    out.mkdir(parents=True, exist_ok=True)
    log(f"[stack] {ds.label}: {n} prompts x {spec.n_tiers} tiers ({spec.name}), {cfg.mode} mode -> {out}")

    folds = kfold(m.prompt_ids, cfg.k, cfg.seed + 13)
    sources = None
    if cfg.mode == "stacked":
        held, held_cost, sources = _fit_stacked(cfg, inputs, y, cost, heads_spec, folds, spec, m, out, ri.models,
                                                log)
        log("[stack] held-out mean AUC: " + ", ".join(f"{k} {v['mean_auc']:.4f}" for k, v in sources.items()
                                                        if isinstance(v, dict) and "mean_auc" in v)
            + f" (best single source: {sources['best_single_source']})")
    else:
        held, held_cost = _fit_heads(cfg, inputs, y, cost, spec, m, out)

    min_tier = floors_for(spec, m.prompts, steps).min_tier
    ctx = RoutingContext(held, held_cost, min_tier)
    fc = frontier_col(spec.models, spec.frontier, y, cost)
    s_front = float(np.nanmean(y[:, fc]))
    target = cfg.target if cfg.target is not None else s_front - cfg.within
    routing: dict[str, Any] = {"mode": cfg.mode, "policy": cfg.policy, "target": target, "delta": cfg.delta}
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg), "mode": cfg.mode, "frontier": spec.models[fc],
                              "frontier_success": s_front,
                              "calibration_held_out": calibration_report(held, y, spec.models),
                              "cost_held_out": {"xgb" if cfg.mode == "stacked" else "mean": cost_errors(held_cost, cost)}}
    if sources is not None:
        report["sources_held_out"] = sources
    if cfg.policy == "target-success":
        # no certified tau -> tau 1.01 (each prompt to its most likely tier): the rule the report measures
        ts = TargetSuccess(target, cfg.delta).fit(ctx, y, cost)
        routing.update({"tau": ts.tau, "guaranteed": ts.guaranteed,
                        "tau_source": f"learn-then-test on the {cfg.mode} layer's held-out calibrated probabilities"})
        if not ts.guaranteed:
            routing["note"] = (f"no tau certified for target {target:.3f} at delta {cfg.delta} on {n} prompts: "
                               f"tau {ts.tau} routes every prompt to its most likely tier")
        report["ltt"] = ts.result.to_dict()
    else:
        grid = TAUS if cfg.policy == "threshold" else lambda_grid(float(np.nanmean(cost)))
        make = Threshold if cfg.policy == "threshold" else Utility
        pts = [(k, *realised(make(k).decide(ctx), y, cost)) for k in grid]
        k = select_match(pts, s_front - cfg.within + cfg.margin)
        routing["tau" if cfg.policy == "threshold" else "lam"] = float(k)
        report["selection"] = {"points": pts, "chosen": k}

    traces = trace_arrays(m)
    do_cascade = (cfg.cascade if cfg.cascade is not None
                  else cfg.mode == "stacked" and bool(cascade_signals(m)))
    if do_cascade:
        routing["cascade"], report["cascade"] = _fit_cascade(cfg, m, y, cost, traces, inputs.features, held, ctx,
                                                             folds, fc, target, spec, out, routing, log)
    rc = RoutingConfig(**routing)
    info = L.StackInfo(run=str(run.resolve()), mode=cfg.mode, spec=spec.to_dict(), dataset=ds,
                       routing=rc.to_dict(), head_models=list(ri.models), prompt_ids=list(m.prompt_ids))
    info.save(out)
    (out / L.STACK_REPORT).write_text(json.dumps(report, indent=1, default=float))
    log(f"[stack] routing: {json.dumps(info.routing)}")
    return {"out": str(out), "routing": info.routing, "report": report, "info": info}


def main(argv: list[str] | None = None) -> int:
    from aco_bert.config import run_verb

    def fit(cfg: StackStageConfig) -> int:
        run_stack(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
        return 0

    return run_verb(fit, StackStageConfig, argv, prog="python -m aco_bert.stack",
                    description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
