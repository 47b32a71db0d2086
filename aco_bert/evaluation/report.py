"""Nested cross-validated report of the whole decision layer against the zero router, on real outcomes.

What it answers: does routing with learned probabilities beat simply picking (or randomly mixing) fixed models,
once every knob is chosen without looking at the prompts it is judged on? Protocol, per outer fold:

1. Probability sources, each fitted on the outer-train prompts only, each also giving *held-out* probabilities
   for those training prompts (inner cross-fit, or the neural run's own out-of-fold logits), all isotonic-
   calibrated on held-out predictions (test side: a map fitted on the training prompts' held-out scores; training
   side: cross-fitted maps, so the knobs below are never chosen on in-sample calibrated probabilities):
   the peer reference routers (:mod:`aco_bert.evaluation.peers`, run by :mod:`aco_bert.evaluation.report_sources`:
   ``tfidf-lr`` on the texts; ``knn``, ``mlp``, ``mf`` on the neural run's embeddings), ``neural-heads`` (the
   neural k-fold run's OOF logits of the tiers), ``stacked`` (the stack stage's stacker: XGBoost over all OOF head logits + PCA'd
   embeddings + handcrafted features + the signals it lists -- TF-IDF-LR logits, kNN neighbour outcomes,
   spec metadata --, cross-fitted within the outer-train prompts by :mod:`aco_bert.signals.fitting`).
2. Expected cost: the tier mean (baseline, neural heads) or the cost regression (stacked), same protocol.
3. Policies: Threshold (tau) and Utility (lambda) swept over fixed grids; the *selected* knob per fold comes from
   the realised success/cost on the outer-train prompts (held-out probabilities, real outcomes) by two rules,
   both fixed in advance of the test fold: ``[match]`` the cheapest knob whose success is at least
   ``frontier_train - within + margin``; ``[savings]`` the best success among knobs whose cost is at most
   ``(1 - min_savings) x frontier_train cost``. Their no-router counterparts are ``zero-router [match]`` (cheapest
   fixed model within ``within`` of the frontier on the training prompts) and ``zero-router mix [savings]``
   (random mixing of the two training-hull models at that budget). Target-success (Learn-then-Test) certifies a
   tau on the same data.
   The cascade (:mod:`aco_bert.evaluation.report_cascade`: ex-ante router or a ladder's cheap tier first, a
   verifier of the run's trace / response / answer agreement, escalation along a ladder) chooses its knobs the
   same way, with verifier scores from an inner cross-fit, plus a Learn-then-Test row and a budget curve.
4. The outer-test decisions of every fold are pooled and replayed by :mod:`aco_bert.evaluation.replay`;
   :mod:`aco_bert.evaluation.report_summary` condenses them per source and curve (AUC, AIQ, APGR, CPT) next to the
   zero-router hull's and the oracle's AIQ.

Prompts: with a neural run, exactly the run's own (its ``run.json``), never a fresh subsample (see
:mod:`aco_bert.evaluation.report_inputs`). Outer folds follow the neural run's ``fold`` assignment when one is
given (so a prompt's head logits came from a model that never saw it, and the stacker of that fold is fitted on
logits of the other folds only); with ``split: given`` the dataset's own train/test split is the single outer fold.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aco_bert.decision.calibration import IsotonicCalibrator
from aco_bert.evaluation.bootstrap import BootstrapConfig, aiq_bootstrap
from aco_bert.evaluation.calibration import calibration_report, plot_reliability
from aco_bert.evaluation.metrics.core import realised
from aco_bert.evaluation.report_sources import cross_calibrate, peer_source, plan_peers
from aco_bert.evaluation.report_summary import summarize_sources
from aco_bert.evaluation.selection import RULES, TAUS, frontier_col, lambda_grid, select_match, select_savings
from aco_bert.decision.cascade_search import ACCEPTS, FIRST_TAUS
from aco_bert.decision.verifier import VerifierConfig, trace_arrays
from aco_bert.decision.cost_model import CostModel, CostModelConfig, cost_errors, cross_fit_cost
from aco_bert.artifacts.jsonio import write_json
from aco_bert.policies import RoutingContext, TargetSuccess, Threshold, Utility, floors_for
from aco_bert.data.splits import Fold, kfold
from aco_bert.decision.stacker import (
    StackerConfig,
    StackInputs,
    fit_stack,
    standardize_by_fold,
)


@dataclass
class RouterEvalConfig:
    """Every knob of the nested report (YAML keys = ``aco-bert report`` flags)."""

    dataset: str | None = None  # dataset name or path; default: the neural run's (run.json), else swebench-verified
    name: str | None = None  # dataset name shown in report.md / report.json (default: the registry name or path)
    cost_metric: str = "usd"  # 'usd' or 'share' (RouteLLM's strong-call share: frontier 1, others 0, before any choice)
    spec: str | None = None  # router spec name or YAML path; default: the neural run's whole spec, else the dataset's
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {with_responses: true}
    price_provider: str | None = None  # cost from tokens: LiteLLM provider choosing between keys of different prices
    oof_run: str | None = None  # neural k-fold run dir (oof.safetensors + oof_meta.json); its prompts are evaluated
    split: str = "kfold"  # "kfold" (outer K-fold; the neural run's folds when given) or "given" (train/test meta)
    k_outer: int = 5
    k_inner: int = 5
    seed: int = 0
    within: float = 0.01  # the success gap to the frontier a selected policy aims for
    margin: float = 0.005  # safety margin added to that target when selecting on training prompts
    min_savings: float = 0.40  # rule "savings": best training success among knobs saving at least this much
    delta: float = 0.1  # Learn-then-Test risk level
    normalize_logits: bool = True  # z-score neural OOF logits within each neural fold (see standardize_by_fold)
    tfidf: bool = True
    # peer reference routers on the neural run's embeddings (aco_bert.evaluation.peers; [] = none, skipped
    # without an --oof_run); on the command line `--peers "[knn, mf]"`, `--peers "[]"`
    peers: list[str] = field(default_factory=lambda: ["knn", "mlp", "mf"])
    floors: bool = True  # apply the spec's floors (detected domains -> min tier); off to measure routing alone
    cascade: bool | None = None  # None: on when the data carry responses or api_calls traces
    # accept thresholds of the verifier (0: never escalate, so the curve reaches the first policy's own points)
    cascade_accepts: list[float] = field(default_factory=lambda: list(ACCEPTS))
    cascade_taus: list[float] = field(default_factory=lambda: list(FIRST_TAUS))  # ex-ante first-tier taus
    # Ablation: probability sources made from the TRUE outcomes plus noise, at these per-tier AUCs (binormal
    # scores, isotonic-calibrated on the training folds like every other source). Not a router: it measures how
    # much signal the nested policies need before they beat the zero-router hull.
    signal_ablation: list[float] = field(default_factory=list)
    max_prompts: int | None = None  # seeded subsample for quick runs (data.splits.subsample: the rule train uses)
    out_dir: str | None = None  # write report.json, report.md and the PNGs here
    json: str | None = None  # write the JSON report here (default: <out_dir>/report.json)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)  # AIQ-difference intervals
    stacker: StackerConfig = field(default_factory=StackerConfig)
    signal_options: dict[str, dict] = field(default_factory=dict)  # per-signal config, as the stack stage's
    cost: CostModelConfig = field(default_factory=CostModelConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)

    def __post_init__(self) -> None:
        from aco_bert.evaluation.report_sources import peer_names

        self.peers = peer_names(self.peers)  # an unknown peer is refused here, naming the known ones
        from aco_bert.evaluation.metrics.cost_metric import check_cost_metric

        check_cost_metric(self.cost_metric)


def _hull_mix(fixed: Sequence[tuple[int, float, float]], max_cost: float, n: int, rng: np.random.Generator
              ) -> np.ndarray:
    """Tiers for ``n`` prompts mixing the two zero-router hull vertices (on training points) around ``max_cost``."""
    from aco_bert.evaluation.metrics.core import upper_hull

    cs = np.array([c for _, _, c in fixed])
    ss = np.array([s for _, s, _ in fixed])
    hx, hy = upper_hull(cs, ss)
    tier_at = {(float(c), float(s)): t for t, s, c in fixed}
    verts = [tier_at[(float(x), float(yv))] for x, yv in zip(hx, hy)]
    if max_cost <= hx[0]:
        return np.full(n, verts[0])
    if max_cost >= hx[-1]:
        return np.full(n, verts[-1])
    j = int(np.searchsorted(hx, max_cost))  # hx[j-1] < max_cost <= hx[j]
    frac_hi = (max_cost - hx[j - 1]) / (hx[j] - hx[j - 1])
    return np.where(rng.random(n) < frac_hi, verts[j], verts[j - 1])


def _outer_folds(cfg: RouterEvalConfig, m, neural_fold: np.ndarray | None, dataset: str) -> list[Fold]:
    if cfg.split == "given":
        if "split" not in m.meta.columns:
            raise ValueError(f"dataset {dataset!r} has no train/test split in its prompt metadata")
        sp = m.meta["split"].astype(str).to_numpy()
        return [Fold(0, np.flatnonzero(sp == "train"), np.flatnonzero(sp == "test"))]
    if cfg.split != "kfold":
        raise ValueError(f"split must be 'kfold' or 'given', got {cfg.split!r}")
    if neural_fold is not None:
        ks = sorted(set(neural_fold.tolist()))
        return [Fold(i, np.flatnonzero(neural_fold != k), np.flatnonzero(neural_fold == k)) for i, k in enumerate(ks)]
    return kfold(m.prompt_ids, cfg.k_outer, cfg.seed)


def _inner(ids: list[str], train: np.ndarray, k: int, seed: int) -> list[Fold]:
    """Inner folds over the outer-train prompts, as positions *into* ``train`` (local indices)."""
    return kfold([ids[i] for i in train], min(k, len(train)), seed)


def report_json_path(cfg: RouterEvalConfig) -> Path | None:
    """Where the JSON report goes: ``cfg.json``, else ``<out_dir>/report.json``, else nowhere."""
    if cfg.json:
        return Path(cfg.json)
    return Path(cfg.out_dir) / "report.json" if cfg.out_dir else None


def run_router_eval(cfg: RouterEvalConfig, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the nested evaluation; writes report.json (``cfg.json``, else ``<out_dir>/report.json``), and
    report.md / PNGs to ``cfg.out_dir`` when set."""
    from aco_bert.evaluation.plots import plot_nested_curves
    from aco_bert.evaluation.replay import evaluate_policies
    from aco_bert.evaluation.report_inputs import load_report_data
    from aco_bert.decision.verifier import cascade_signals
    from aco_bert.evaluation.report_cascade import CascadeStudy
    from aco_bert.evaluation.report_md import markdown
    from aco_bert.signals.fitting import cross_fit_blocks, fold_blocks, signal_data, usable_signals
    from aco_bert.signals.handcrafted import featurize

    t_start = time.time()
    from aco_bert.data.costs import with_price_provider

    data = load_report_data(cfg.dataset, cfg.spec, cfg.data_dir, cfg.oof_run, cfg.max_prompts, cfg.seed, log,
                            with_price_provider(cfg.dataset_options, cfg.price_provider))
    spec, m, dataset = data.spec, data.matrix, data.dataset
    dataset = cfg.name or dataset
    ids, n, n_t = m.prompt_ids, m.n_prompts, len(spec.models)
    frontier = spec.frontier
    if cfg.cost_metric == "share":  # the 0/1 strong-call cost replaces USD before anything is fitted or chosen
        from aco_bert.evaluation.metrics.cost_metric import share_cost, strong_column

        strong = strong_column(spec.models, m.cost, spec.frontier)
        frontier, m = spec.models[strong], dataclasses.replace(m, cost=share_cost(m.cost, strong))
    y, cost = m.success, m.cost
    if np.isnan(cost).all(axis=0).any():
        from aco_bert.data.costs import require_costs

        require_costs(m, spec.models, dataset)  # names the spec tiers without any cost and how to derive it
    steps = m.meta["step_type"].tolist() if "step_type" in m.meta.columns else None
    steps = None if steps is None or all(not isinstance(s, str) for s in steps) else \
        [s if isinstance(s, str) else None for s in steps]
    x_feat = featurize(m.prompts, steps).astype(float)
    min_tier = floors_for(spec, m.prompts, steps).min_tier if cfg.floors else np.zeros(m.n_prompts, dtype=int)
    log(f"[router-eval] {dataset}: {n} prompts x {n_t} tiers ({spec.name}); "
        f"{int((min_tier > 0).sum())} prompts with a floor")
    from aco_bert.evaluation.metrics.complete_case import complete_case

    # frontier, zero router, hull and every knob are chosen, and every policy replayed, on the prompts every
    # candidate tier ran (the sources still learn from every known outcome)
    cc = complete_case(y, spec.models, min_tier)
    y_sel, cost_sel = (np.where(cc.keep[:, None], a, np.nan) for a in (y, cost))
    if not cc.complete:
        log(f"[router-eval] {cc.rule()}")

    neural = None
    if cfg.oof_run:
        inputs_n, meta_n, heads_cost = data.load_oof(ids)  # a pooled run's member: its rows, member names
        if cfg.normalize_logits:
            inputs_n.logits = standardize_by_fold(inputs_n.logits, inputs_n.fold)
        run_models = list(meta_n["models"])
        missing = [mm for mm in spec.models if mm not in run_models]
        cols = None if missing else [run_models.index(mm) for mm in spec.models]
        neural = {"inputs": inputs_n, "cols": cols, "heads_cost": heads_cost, "meta": meta_n,
                  "models": run_models}
        log(f"[router-eval] neural OOF run {cfg.oof_run}: {len(run_models)} tiers, mean AUC "
            f"{meta_n.get('mean_auc')}; spec tiers {'all present' if cols else 'missing: ' + str(missing)}")
    folds = _outer_folds(cfg, m, None if neural is None or cfg.split == "given" else neural["inputs"].fold, dataset)
    traces = trace_arrays(m)
    do_cascade = cfg.cascade if cfg.cascade is not None else bool(cascade_signals(m))

    emb = neural["inputs"].embeddings if neural is not None else None
    peer_srcs, peer_notes = plan_peers(cfg.peers, cfg.tfidf, emb, log)
    srcs = list(peer_srcs)
    if neural is not None and neural["cols"] is not None:
        srcs.append("neural-heads")
    srcs.append("stacked")
    synth = {}
    if cfg.signal_ablation:
        from scipy.stats import norm

        rng_s = np.random.default_rng(cfg.seed + 99)
        for a in cfg.signal_ablation:
            mu = math.sqrt(2) * norm.ppf(a)  # binormal: AUC = Phi(mu / sqrt(2))
            lab = np.where(np.isnan(y), rng_s.random(y.shape) < 0.5, y >= 0.5)
            synth[f"ablation: outcome+noise AUC {a:.2f}"] = mu * lab + rng_s.normal(size=y.shape)
        srcs += list(synth)
    scale = float(np.nanmean(cost[folds[0].train]))
    grids = {"threshold": TAUS, "utility": lambda_grid(scale)}
    make = {"threshold": Threshold, "utility": Utility}

    probs = {s: np.full((n, n_t), np.nan) for s in srcs}
    exp_c = {s: np.full((n, n_t), np.nan) for s in srcs}
    raw_stacked = np.full((n, n_t), np.nan)
    curve_tiers = {(s, f): {k: np.zeros(n, dtype=int) for k in g} for s in srcs for f, g in grids.items()}
    selected = {(s, f, r): np.zeros(n, dtype=int) for s in srcs for f in grids for r in RULES}
    chosen_knobs: dict[str, list] = {f"{s}/{f}/{r}": [] for s in srcs for f in grids for r in RULES}
    ltt_tiers = np.zeros(n, dtype=int)
    ltt_info: list[dict] = []
    zero_nested = np.zeros(n, dtype=int)
    zero_mix = np.zeros(n, dtype=int)
    rng_mix = np.random.default_rng(cfg.seed + 7)
    cost_pred_model = np.full((n, n_t), np.nan)
    cost_pred_mean = np.full((n, n_t), np.nan)
    casc = CascadeStudy(m, y, cost, traces, x_feat, min_tier, spec.models, cfg.verifier, cfg.cascade_accepts,
                        cfg.cascade_taus, cfg.within, cfg.delta) if do_cascade else None

    stack_in = StackInputs(logits=None if neural is None else neural["inputs"].logits, embeddings=emb,
                           features=x_feat)
    sig_data = signal_data(m, spec, emb)
    signals = usable_signals([s for s in cfg.stacker.signals if cfg.stacker.uses(s)], sig_data, cfg.signal_options,
                             log)
    stack_sources: list[list] = []  # per outer fold: the stacker's per-tier single source (name, AUC, ...)
    # k-fold: each prompt's signal block from a signal fitted on the other outer folds, exactly as the neural heads'
    # logits (a test prompt's block never saw it; a training prompt's block, like its head logit, came from a fit
    # on 80 % of the prompts). Cross-fitting again inside each outer-train set gave the training rows blocks from
    # 64 %-data fits, next to heads from 80 %-data fits: the stacker then under-rated data-hungry signals (TF-IDF:
    # 0.02 AUC lower on the training rows than on the test rows of BFCL) and started from the heads where TF-IDF was
    # better. With ``split: given`` the blocks are cross-fitted within the train split (the heads' protocol there).
    shared_blocks = cross_fit_blocks(signals, sig_data, y, cost, folds, spec.models) \
        if signals and cfg.split == "kfold" else None
    for f in folds:
        tr, te = np.asarray(f.train), np.asarray(f.test)
        assert not np.intersect1d(tr, te).size, "outer train and test overlap"
        inner = _inner(ids, tr, cfg.k_inner, cfg.seed + 1 + f.index)
        fc = frontier_col(spec.models, frontier, y_sel[tr], cost_sel[tr])
        s_front = float(np.nanmean(y_sel[tr, fc]))
        target = s_front - cfg.within + cfg.margin
        max_cost = (1 - cfg.min_savings) * float(np.nanmean(cost_sel[tr, fc]))

        def pick(points, rule):
            return select_match(points, target) if rule == "match" else select_savings(points, max_cost)
        log(f"[router-eval] fold {f.index}: train {len(tr)} test {len(te)}; train frontier "
            f"{spec.models[fc]} {100 * s_front:.1f} % -> selection target {100 * target:.1f} %")
        # zero router chosen on the training prompts: cheapest fixed tier within `within` of the frontier
        fixed = [(t, *realised(np.full(len(tr), t), y_sel[tr], cost[tr])) for t in range(n_t)]
        zt = select_match([(t, s, c) for t, s, c in fixed], s_front - cfg.within)
        zero_nested[te] = np.maximum(zt, min_tier[te])
        # zero-router *mix* at the savings rule's budget: random mixing of the two hull vertices around it
        zero_mix[te] = np.maximum(_hull_mix(fixed, max_cost, len(te), rng_mix), min_tier[te])

        # --- expected cost -----------------------------------------------------------------------------------
        mean_c = np.nanmean(cost[tr], axis=0)
        cost_mean_tr, cost_mean_te = np.tile(mean_c, (len(tr), 1)), np.tile(mean_c, (len(te), 1))
        cost_pred_mean[te] = cost_mean_te
        heads = neural["heads_cost"] if neural is not None else None
        heads_in = None if heads is None else np.clip(heads, 0, None)  # USD, as the runtime feeds them
        sub = lambda a, i: None if a is None else a[i]  # noqa: E731
        cm = CostModel.fit(cost[tr], x_feat[tr], sub(emb, tr), sub(heads_in, tr), cfg.cost)
        cost_model_te = cm.predict(len(te), x_feat[te], sub(emb, te), sub(heads_in, te))
        cost_pred_model[te] = cost_model_te
        cost_model_tr = cross_fit_cost(cost[tr], inner, x_feat[tr], sub(emb, tr), sub(heads_in, tr), cfg.cost)

        # --- probability sources -----------------------------------------------------------------------------
        src_tr: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        src_te: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for s in peer_srcs:  # fitted on the outer-train prompts only; tier-mean expected cost like tfidf always had
            t_peer = time.time()
            p_tr, p_te = peer_source(s, m.prompts, emb, y, tr, te, inner, cfg.seed)
            src_tr[s], src_te[s] = (p_tr, cost_mean_tr), (p_te, cost_mean_te)
            log(f"[router-eval] fold {f.index}: peer {s} {time.time() - t_peer:.1f} s")
        if "neural-heads" in srcs:
            lg = neural["inputs"].logits[:, neural["cols"]]
            cal = IsotonicCalibrator.fit(lg[tr], y[tr])  # train logits are out-of-fold w.r.t. the neural run
            # tier-mean cost: the cost heads are scored separately (diagnostics), they lose to the mean here
            src_tr["neural-heads"] = (cross_calibrate(lg[tr], y[tr], inner), cost_mean_tr)
            src_te["neural-heads"] = (cal(lg[te]), cost_mean_te)
        for name, sc in synth.items():
            cal = IsotonicCalibrator.fit(sc[tr], y[tr])
            src_tr[name] = (cross_calibrate(sc[tr], y[tr], inner), cost_mean_tr)
            src_te[name] = (cal(sc[te]), cost_mean_te)
        in_tr, in_te = stack_in.subset(tr), stack_in.subset(te)
        if shared_blocks is not None:  # the stage's signals (aco_bert.signals.fitting), see shared_blocks
            in_tr.signals, in_te.signals = {k: v[tr] for k, v in shared_blocks.items()}, \
                {k: v[te] for k, v in shared_blocks.items()}
        elif signals:
            in_tr.signals, in_te.signals = fold_blocks(signals, sig_data, y, cost, tr, te, inner, spec.models)
        fs = fit_stack(in_tr, y[tr], cfg.stacker, tiers=spec.models, prompt_ids=[ids[i] for i in tr])
        stack_sources.append(fs.stacker.sources)
        raw_te = fs.stacker.predict(in_te)
        raw_stacked[te] = raw_te
        src_tr["stacked"] = (cross_calibrate(fs.inner_oof, y[tr], inner), cost_model_tr)
        src_te["stacked"] = (fs.calibrator(raw_te), cost_model_te)

        for s in srcs:
            p_tr, c_tr = src_tr[s]
            p_te, c_te = src_te[s]
            probs[s][te], exp_c[s][te] = p_te, c_te
            ctx_tr = RoutingContext(p_tr, c_tr, min_tier[tr])
            ctx_te = RoutingContext(p_te, c_te, min_tier[te])
            for fam, grid in grids.items():
                pts = []
                for k in grid:
                    pol = make[fam](k)
                    pts.append((k, *realised(pol.decide(ctx_tr), y_sel[tr], cost[tr])))
                    curve_tiers[(s, fam)][k][te] = pol.decide(ctx_te)
                for rule in RULES:
                    k_sel = pick(pts, rule)
                    chosen_knobs[f"{s}/{fam}/{rule}"].append(k_sel)
                    selected[(s, fam, rule)][te] = make[fam](k_sel).decide(ctx_te)
            if s == "stacked":
                # the rule a bundle ships (aco_bert.decision.stage): no certified tau -> most likely tier
                ts = TargetSuccess(target=s_front - cfg.within, delta=cfg.delta).fit(ctx_tr, y[tr], cost[tr])
                ltt_tiers[te] = ts.decide(ctx_te)
                ltt_info.append({"fold": f.index, **ts.to_dict(), "n_certified": ts.result.n_certified})

        if casc is not None:  # --- cascade (aco_bert.evaluation.report_cascade) ---------------------------------
            casc.fold(tr, te, inner, *src_tr["stacked"], *src_te["stacked"], fc, s_front, target, max_cost)
        log(f"[router-eval] fold {f.index} done ({time.time() - t_start:.0f} s)")

    # --- restrict to the prompts that were in an outer test fold (all of them with k-fold; the test split with
    # split: given) -- train-split prompts never get a test decision and must not be replayed ---------------------
    ev = np.sort(np.concatenate([np.asarray(f.test) for f in folds]))
    ev = ev[cc.keep[ev]]  # the complete-case rule (see cc above)
    if len(ev) < n:
        m, y, cost, min_tier = m.subset(ev), y[ev], cost[ev], min_tier[ev]
        for d in (probs, exp_c):
            for k in d:
                d[k] = d[k][ev]
        raw_stacked, cost_pred_mean, cost_pred_model = raw_stacked[ev], cost_pred_mean[ev], cost_pred_model[ev]
        zero_nested, zero_mix, ltt_tiers = zero_nested[ev], zero_mix[ev], ltt_tiers[ev]
        selected = {k: v[ev] for k, v in selected.items()}
        curve_tiers = {k: {kk: vv[ev] for kk, vv in v.items()} for k, v in curve_tiers.items()}
        if casc is not None:
            casc.restrict(ev)
        if neural is not None and neural["heads_cost"] is not None:
            neural["heads_cost"] = neural["heads_cost"][ev]
        log(f"[router-eval] evaluating the {len(ev)} outer-test prompts of {n}")
    n = len(ev)

    # --- pooled replay through the evaluator --------------------------------------------------------------------
    decisions = {"zero-router [match]": zero_nested, "zero-router mix [savings]": zero_mix}
    for s in srcs:
        for fam in grids:
            for rule in RULES:
                decisions[f"{s} {fam} [{rule}]"] = selected[(s, fam, rule)]
    decisions["stacked target-success (LTT)"] = ltt_tiers
    decision_curves = {f"{s} {fam}": [(k, t) for k, t in curve_tiers[(s, fam)].items()]
                       for s in srcs for fam in grids}
    report = evaluate_policies(m, spec.models, decisions=decisions, decision_curves=decision_curves,
                               min_tier=min_tier, frontier=frontier, within=cfg.within, seed=cfg.seed,
                               dataset=dataset, cost_metric=cfg.cost_metric)  # share: m.cost is already 0/1
    if not cc.complete:
        report.zero_router_rule, report.n_prompts_total = cc.rule(), cc.n_total
        report.notes.insert(0, cc.rule())
    fcost = report.get("always-frontier").cost_per_task
    if casc is not None:
        casc.add_to(report, fcost, n_t)

    # --- diagnostics ---------------------------------------------------------------------------------------------
    from aco_bert.decision.conformal import coverage_over_splits
    from aco_bert.evaluation.metrics.core import hull_value, mean_auc, per_tier_auc

    hx, hy = report.curves["zero-router"].hull()
    diag: dict[str, Any] = {"auc": {}, "calibration": {}}
    for s in srcs:
        a = per_tier_auc(y, probs[s])
        diag["auc"][s] = {"mean": mean_auc(a), "per_tier": [None if not math.isfinite(v) else float(v) for v in a]}
        diag["calibration"][s] = calibration_report(probs[s], y, spec.models)
    diag["calibration"]["stacked (uncalibrated)"] = calibration_report(raw_stacked, y, spec.models)
    diag["cost_model"] = {"mean": cost_errors(cost_pred_mean, cost), "xgb": cost_errors(cost_pred_model, cost)}
    if neural is not None and neural["heads_cost"] is not None and neural["cols"] is not None:
        diag["cost_model"]["neural cost heads"] = cost_errors(np.clip(neural["heads_cost"][:, neural["cols"]], 0, None),
                                                             cost)
    for k in ("mean", "xgb", "neural cost heads"):
        if k in diag["cost_model"]:
            for kk in ("mae_per_tier", "log_error_per_tier"):
                diag["cost_model"][k].pop(kk, None)
    if casc is not None:
        diag["cascade"] = casc.diagnostics()
        diag["verifier_auc"] = diag["cascade"]["verifier_auc_first"]["per_tier"]
    diag["chosen_knobs"] = chosen_knobs
    diag["stacker"] = {"signals": sorted(signals), "sources": [  # per outer fold and tier: where the stack starts
        [None if c is None else {"source": c["source"], "auc": c["auc"]} for c in fold] for fold in stack_sources]}
    diag["ltt"] = ltt_info
    ctx_all = RoutingContext(probs["stacked"], exp_c["stacked"], min_tier)
    s_front_all = report.get("always-frontier").success
    diag["conformal_coverage"] = []
    for tgt in sorted({round(s_front_all - cfg.within, 4), round(s_front_all - 0.04, 4)}, reverse=True):
        diag["conformal_coverage"].append(coverage_over_splits(
            ctx_all, y, cost, target=tgt, delta=cfg.delta, n_splits=200, seed=cfg.seed,
            fallback_tier=spec.models.index(report.frontier)))
    rows = []
    for p in report.policies:
        if p.kind == "fixed":
            continue
        h = float(hull_value(hx, hy, p.cost_per_task))
        rows.append({**p.to_dict(), "hull_success_at_cost": h, "vs_hull_pts": 100 * (p.success - h)})
    out = {
        "config": dataclasses.asdict(cfg), "dataset": dataset, "spec": spec.name, "models": spec.models,
        "cost_metric": cfg.cost_metric, "zero_router_rule": report.zero_router_rule,
        "n_prompts": n, "n_folds": len(folds), "sources": srcs, "table": rows,
        "evaluator": report.to_dict(), "diagnostics": diag, "seconds": time.time() - t_start,
        "neural_run": None if neural is None else {"dir": cfg.oof_run, "mean_auc": neural["meta"].get("mean_auc"),
                                                    "config": neural["meta"].get("config")},
        "peers": peer_srcs, "peer_notes": peer_notes,
    }
    # paired bootstrap over the evaluated prompts: every curve against the hull, the stack against every other
    if "zero-router" in report.metrics and cfg.bootstrap.n_boot:
        out["aiq_ci"] = aiq_bootstrap(
            y, cost, {k: [t for _, t in v] for k, v in decision_curves.items()}, min_tier,
            spec.models.index(report.cheapest), spec.models.index(report.frontier),
            pairs=[(f"stacked {fam}", f"{s} {fam}") for s in srcs if s != "stacked" for fam in grids], cfg=cfg.bootstrap)
    out |= summarize_sources(srcs, peer_srcs, report.metrics, rows, diag["auc"], RULES, out.get("aiq_ci"))
    out["markdown"] = markdown(out)
    json_path = report_json_path(cfg)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, out, indent=1)
    if cfg.out_dir:
        od = Path(cfg.out_dir)
        od.mkdir(parents=True, exist_ok=True)
        (od / "report.md").write_text(out["markdown"])
        plot_nested_curves(report, od / "cost_quality.png", title=f"{dataset} ({spec.name}): nested CV, {n} prompts",
                           peers=peer_srcs)
        plot_reliability(probs["stacked"], y, od / "reliability_stacked.png", spec.models,
                         title="stacked + isotonic, pooled outer-test predictions")
        plot_reliability(raw_stacked, y, od / "reliability_stacked_raw.png", spec.models,
                         title="stacked before calibration, pooled outer-test predictions")
    return out
