"""The runtime's decision layer: encoder outputs (+ prompt texts and metadata) -> signals -> stacker or heads ->
calibration -> expected cost -> floors -> policy.

Every number comes from the fitted models' own ``predict`` (:meth:`Stacker.predict`, :meth:`CostModel.predict`,
:meth:`Verifier.predict_runs`: numpy trees checked against XGBoost, see :mod:`aco_bert.decision.trees`), the floors
from :func:`aco_bert.policies.floors.build_context` and the choice from the bundle's routing policy
(:func:`aco_bert.policies.from_config`), so training, evaluation and serving cannot drift apart. What is left here
is reading a bundle's decision-layer files and saying, in a :class:`BundleError`, when they do not fit together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aco_bert.artifacts import bundle as B
from aco_bert.decision.calibration import sigmoid
from aco_bert.policies import Cascade, RoutingConfig, build_context, from_config, named_policy
from aco_bert.runtime.inputs import Encoded, featurizable
from aco_bert.spec import RouterSpec
from aco_bert.types import BundleError, Decision, Escalation, RoutingInputError, RunOutput


class DecisionLayer:
    """Everything after the encoder, loaded from a bundle directory.

    ``policy`` is the bundle's default policy (its name is the server's ``router-<name>`` alias);
    ``routing_policy`` the whole rule the decisions use (request budgets, per-step policies, the default);
    ``cascade`` the escalation rule of :meth:`escalation`."""

    def __init__(self, bundle_dir: Path, spec: RouterSpec, routing: RoutingConfig,
                 head_models: Sequence[str] | None = None):
        from aco_bert.decision.calibration import IsotonicCalibrator
        from aco_bert.decision.cost_model import CostModel

        self.bundle_dir, self.spec, self.routing, self.head_models = Path(bundle_dir), spec, routing, head_models
        self.mode = routing.mode
        try:
            self.calibrator = IsotonicCalibrator.load(bundle_dir / B.CALIBRATORS)
            self.cost_model = CostModel.load(bundle_dir / B.COST_MODEL_DIR)
            self.stacker = None
            if self.mode == "stacked":
                from aco_bert.decision.stacker import Stacker

                if not (bundle_dir / B.STACKER_DIR / "manifest.json").exists():
                    raise BundleError(f"{bundle_dir}: routing.mode is 'stacked' but there is no {B.STACKER_DIR}/")
                self.stacker = Stacker.load(bundle_dir / B.STACKER_DIR)
            self.signals = self.load_signals()
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
        # which on a busy 2-core box costs ~5 ms per call instead of ~0.1 ms (when the numpy trees cannot be used).
        for b in self.boosters():
            b.set_param({"nthread": 1})
        for model in (self.stacker, self.cost_model, self.verifier):  # build the numpy trees now, not per request
            if model is not None:
                model.fast_trees()
        try:
            self.policy = named_policy(routing)
            self.routing_policy = from_config(routing)
            self.cascade = Cascade.from_config(routing, t, spec.models)
        except (TypeError, ValueError) as e:
            raise BundleError(f"{bundle_dir / B.ROUTER_YAML}: routing: {e}") from e

    def load_signals(self) -> dict:
        """The fitted signals the stacker reads (``signals/<name>/``), checked against its layout and the spec."""
        if self.stacker is None or not self.stacker.layout.get("signals"):
            return {}
        from aco_bert.signals.registry import get_signal

        out = {}
        for name, width in self.stacker.layout["signals"].items():
            d = self.bundle_dir / B.SIGNALS_DIR / name
            if not (d / "manifest.json").exists():
                raise BundleError(f"{self.bundle_dir}: the stacker reads signal {name!r} but there is no "
                                  f"{B.SIGNALS_DIR}/{name}/")
            sig = get_signal(name).load(d)
            if sig.width != width or sig.tiers != self.spec.models:
                raise BundleError(f"{d}: signal gives {sig.width} columns for tiers {sig.tiers}; the stacker "
                                  f"expects {width} for {self.spec.models}")
            out[name] = sig
        return out

    def metadata_columns(self, metadata: Sequence[Any] | None, n: int) -> dict[str, list[str | None]]:
        """Per-request metadata (one mapping or None per prompt) -> the spec's declared columns; a key the spec
        does not declare, or a value that is not a string/number, is a :class:`RoutingInputError`."""
        from aco_bert.signals.metadata import metadata_value

        cols: dict[str, list[str | None]] = {c: [None] * n for c in self.spec.metadata}
        if metadata is None:
            return cols
        if isinstance(metadata, (str, bytes, dict)) or not isinstance(metadata, Sequence) or len(metadata) != n:
            raise RoutingInputError(f"metadata must be a list with one mapping (or None) per prompt ({n})")
        where = (lambda i: "") if n == 1 else (lambda i: f"prompt {i}: ")
        for i, row in enumerate(metadata):
            if row is None:
                continue
            if not isinstance(row, dict):
                raise RoutingInputError(f"{where(i)}metadata must be a mapping of column -> value")
            for k, v in row.items():
                if k not in cols:
                    raise RoutingInputError(f"{where(i)}metadata column {k!r} is not declared in the spec's "
                                            f"metadata {self.spec.metadata}")
                if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
                    raise RoutingInputError(f"{where(i)}metadata[{k!r}] must be a string or a number, got {v!r}")
                cols[k][i] = metadata_value(v)
        return cols

    def signal_blocks(self, texts: Sequence[str] | None, outputs: dict[str, np.ndarray],
                      metadata: dict[str, list[str | None]] | None = None) -> dict[str, np.ndarray]:
        """Each signal's :meth:`~aco_bert.signals.base.Signal.predict` block for the batch."""
        if not self.signals:
            return {}
        from aco_bert.signals.base import SignalData

        n = len(outputs["logits"])
        if texts is None or len(texts) != n:
            raise BundleError(f"{self.bundle_dir}: the stacker reads signals {list(self.signals)}, which need the "
                              f"{n} prompt texts")
        data = SignalData(list(texts), outputs.get("pooled"), metadata or self.metadata_columns(None, n))
        try:
            return {name: sig.predict(data) for name, sig in self.signals.items()}
        except ValueError as e:
            raise BundleError(f"{self.bundle_dir}: {e}") from e

    def boosters(self) -> list:
        """Every XGBoost booster of the stacker, the cost model and the verifier."""
        out = [b for b in (self.stacker.boosters if self.stacker is not None else []) if b is not None]
        out += [b for b in self.cost_model.boosters if b is not None]
        if self.verifier is not None:
            out.append(self.verifier.booster)
        return out

    # --- probabilities and costs ------------------------------------------------------------------------------
    def raw_scores(self, outputs: dict[str, np.ndarray], features: np.ndarray, texts: Sequence[str] | None = None,
                   metadata: dict[str, list[str | None]] | None = None) -> np.ndarray:
        """Uncalibrated (P, T) scores: :meth:`Stacker.predict` on the encoder outputs, the handcrafted features
        and the signals' blocks of ``texts`` (+ ``metadata`` columns), or the heads' sigmoid."""
        if self.stacker is None:
            return sigmoid(outputs["logits"])
        from aco_bert.decision.stacker import StackInputs

        lay = self.stacker.layout
        blocks = self.signal_blocks(texts, outputs, metadata)
        try:
            return self.stacker.predict(StackInputs(logits=outputs["logits"] if lay.get("logits") else None,
                                                    embeddings=outputs["pooled"] if lay.get("pca") else None,
                                                    features=features if lay.get("features") else None,
                                                    signals=blocks))
        except ValueError as e:
            raise BundleError(f"{self.bundle_dir}: {e} (the model gives logits {outputs['logits'].shape}, pooled "
                              f"{outputs['pooled'].shape}, features {np.shape(features)})") from e

    def cost_heads(self, outputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The neural cost heads in the spec's tier order (the heads may cover more tiers than the spec), in the
        units the cost model was fitted on (``routing.cost_heads_input``)."""
        raw = outputs.get("cost")
        if raw is None:
            return None
        raw = np.asarray(raw, dtype=np.float64)
        if self.head_models is not None and list(self.head_models) != self.spec.models:
            raw = raw[:, [list(self.head_models).index(m) for m in self.spec.models]]
        if self.routing.cost_heads_input == "log1p":
            return raw
        return np.clip(np.expm1(raw), 0.0, None)  # "usd" (RoutingConfig allows nothing else)

    def expected_cost(self, outputs: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
        """(P, T) expected USD: :meth:`CostModel.predict` on the inputs its layout names."""
        lay = self.cost_model.layout or {}
        heads = self.cost_heads(outputs) if lay.get("heads") else None
        if lay.get("heads") and heads is None:
            raise BundleError("the cost model uses the neural cost heads but the ONNX model has no 'cost' output")
        try:
            return self.cost_model.predict(len(features), features if lay.get("features") else None,
                                           outputs["pooled"] if lay.get("pca") else None, heads)
        except ValueError as e:
            raise BundleError(f"{self.bundle_dir}: {e}") from e

    def probs_costs(self, outputs: dict[str, np.ndarray], features: np.ndarray, texts: Sequence[str] | None = None,
                    metadata: dict[str, list[str | None]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        probs = self.calibrator.transform(self.raw_scores(outputs, features, texts, metadata))
        return np.clip(probs, 0.0, 1.0), self.expected_cost(outputs, features)

    # --- decisions --------------------------------------------------------------------------------------------
    def context(self, texts: Sequence[str], probs: np.ndarray, costs: np.ndarray, step_types, domains, budgets,
                min_tiers, features: np.ndarray | None = None):
        """Routing context and floors. ``features``: the :func:`~aco_bert.signals.handcrafted.featurize` rows of
        ``texts``; the floors then read the domains off them instead of scanning every text a second time."""
        detected = None
        if features is not None:
            from aco_bert.signals.handcrafted import domains_from_features

            detected = domains_from_features(features)
        budget = np.array([np.nan if b is None else float(b) for b in budgets], dtype=float)
        return build_context(self.spec, probs, costs, texts, step_types, domains, min_tiers, budget,
                             detected=detected)

    def choose(self, ctx) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(raw choice, final tier after floors, policy name per row) of the bundle's routing policy."""
        raw = np.asarray(self.routing_policy.choose(ctx), dtype=int)
        names = [self.routing_policy.label(ctx, i) for i in range(ctx.shape[0])]
        return raw, np.maximum(raw, ctx.min_tier), names

    def decisions(self, texts: Sequence[str], outputs: dict[str, np.ndarray], enc: Encoded, step_types, domains,
                  budgets, min_tiers, max_length: int, metadata: dict[str, list[str | None]] | None = None
                  ) -> list[Decision]:
        """``metadata``: the spec's columns (:meth:`metadata_columns`), None = all unknown."""
        from aco_bert.signals.handcrafted import featurize

        feats = featurize(texts, [s if featurizable(s) else None for s in step_types])
        probs, costs = self.probs_costs(outputs, feats, texts, metadata)
        ctx, fl = self.context(texts, probs, costs, step_types, domains, budgets, min_tiers, features=feats)
        raw, final, names = self.choose(ctx)
        models = self.spec.models
        out = []
        truncated = enc.truncated
        # Python floats/ints in one conversion per array (tolist() gives the same values as float()/int() per item)
        probs_l, costs_l = probs.tolist(), costs.tolist()
        raw_l, final_l, min_l = raw.tolist(), final.tolist(), ctx.min_tier.tolist()
        for i in range(len(texts)):
            t, r = int(final_l[i]), int(raw_l[i])
            reasons = list(fl.reasons[i])
            reasons.append(self.routing_policy.reason(ctx, i, r))
            if t > r:
                reasons.append(f"floor raised tier {r + 1} -> {t + 1}")
            if truncated[i]:
                reasons.append(f"truncated: {enc.n_tokens_full[i]} tokens > "
                               + (enc.limit or f"max_length {max_length} (head+tail kept)"))
            out.append(Decision(tier=t + 1, model=models[t], probs=probs_l[i], expected_cost=costs_l[i],
                                reasons=reasons, policy=names[i], n_tokens=int(enc.n_tokens[i]),
                                truncated=bool(truncated[i]), min_tier=int(min_l[i]) + 1))
        return out

    def escalation(self, prompt: str, outputs: dict[str, np.ndarray], tier0: int, trace: dict[str, float],
                   step_type: str | None, domains: Any, min_tier: int | None,
                   metadata: dict[str, list[str | None]] | None = None, run: RunOutput | None = None) -> Escalation:
        """Accept ``tier0``'s run or escalate: :meth:`Verifier.predict_runs` on the run's ``trace`` and, for a
        verifier trained on responses, the response's own features and its agreement with ``run.earlier``
        (else the prior P(success) of that tier), then :meth:`Cascade.step`."""
        from aco_bert.decision.verifier import TRACE_SIGNALS
        from aco_bert.signals.handcrafted import featurize

        run = run or RunOutput()
        feats = featurize([prompt], [step_type if featurizable(step_type) else None])
        probs, costs = self.probs_costs(outputs, feats, [prompt], metadata)
        ctx, fl = self.context([prompt], probs, costs, [step_type], [domains], [None], [min_tier], features=feats)
        prior = float(probs[0, tier0])
        reasons: list[str] = []
        v = self.verifier
        if v is not None:
            own = hist = None
            if v.responses:
                own, hist = self.response_blocks(v, tier0, run)
                if run.response is None:
                    reasons.append("no response given: the verifier judges the run by its trace and prior only")
                elif run.earlier:
                    reasons.append(f"answer agreement with {len(run.earlier)} earlier run(s): {hist[0, 1]:.2f} max")
            elif run.response is not None:
                reasons.append("this bundle's verifier was trained without responses: the response text is not read")
            try:
                score = float(v.predict_runs(np.array([tier0]), {k: np.array([trace[k]]) for k in TRACE_SIGNALS},
                                             feats, np.array([prior]), own, hist)[0])
            except ValueError as e:
                raise BundleError(f"{self.bundle_dir}: {e}") from e
        else:
            score = prior
            reasons.append("no verifier in bundle: using the router's prior P(success) of the tier that ran")
        casc = self.cascade
        esc = casc.step(ctx, tier0, score, tier_names=self.spec.models, n_earlier=len(run.earlier))
        esc.reasons = reasons + list(fl.reasons[0]) + list(esc.reasons)
        if tier0 >= self.spec.n_tiers - 1 and not score >= casc.bar(len(run.earlier)):
            esc.reasons.append("top tier ran: nothing to escalate to")
        return esc

    def cascade_start(self, tier: int, min_tier: int = 1) -> int:
        """The 1-based tier a cascade starts at for a prompt routed to ``tier``: that tier, or with
        ``cascade.first: chain`` the ladder's bottom tier at or above the prompt's floor ``min_tier``."""
        c = self.routing.cascade
        if c.chain is None or c.first != "chain":
            return int(tier)
        ladder = sorted(self.spec.models.index(m) for m in c.chain)
        ok = [t for t in ladder if t >= int(min_tier) - 1]
        return (ok[0] if ok else self.spec.n_tiers - 1) + 1

    @staticmethod
    def response_blocks(v: Any, tier0: int, run: RunOutput) -> tuple[np.ndarray, np.ndarray]:
        """The verifier's response blocks (own features, agreement) of one run: the features training used."""
        from aco_bert.verify.features import own_features

        reader, st = v.reader, v.strength
        ans = reader.answer(run.response)
        own = own_features(run.response, ans, run.logprobs)[None, :]
        hist = reader.history(ans, [(reader.answer(txt), float(st[t])) for t, txt in sorted(run.earlier.items())])
        return own, hist[None, :]
