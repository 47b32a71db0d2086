"""The torch-free routing runtime: load a bundle, turn prompts into routing decisions on a CPU in milliseconds.

    from aco_bert.runtime import Router
    router = Router.load("bundles/swebench")          # verifies manifest.json (sha256 of every file)
    d = router.route("Fix the crash in ...", step_type="edit", budget=0.5)
    d.tier, d.model, d.probs, d.expected_cost, d.reasons

Pipeline per batch: tokenise (head+tail truncation, :mod:`aco_bert.model.tokenization`) -> ONNX Runtime encoder+heads
(``logits``, ``pooled``[, ``cost``]) -> handcrafted features (:mod:`aco_bert.signals.handcrafted`) -> stacker
(:mod:`aco_bert.decision.stacker`, "stacked" mode) or the heads' sigmoid ("heads" mode) -> isotonic calibration ->
expected cost per tier (:mod:`aco_bert.decision.cost_model`) -> safety floors (:func:`aco_bert.policies.floors.floors_for`) ->
policy (:mod:`aco_bert.policies.base`). Which mode a bundle runs is decided by what it contains (``stacker/``).

Why torch-free: a router sits in front of every LLM call, so it must start fast and stay small; the process
imports onnxruntime, tokenizers, xgboost, numpy and yaml (plus pandas through :mod:`aco_bert.data.schema`) and
never torch or transformers (a test checks ``sys.modules``). The same :meth:`Router.decide_from_outputs` is fed by
torch at export time, which is how the exporter proves ORT and torch route the same prompts the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aco_bert.artifacts import bundle as B
from aco_bert.types import BundleError, Decision, Escalation, RoutingInputError
from aco_bert.spec import RouterSpec

MODES = ("stacked", "heads")
POLICIES = ("threshold", "target-success", "utility", "budget")
THREADS_ENV = "ACO_BERT_ORT_THREADS"
SPIN_ENV = "ACO_BERT_ORT_SPIN"
DEFAULT_MAX_BATCH = 64
# ONNX Runtime re-fuses Add + LayerNormalization into its SkipLayerNormalization contrib op when it loads a model;
# on this CPU (onnxruntime 1.32, AVX-512) that kernel took 177 us per call where Add + LayerNormalization take
# 33 us (MiniLM, 87 tokens, 1 thread): ~1 ms of a 3-layer int8 forward. The exporter leaves it unfused too.
DISABLED_ORT_OPTIMIZERS = ("SkipLayerNormFusion",)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def make_policy(cfg: dict[str, Any]):
    """A :class:`aco_bert.policies.base.Policy` from a router.yaml ``routing`` mapping (``policy`` + its knob)."""
    from aco_bert.policies.base import Budget, Threshold, Utility

    name = cfg.get("policy", "threshold")
    if name in ("threshold", "target-success"):
        if cfg.get("tau") is None:
            raise BundleError(f"routing policy {name!r} needs a tau")
        return Threshold(float(cfg["tau"]), name=name)
    if name == "utility":
        if cfg.get("lam") is None:
            raise BundleError("routing policy 'utility' needs lam")
        return Utility(float(cfg["lam"]))
    if name == "budget":
        return Budget(None if cfg.get("budget") is None else float(cfg["budget"]))
    raise BundleError(f"unknown routing policy {name!r}; expected one of {POLICIES}")


class TreeEnsemble:
    """Several XGBoost boosters (one per tier) evaluated together in numpy: (n, F) inputs -> (n, K) predictions.

    Why: a stacked bundle calls 2 boosters per tier per request (stacker + cost model); through XGBoost's Python
    API each call costs ~0.1 ms of overhead even for 30 depth-2 trees, i.e. milliseconds per decision at 24 tiers.
    Here every tree of every booster is one flat node array and a batch descends all trees at once.

    Exactness: splits are XGBoost's (float32 ``x < threshold``, missing -> the node's default direction); the
    base margin is read off XGBoost itself (its margin minus the tree sum on a probe row), and :meth:`check`
    compares against ``inplace_predict`` on probe rows at load -- any disagreement (an unsupported model type,
    a format change) makes the caller fall back to XGBoost.
    """

    SUPPORTED = {"binary:logistic": "sigmoid", "reg:squarederror": "identity", "reg:linear": "identity"}

    def __init__(self, boosters: Sequence, n_features: int):
        import json as _json

        feat, thr, left, right, dleft, val, starts, roots = [], [], [], [], [], [], [], []
        self.links: list[str] = []
        depth, total, n_trees = 1, 0, 0
        for b in boosters:
            m = _json.loads(b.save_raw("json"))
            learner = m["learner"]
            gb = learner["gradient_booster"]
            obj = learner["objective"]["name"]
            if gb.get("name") != "gbtree" or obj not in self.SUPPORTED:
                raise NotImplementedError(f"booster {gb.get('name')}/{obj}")
            self.links.append(self.SUPPORTED[obj])
            starts.append(n_trees)
            for tree in gb["model"]["trees"]:
                if any(tree.get("split_type", [])) or tree.get("categories"):
                    raise NotImplementedError("categorical splits")
                lc = np.asarray(tree["left_children"], dtype=np.int64)
                rc = np.asarray(tree["right_children"], dtype=np.int64)
                n = len(lc)
                leaf = lc == -1
                idx = np.arange(n)
                feat.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
                cond = np.asarray(tree["split_conditions"], dtype=np.float32)
                thr.append(np.where(leaf, np.float32(0), cond))
                val.append(np.where(leaf, cond, np.float32(0)))
                left.append(np.where(leaf, idx, lc) + total)  # a leaf points at itself: fixed-depth descent
                right.append(np.where(leaf, idx, rc) + total)
                dleft.append(np.asarray(tree["default_left"], dtype=bool))
                roots.append(total)
                depth = max(depth, self._depth(lc, rc))
                total += n
                n_trees += 1
        self.n_features = int(n_features)
        self.feat, self.thr = np.concatenate(feat), np.concatenate(thr).astype(np.float32)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.dleft, self.val = np.concatenate(dleft), np.concatenate(val).astype(np.float32)
        self.roots, self.starts, self.depth = np.asarray(roots), np.asarray(starts), depth
        self.n_trees = n_trees
        # child[2 * node + go_left]: one gather per level instead of where(go_left, left[node], right[node])
        self.child = np.stack([self.right, self.left], axis=1).ravel()
        self.sigmoid_cols = np.array([k for k, link in enumerate(self.links) if link == "sigmoid"], dtype=np.intp)
        self.offset = np.zeros(len(boosters))
        probe = self._probe(4)
        margin = np.stack([b.inplace_predict(probe, predict_type="margin") for b in boosters], axis=1)
        self.offset = (margin - self.margins(probe)).mean(axis=0)

    @staticmethod
    def _depth(lc: np.ndarray, rc: np.ndarray) -> int:
        d, frontier = 0, [0]
        while frontier:
            nxt = [c for i in frontier for c in (lc[i], rc[i]) if c != -1]
            d, frontier = d + (1 if nxt else 0), nxt
        return max(d, 1)

    def _probe(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((n, self.n_features)) * 2).astype(np.float32)
        x[1, ::3] = np.nan
        # rows that sit right at split thresholds exercise both sides of many splits
        used = self.feat[self.left != np.arange(len(self.left))]
        cut = self.thr[self.left != np.arange(len(self.left))]
        if used.size:
            x[2, used] = cut
            x[3, used] = np.nextafter(cut, np.float32(-np.inf))
        return x

    def margins(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        node = np.broadcast_to(self.roots, (n, self.n_trees)).copy()
        if x.ndim == 2 and x.shape[1] == self.n_features:
            # flat gathers (take) on the row-major input: same nodes as the 2-D indexing below, fewer numpy calls
            flat, base = x.ravel(), np.arange(0, n * self.n_features, self.n_features)[:, None]
            for _ in range(self.depth):
                v = flat.take(self.feat.take(node) + base)
                go_left = np.where(np.isnan(v), self.dleft.take(node), v < self.thr.take(node))
                node = self.child.take(2 * node + go_left)
        else:
            rows = np.arange(n)[:, None]
            for _ in range(self.depth):
                v = x[rows, self.feat[node]]
                go_left = np.where(np.isnan(v), self.dleft[node], v < self.thr[node])
                node = np.where(go_left, self.left[node], self.right[node])
        vals = self.val.take(node).astype(np.float64)
        return np.add.reduceat(vals, self.starts, axis=1) + self.offset

    def predict(self, x: np.ndarray) -> np.ndarray:
        m = self.margins(x)
        if self.sigmoid_cols.size:  # all sigmoid columns in one call (elementwise: the same numbers per column)
            k = self.sigmoid_cols
            m[:, k] = 1.0 / (1.0 + np.exp(-m[:, k]))
        return m

    def check(self, boosters: Sequence, tol: float = 1e-5) -> float:
        """Largest |difference| to XGBoost's own predictions on probe rows (callers fall back above ``tol``)."""
        x = np.concatenate([self._probe(4), np.random.default_rng(1).uniform(-5, 5, (12, self.n_features))
                            .astype(np.float32)])
        want = np.stack([b.inplace_predict(x) for b in boosters], axis=1)
        return float(np.max(np.abs(self.predict(x) - want)))


def _fast_forest(boosters: list, n_features: int) -> TreeEnsemble | None:
    """A :class:`TreeEnsemble` over the non-None ``boosters`` if it reproduces XGBoost, else None."""
    live = [b for b in boosters if b is not None]
    if not live or os.environ.get("ACO_BERT_NO_FAST_TREES"):
        return None
    try:
        te = TreeEnsemble(live, n_features)
        return te if te.check(live) <= 1e-5 else None
    except Exception:  # an optimisation only: anything unexpected -> XGBoost's own predict
        return None


@dataclass
class Encoded:
    """A tokenised batch: the ONNX feed plus per-prompt token counts (after truncation) and truncation flags."""

    feed: dict[str, np.ndarray]
    n_tokens: list[int]
    n_tokens_full: list[int]

    @property
    def truncated(self) -> list[bool]:
        return [f > n for n, f in zip(self.n_tokens, self.n_tokens_full)]


class DecisionLayer:
    """Everything after the encoder: stacker or heads -> calibration -> expected cost -> floors -> policy."""

    def __init__(self, bundle_dir: Path, spec: RouterSpec, routing: dict[str, Any],
                 head_models: Sequence[str] | None = None):
        from aco_bert.decision.calibration import IsotonicCalibrator
        from aco_bert.decision.cost_model import CostModel

        self.spec, self.routing, self.head_models = spec, dict(routing), head_models
        self.mode = self.routing.get("mode", "heads")
        if self.mode not in MODES:
            raise BundleError(f"{bundle_dir}: routing.mode {self.mode!r} not in {MODES}")
        try:
            self.calibrator = IsotonicCalibrator.load(bundle_dir / B.CALIBRATORS)
            self.cost_model = CostModel.load(bundle_dir / B.COST_MODEL_DIR)
            self.stacker = None
            if self.mode == "stacked":
                from aco_bert.decision.stacker import Stacker

                if not (bundle_dir / B.STACKER_DIR / "manifest.json").exists():
                    raise BundleError(f"{bundle_dir}: routing.mode is 'stacked' but there is no {B.STACKER_DIR}/")
                self.stacker = Stacker.load(bundle_dir / B.STACKER_DIR)
            self.verifier = None
            if (bundle_dir / B.VERIFIER_DIR / "manifest.json").exists():
                from aco_bert.decision.verifier import Verifier

                self.verifier = Verifier.load(bundle_dir / B.VERIFIER_DIR)
        except (OSError, ValueError, KeyError) as e:
            raise BundleError(f"{bundle_dir}: cannot load the decision layer: {e}") from e
        t = spec.n_tiers
        for what, n in (("calibrators", self.calibrator.n_tiers), ("cost model", len(self.cost_model.mean)),
                        ("stacker", None if self.stacker is None else self.stacker.n_tiers)):
            if n is not None and n != t:
                raise BundleError(f"{bundle_dir}: {what} has {n} tiers, the spec has {t}")
        # Small batches: one thread per booster call. A loaded booster otherwise uses every core through OpenMP,
        # which on a busy 2-core box costs ~5 ms per call instead of ~0.1 ms.
        for b in self._boosters():
            b.set_param({"nthread": 1})
        self.stack_forest = self.cost_forest = None
        if self.stacker is not None:
            live = [b for b in self.stacker.boosters if b is not None]
            self.stack_forest = _fast_forest(live, live[0].num_features()) if live else None
        live = [b for b in self.cost_model.boosters if b is not None]
        self.cost_forest = _fast_forest(live, live[0].num_features()) if live else None
        self.verifier_forest = None
        if self.verifier is not None:
            self.verifier_forest = _fast_forest([self.verifier.booster], self.verifier.booster.num_features())
        self.policy = make_policy(self.routing)
        self.per_step = {k: make_policy(v) for k, v in (self.routing.get("per_step") or {}).items()}
        self.cascade = dict(self.routing.get("cascade") or {})
        self.cost_heads_input = self.routing.get("cost_heads_input", "usd")

    def _boosters(self) -> list:
        out = [b for b in (self.stacker.boosters if self.stacker is not None else []) if b is not None]
        out += [b for b in self.cost_model.boosters if b is not None]
        if self.verifier is not None:
            out.append(self.verifier.booster)
        return out

    # --- probabilities and costs ------------------------------------------------------------------------------
    def raw_scores(self, outputs: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
        """Uncalibrated (P, T) scores: the stacker's output, or the heads' sigmoid.

        Same numbers as :meth:`aco_bert.decision.stacker.Stacker.predict` (a test checks it), computed with the stacker's
        own design matrix and :class:`TreeEnsemble` (else ``inplace_predict``: no DMatrix per call)."""
        if self.stacker is None:
            return _sigmoid(outputs["logits"])
        from aco_bert.decision.stacker import StackInputs, _design

        st, lay = self.stacker, self.stacker.layout
        inputs = StackInputs(logits=outputs["logits"] if lay.get("logits") else None,
                             embeddings=outputs["pooled"] if lay.get("pca") else None,
                             features=features if lay.get("features") else None)
        x = _design(inputs, st.cfg, st.pca)
        out = np.empty((inputs.n, st.n_tiers))
        live = [t for t, b in enumerate(st.boosters) if b is not None]
        if live and x.shape[1] != st.boosters[live[0]].num_features():
            raise BundleError(f"stacker expects {st.boosters[live[0]].num_features()} inputs ({lay}), the model "
                              f"gives {x.shape[1]} (logits {outputs['logits'].shape}, pooled {outputs['pooled'].shape})")
        fast = self.stack_forest.predict(x) if self.stack_forest is not None else None
        if fast is not None:
            out[:, live] = fast
        for t, b in enumerate(st.boosters):
            if b is None:
                out[:, t] = st.base_rate[t]
            elif fast is None:
                out[:, t] = b.inplace_predict(x)
        return out

    def _cost_heads(self, outputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The neural cost heads in the spec's tier order (the heads may cover more tiers than the spec)."""
        raw = outputs.get("cost")
        if raw is None:
            return None
        raw = np.asarray(raw, dtype=np.float64)
        if self.head_models is not None and list(self.head_models) != self.spec.models:
            raw = raw[:, [list(self.head_models).index(m) for m in self.spec.models]]
        if self.cost_heads_input == "log1p":
            return raw
        if self.cost_heads_input == "usd":
            return np.clip(np.expm1(raw), 0.0, None)
        raise BundleError(f"routing.cost_heads_input {self.cost_heads_input!r} not in ('usd', 'log1p')")

    def expected_cost(self, outputs: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
        lay = self.cost_model.layout or {}
        heads = self._cost_heads(outputs) if lay.get("heads") else None
        if lay.get("heads") and heads is None:
            raise BundleError("the cost model uses the neural cost heads but the ONNX model has no 'cost' output")
        cm = self.cost_model
        out = np.tile(cm.mean, (len(features), 1)).astype(float)
        if not any(b is not None for b in cm.boosters):
            return out
        from aco_bert.decision.cost_model import EPS, _design

        # As CostModel.predict (a test checks it), with inplace_predict instead of a DMatrix per call.
        x = _design(features if lay.get("features") else None, outputs["pooled"] if lay.get("pca") else None,
                    heads, cm.pca)
        want = lay.get("features", 0) + lay.get("pca", 0) + lay.get("heads", 0)
        if x is None or x.shape[1] != want:
            raise BundleError(f"cost model expects {want} input columns ({lay}), got {None if x is None else x.shape}")
        fast = self.cost_forest.predict(x) if self.cost_forest is not None else None
        if fast is not None:  # all tiers in one expression (elementwise: the same numbers as tier by tier)
            live = [t for t, b in enumerate(cm.boosters) if b is not None]
            smear = np.array([cm.smear[t] for t in live], dtype=np.float64)
            out[:, live] = np.maximum(np.exp(fast) * smear - EPS, 0.0)
            return out
        k = 0
        for t, b in enumerate(cm.boosters):
            if b is not None:
                pred = fast[:, k] if fast is not None else b.inplace_predict(x)
                out[:, t] = np.maximum(np.exp(pred) * cm.smear[t] - EPS, 0.0)
                k += 1
        return out

    def probs_costs(self, outputs: dict[str, np.ndarray], features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = self.calibrator.transform(self.raw_scores(outputs, features))
        return np.clip(probs, 0.0, 1.0), self.expected_cost(outputs, features)

    # --- decisions --------------------------------------------------------------------------------------------
    def context(self, texts: Sequence[str], probs: np.ndarray, costs: np.ndarray, step_types, domains, budgets,
                min_tiers, features: np.ndarray | None = None):
        """Routing context and floors. ``features``: the :func:`~aco_bert.signals.handcrafted.featurize` rows of ``texts``;
        their domain columns are exactly :func:`~aco_bert.signals.handcrafted.detect_domains` (same keyword counts), so the
        floors reuse them instead of scanning every text a second time."""
        from aco_bert.policies.floors import StepContext, floors_for

        if features is None:
            fl = floors_for(self.spec, texts, step_types, domains, min_tiers)
        else:
            from aco_bert.signals.handcrafted import DOMAINS, FEATURE_NAMES

            first = FEATURE_NAMES.index(f"domain_{DOMAINS[0]}")
            found = features[:, first: first + len(DOMAINS)] > 0
            # detected first (in DOMAINS order), then the declared ones: the order floors_for(detect=True) uses
            declared = domains if domains is not None else [None] * len(texts)
            merged = [[d for d, f in zip(DOMAINS, row) if f] + list(declared[i] or ()) for i, row in
                      enumerate(found.tolist())]
            fl = floors_for(self.spec, texts, step_types, merged, min_tiers, detect=False)
        budget = np.array([np.nan if b is None else float(b) for b in budgets], dtype=float)
        ctx = StepContext(probs, costs, fl.min_tier, budget, step_types=np.asarray(list(step_types), dtype=object))
        return ctx, fl

    def choose(self, ctx) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(raw choice, final tier after floors, policy name per row): budget requests use the budget policy,
        step types with their own policy use it, everything else the bundle's default policy."""
        from aco_bert.policies.base import Budget

        p = ctx.shape[0]
        raw = np.asarray(self.policy.choose(ctx), dtype=int)
        names = [self.policy.name] * p
        for st, pol in self.per_step.items():
            m = np.array([s == st for s in ctx.step_types])
            if m.any():
                raw = np.where(m, np.asarray(pol.choose(ctx), dtype=int), raw)
                for i in np.flatnonzero(m):
                    names[i] = f"{pol.name} ({st})"
        has_budget = ~np.isnan(ctx.budget)
        if has_budget.any():
            raw = np.where(has_budget, np.asarray(Budget(None).choose(ctx), dtype=int), raw)
            for i in np.flatnonzero(has_budget):
                names[i] = "budget"
        return raw, np.maximum(raw, ctx.min_tier), names

    def _policy_reason(self, name: str, i: int, ctx, raw: int, allowed: np.ndarray | None = None) -> str:
        """``allowed``: ``ctx.allowed()`` when the caller has it (it is (P, T): not worth rebuilding per prompt)."""
        probs, cost = ctx.probs[i], ctx.exp_cost[i]
        allowed = (ctx.allowed() if allowed is None else allowed)[i]
        if name == "budget":
            b = float(ctx.budget[i])
            if (allowed & (cost <= b)).any():
                return f"budget ${b:.4g}: highest P(success) among tiers with E[cost] <= budget"
            return f"budget ${b:.4g}: no allowed tier fits; cheapest allowed tier"
        pol = self.per_step.get(name.split(" (")[-1].rstrip(")"), self.policy) if "(" in name else self.policy
        if hasattr(pol, "tau"):
            tau = float(pol.tau)
            if probs[raw] >= tau and allowed[raw]:
                return f"threshold {tau:.3f}: P(success)={probs[raw]:.3f} is the cheapest allowed tier >= tau"
            return f"threshold {tau:.3f}: no allowed tier reaches tau; highest P(success)={probs[raw]:.3f}"
        if hasattr(pol, "lam"):
            return f"utility: argmax P(success) - {float(pol.lam):.4g} * E[cost]"
        return pol.name

    def decisions(self, texts: Sequence[str], outputs: dict[str, np.ndarray], enc: Encoded, step_types, domains,
                  budgets, min_tiers, max_length: int) -> list[Decision]:
        from aco_bert.signals.handcrafted import featurize

        feats = featurize(texts, [s if _featurizable(s) else None for s in step_types])
        probs, costs = self.probs_costs(outputs, feats)
        ctx, fl = self.context(texts, probs, costs, step_types, domains, budgets, min_tiers, features=feats)
        raw, final, names = self.choose(ctx)
        models = self.spec.models
        out = []
        truncated = enc.truncated
        allowed = ctx.allowed()
        # Python floats/ints in one conversion per array (tolist() gives the same values as float()/int() per item)
        probs_l, costs_l = probs.tolist(), costs.tolist()
        raw_l, final_l, min_l = raw.tolist(), final.tolist(), ctx.min_tier.tolist()
        for i in range(len(texts)):
            t, r = int(final_l[i]), int(raw_l[i])
            reasons = list(fl.reasons[i])
            reasons.append(self._policy_reason(names[i], i, ctx, r, allowed))
            if t > r:
                reasons.append(f"floor raised tier {r + 1} -> {t + 1}")
            if truncated[i]:
                reasons.append(f"truncated: {enc.n_tokens_full[i]} tokens > max_length {max_length} (head+tail kept)")
            out.append(Decision(tier=t + 1, model=models[t], probs=probs_l[i], expected_cost=costs_l[i],
                                reasons=reasons, policy=names[i], n_tokens=int(enc.n_tokens[i]),
                                truncated=bool(truncated[i]), min_tier=int(min_l[i]) + 1))
        return out


def _featurizable(step_type: str | None) -> bool:
    from aco_bert.data.schema import STEP_TYPES

    return step_type in STEP_TYPES


class Router:
    """A loaded bundle. Thread-safe for concurrent ``route``/``route_batch``/``escalate`` calls (ONNX Runtime
    sessions, tokenizers and XGBoost boosters may be shared across threads)."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], config: dict[str, Any], session, tokenizer,
                 layer: DecisionLayer, int8: bool, max_batch: int = DEFAULT_MAX_BATCH, int8_batching: bool = False):
        from aco_bert.model.tokenization import pad_token_id

        self.bundle_dir, self.manifest, self.config = bundle_dir, manifest, config
        self.session, self.tokenizer, self.layer, self.int8 = session, tokenizer, layer, int8
        self.spec: RouterSpec = layer.spec
        model = config["model"]
        self.max_length = int(model["max_length"])
        self.truncation = model.get("truncation", "head_tail")
        self.tail_tokens = model.get("tail_tokens")
        self.pad_id = pad_token_id(tokenizer)
        self.max_batch = int(max_batch)
        self.int8_batching = bool(int8_batching)
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        missing = {"logits", "pooled"} - set(self.output_names)
        if missing or set(self.input_names) - {"input_ids", "attention_mask"}:
            raise BundleError(f"{bundle_dir}: ONNX model has inputs {self.input_names} / outputs {self.output_names};"
                              " expected input_ids, attention_mask -> logits, pooled[, cost]")

    @property
    def mode(self) -> str:
        return self.layer.mode

    # --- loading ----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir: str | Path, int8: bool | None = None, verify: bool = True, threads: int | None = None,
             max_batch: int = DEFAULT_MAX_BATCH, int8_batching: bool = False, spin: bool | None = None) -> "Router":
        """Load a bundle. ``int8=None`` uses ``model.int8.onnx`` when the bundle has one; ``verify`` checks the
        sha256 of every file first; ``threads`` sets ONNX Runtime's intra-op threads (default: $ACO_BERT_ORT_THREADS,
        else ONNX Runtime's own default); ``int8_batching`` batches the int8 model too (faster for many short
        prompts, but a prompt's result then depends slightly on its batch-mates, see :meth:`infer`); ``spin`` lets
        ONNX Runtime's worker threads busy-wait between ops (default off, $ACO_BERT_ORT_SPIN=1 turns it on): it
        shaves a little latency on an idle, dedicated CPU, but on a shared one the spinning threads fight the
        other processes and int8 latency at 256 tokens went from 35 ms to 98 ms (p50, 2 threads, load ~3.4)."""
        import onnxruntime as ort

        from aco_bert.model.tokenization import load_tokenizer

        root = Path(bundle_dir)
        manifest = B.verify_bundle(root) if verify else B.read_manifest(root)
        config = B.load_router_yaml(root)
        try:
            spec = RouterSpec.from_dict(config["spec"], where=f"{root / B.ROUTER_YAML}:spec")
        except (ValueError, TypeError) as e:
            raise BundleError(f"{root}: invalid spec in {B.ROUTER_YAML}: {e}") from e
        has_int8 = (root / B.MODEL_INT8).is_file()
        if int8 and not has_int8:
            raise BundleError(f"{root}: int8 requested but the bundle has no {B.MODEL_INT8} (export with --int8)")
        use_int8 = has_int8 if int8 is None else bool(int8)
        onnx_path = root / (B.MODEL_INT8 if use_int8 else B.MODEL_FP32)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        n_threads = threads if threads is not None else int(os.environ.get(THREADS_ENV, "0") or 0)
        if n_threads:
            so.intra_op_num_threads = int(n_threads)
        so.log_severity_level = 3
        if not (spin if spin is not None else os.environ.get(SPIN_ENV, "0") not in ("", "0", "false")):
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=list(DISABLED_ORT_OPTIMIZERS))
            tokenizer = load_tokenizer(root / B.TOKENIZER_DIR)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{root}: cannot load {onnx_path.name} or the tokenizer: {e}") from e
        layer = DecisionLayer(root, spec, config["routing"], config["model"].get("head_models"))
        return cls(root, manifest, config, session, tokenizer, layer, use_int8, max_batch, int8_batching)

    # --- the pipeline, stage by stage (public so the exporter and the benchmark can time / feed each) ----------
    def encode(self, texts: Sequence[str]) -> Encoded:
        """Token ids cut head+tail, padded; with each prompt's full token count (for the "truncated" reason).
        :func:`aco_bert.model.tokenization.encode_truncated` gets both without tokenising all of a long prompt."""
        from aco_bert.model.tokenization import encode_truncated, pad_ids

        seqs, full = encode_truncated(self.tokenizer, texts, self.max_length, self.truncation, self.tail_tokens)
        return Encoded(pad_ids(seqs, self.pad_id), [len(s) for s in seqs], full)

    def forward(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ONNX Runtime forward of one padded batch -> {logits, pooled[, cost]}."""
        outs = self.session.run(None, {k: feed[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))

    def infer(self, texts: Sequence[str]) -> tuple[Encoded, dict[str, np.ndarray]]:
        """Tokenise + forward in chunks of ``max_batch`` (prompts of similar length together, less padding).

        The int8 model runs one prompt per call (unless loaded with ``int8_batching=True``): dynamic quantisation
        takes one activation range per tensor, i.e. over the whole padded batch, so a batched prompt's int8
        output would depend on which other prompts share its batch (server micro-batches, scorer chunks)."""
        n = len(texts)
        if self.int8 and not self.int8_batching:
            enc = self.encode(texts)
            parts: dict[str, np.ndarray] = {}
            for i in range(n):
                out = self.forward({k: v[i: i + 1, : enc.n_tokens[i]] for k, v in enc.feed.items()})
                for k, v in out.items():
                    if k not in parts:
                        parts[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
                    parts[k][i] = v[0]
            return enc, parts
        if n <= self.max_batch:
            enc = self.encode(texts)
            return enc, self.forward(enc.feed)
        full = self.encode(texts)  # for the counts; the chunks re-pad
        order = np.argsort(np.asarray(full.n_tokens), kind="stable")
        parts = {}
        for s in range(0, n, self.max_batch):
            idx = order[s: s + self.max_batch]
            width = max(full.n_tokens[i] for i in idx)
            feed = {k: v[idx, :width] for k, v in full.feed.items()}
            out = self.forward(feed)
            for k, v in out.items():
                if k not in parts:
                    parts[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
                parts[k][idx] = v
        return full, parts

    def decide_from_outputs(self, texts: Sequence[str], outputs: dict[str, np.ndarray], enc: Encoded,
                            step_types=None, domains=None, budgets=None, min_tiers=None) -> list[Decision]:
        """The decision layer on given encoder outputs (ORT here; torch in the exporter's parity check)."""
        n = len(texts)
        return self.layer.decisions(texts, outputs, enc, step_types or [None] * n, domains or [None] * n,
                                    budgets or [None] * n, min_tiers or [None] * n, self.max_length)

    # --- public API -------------------------------------------------------------------------------------------
    def route(self, prompt: str, step_type: str | None = None, domain: str | list[str] | None = None,
              budget: float | None = None, min_tier: int | None = None) -> Decision:
        """Route one prompt (see :meth:`route_batch`)."""
        return self.route_batch([prompt], [step_type], [domain], [budget], [min_tier])[0]

    def route_batch(self, prompts: Sequence[str], step_types: Sequence[str | None] | None = None,
                    domains: Sequence[str | list[str] | None] | None = None,
                    budgets: Sequence[float | None] | None = None,
                    min_tiers: Sequence[int | None] | None = None) -> list[Decision]:
        """Route a batch in one forward pass (chunked above ``max_batch``). Every input is validated before any
        work is done; a bad one raises :class:`RoutingInputError` naming its position."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise RoutingInputError("prompts must be a list of strings")
        n = len(prompts)
        if n == 0:
            return []
        args = self._validate(prompts, step_types, domains, budgets, min_tiers)
        enc, outputs = self.infer(list(prompts))
        return self.decide_from_outputs(list(prompts), outputs, enc, *args)

    def escalate(self, prompt: str, tier_run: int, trace: dict[str, Any] | None = None,
                 step_type: str | None = None) -> Escalation:
        """After ``tier_run`` (1-based) ran on ``prompt``: accept its answer, or escalate to a higher tier.

        ``trace`` holds the run's signals (``api_calls``, ``cost`` or ``cost_usd``, ``latency_s``, ...). The
        bundle's verifier gives P(that run succeeded | prompt features, trace, the router's prior); without a
        verifier the prior P(success) of that tier is used (and the reasons say so).
        """
        from aco_bert.decision.verifier import Cascade
        from aco_bert.signals.handcrafted import featurize

        steps, doms, buds, mins = self._validate([prompt], [step_type], None, None, None)
        t_n = self.spec.n_tiers
        if isinstance(tier_run, bool) or not isinstance(tier_run, (int, np.integer)) or not 1 <= int(tier_run) <= t_n:
            raise RoutingInputError(f"tier_run {tier_run!r} is not a tier in 1..{t_n}")
        tier0 = int(tier_run) - 1
        sig = self._trace(trace)
        enc, outputs = self.infer([prompt])
        feats = featurize([prompt], [step_type if _featurizable(step_type) else None])
        probs, costs = self.layer.probs_costs(outputs, feats)
        ctx, fl = self.layer.context([prompt], probs, costs, steps, doms, buds, mins)
        prior = float(probs[0, tier0])
        reasons: list[str] = []
        v = self.layer.verifier
        if v is not None:
            # Verifier.predict_runs without its per-call DMatrix (a test checks both give the same number).
            from aco_bert.decision.verifier import TRACE_SIGNALS

            x = v._rows(np.array([tier0]), v._logs({k: np.array([sig[k]]) for k in TRACE_SIGNALS}),
                        np.array([prior]) if v.cfg.use_prior else None,
                        feats.astype(float) if v.cfg.use_prompt_features else None)
            if x.shape[1] != v.n_features:
                raise BundleError(f"verifier expects {v.n_features} inputs, got {x.shape[1]}")
            vf = self.layer.verifier_forest
            score = float(vf.predict(x)[0, 0] if vf is not None else v.booster.inplace_predict(x)[0])
        else:
            score = prior
            reasons.append("no verifier in bundle: using the router's prior P(success) of the tier that ran")
        casc = Cascade(first=self.layer.policy, escalate=self.layer.policy,
                       accept=float(self.layer.cascade.get("accept", 0.5)),
                       max_runs=int(self.layer.cascade.get("max_runs", t_n)))
        esc = casc.step(ctx, tier0, score, tier_names=self.spec.models)
        esc.reasons = reasons + list(fl.reasons[0]) + list(esc.reasons)
        if tier0 >= t_n - 1 and not score >= casc.accept:
            esc.reasons.append("top tier ran: nothing to escalate to")
        return esc

    # --- validation -------------------------------------------------------------------------------------------
    def _validate(self, prompts, step_types, domains, budgets, min_tiers):
        from aco_bert.data.schema import STEP_TYPES

        n = len(prompts)

        def col(name, values):
            if values is None:
                return [None] * n
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
                raise RoutingInputError(f"{name} must be a list with one entry per prompt ({n})")
            return list(values)

        steps, doms, buds, mins = (col("step_types", step_types), col("domains", domains), col("budgets", budgets),
                                   col("min_tiers", min_tiers))
        where = (lambda i: "") if n == 1 else (lambda i: f"prompt {i}: ")
        allowed_steps = set(STEP_TYPES) | set(self.spec.step_type_min)
        t_n = self.spec.n_tiers
        for i in range(n):
            p = prompts[i]
            if not isinstance(p, str):
                raise RoutingInputError(f"{where(i)}prompt must be a string, got {type(p).__name__}")
            if not p.strip():
                raise RoutingInputError(f"{where(i)}prompt is empty")
            s = steps[i]
            if s is not None and (not isinstance(s, str) or s not in allowed_steps):
                raise RoutingInputError(f"{where(i)}unknown step_type {s!r}; expected one of {sorted(allowed_steps)}")
            d = doms[i]
            if isinstance(d, str):
                doms[i] = [d] if d.strip() else None
            elif d is not None:
                if not isinstance(d, (list, tuple)) or not all(isinstance(x, str) for x in d):
                    raise RoutingInputError(f"{where(i)}domain must be a string or a list of strings")
                doms[i] = list(d)
            b = buds[i]
            if b is not None:
                if isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)) or not math.isfinite(b):
                    raise RoutingInputError(f"{where(i)}budget must be a finite number, got {b!r}")
                if b < 0:
                    raise RoutingInputError(f"{where(i)}budget must be >= 0, got {b}")
                buds[i] = float(b)
            m = mins[i]
            if m is not None:
                if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= t_n:
                    raise RoutingInputError(f"{where(i)}min_tier {m!r} is not a tier in 1..{t_n}")
                mins[i] = int(m)
        return steps, doms, buds, mins

    @staticmethod
    def _trace(trace: dict[str, Any] | None) -> dict[str, float]:
        if trace is None:
            trace = {}
        if not isinstance(trace, dict):
            raise RoutingInputError("trace must be a mapping of signal -> number")
        out = {}
        for key, aliases in (("api_calls", ("api_calls",)), ("cost", ("cost", "cost_usd"))):
            v = next((trace[a] for a in aliases if trace.get(a) is not None), None)
            if v is None:
                out[key] = float("nan")  # unknown: XGBoost's missing-value branch
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise RoutingInputError(f"trace[{key!r}] must be a finite number, got {v!r}")
            if v < 0:
                raise RoutingInputError(f"trace[{key!r}] must be >= 0, got {v}")
            out[key] = float(v)
        for k, v in trace.items():
            if k not in ("api_calls", "cost", "cost_usd") and v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise RoutingInputError(f"trace[{k!r}] must be a number, got {v!r}")
        return out

    def __repr__(self) -> str:
        return (f"Router({str(self.bundle_dir)!r}, spec={self.spec.name!r}, mode={self.mode!r}, "
                f"int8={self.int8}, tiers={self.spec.n_tiers}, max_length={self.max_length})")
