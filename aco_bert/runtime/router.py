"""The torch-free routing runtime: load a bundle, turn prompts into routing decisions on a CPU in milliseconds.

    from aco_bert.runtime import Router
    router = Router.load("bundles/swebench")          # verifies manifest.json (sha256 of every file)
    d = router.route("Fix the crash in ...", step_type="edit", budget=0.5)
    d.tier, d.model, d.probs, d.expected_cost, d.reasons

Pipeline per batch: validate the request (:mod:`aco_bert.runtime.inputs`) -> tokenise (head+tail truncation,
:mod:`aco_bert.model.tokenization`, or whole-prompt windows, :mod:`aco_bert.model.chunking`) -> ONNX Runtime
encoder+heads (``logits``, ``pooled``[, ``cost``]) -> the decision layer (:mod:`aco_bert.runtime.layer`):
handcrafted features, the stacker's signals (TF-IDF-LR, neighbour outcomes, declared metadata), stacker ("stacked"
mode) or the heads' sigmoid ("heads" mode), isotonic calibration, expected cost per tier, safety floors, the
bundle's routing policy (:mod:`aco_bert.policies`). Which mode a bundle runs is decided by its ``routing.mode`` and
what it contains.

Why torch-free: a router sits in front of every LLM call, so it must start fast and stay small; the process
imports onnxruntime, tokenizers, xgboost, numpy and yaml (plus pandas through :mod:`aco_bert.data.schema`) and
never torch or transformers (a test checks ``sys.modules``). The same :meth:`Router.decide_from_outputs` is fed by
torch at export time, which is how the exporter proves ORT and torch route the same prompts the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aco_bert.artifacts import bundle as B
from aco_bert.policies import RoutingConfig
from aco_bert.runtime.inputs import Encoded, validate_requests, validate_response, validate_tier, validate_trace
from aco_bert.runtime.layer import DecisionLayer
from aco_bert.spec import RouterSpec
from aco_bert.types import BundleError, Decision, Escalation, RoutingInputError

THREADS_ENV = "ACO_BERT_ORT_THREADS"
SPIN_ENV = "ACO_BERT_ORT_SPIN"
DEFAULT_MAX_BATCH = 64
# ONNX Runtime re-fuses Add + LayerNormalization into its SkipLayerNormalization contrib op when it loads a model;
# on this CPU (onnxruntime 1.32, AVX-512) that kernel took 177 us per call where Add + LayerNormalization take
# 33 us (MiniLM, 87 tokens, 1 thread): ~1 ms of a 3-layer int8 forward. The exporter leaves it unfused too.
DISABLED_ORT_OPTIMIZERS = ("SkipLayerNormFusion",)


class Router:
    """A loaded bundle. Thread-safe for concurrent ``route``/``route_batch``/``escalate`` calls (ONNX Runtime
    sessions, tokenizers and XGBoost boosters may be shared across threads)."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], config: dict[str, Any], session, tokenizer,
                 layer: DecisionLayer, int8: bool, max_batch: int = DEFAULT_MAX_BATCH, int8_batching: bool = False):
        from aco_bert.model.tokenization import pad_token_id

        self.bundle_dir, self.manifest, self.config = bundle_dir, manifest, config
        self.session, self.tokenizer, self.layer, self.int8 = session, tokenizer, layer, int8
        self.spec: RouterSpec = layer.spec
        from aco_bert.model.tokenization import Truncation

        model = config["model"]
        try:  # the bundle's truncation settings, validated once here instead of on every call
            self.cut = Truncation(max_length=model["max_length"], strategy=model.get("truncation", "head_tail"),
                                  tail_tokens=model.get("tail_tokens"), max_chunks=model.get("max_chunks", 8),
                                  chunk_overlap=model.get("chunk_overlap", 0))
        except (KeyError, ValueError) as e:
            raise BundleError(f"{bundle_dir}: {B.ROUTER_YAML} model section: {e}") from e
        self.max_length, self.truncation, self.tail_tokens = self.cut.max_length, self.cut.strategy, self.cut.tail_tokens
        self.pad_id = pad_token_id(tokenizer)
        self.max_batch = int(max_batch)
        self.int8_batching = bool(int8_batching)
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        missing = {"logits", "pooled"} - set(self.output_names)
        if missing or set(self.input_names) - {"input_ids", "attention_mask"}:
            raise BundleError(f"{bundle_dir}: ONNX model has inputs {self.input_names} / outputs {self.output_names};"
                              " expected input_ids, attention_mask -> logits, pooled[, cost]")
        rank = 3 if self.cut.chunked else 2
        if any(len(i.shape) != rank for i in session.get_inputs()):
            raise BundleError(f"{bundle_dir}: {B.ROUTER_YAML} says truncation {self.truncation!r} (inputs of rank "
                              f"{rank}) but the ONNX inputs have shapes {[i.shape for i in session.get_inputs()]}")

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
        try:
            routing = RoutingConfig.from_dict(config["routing"], where=f"{root / B.ROUTER_YAML}:routing")
        except ValueError as e:
            raise BundleError(str(e)) from e
        layer = DecisionLayer(root, spec, routing, config["model"].get("head_models"))
        return cls(root, manifest, config, session, tokenizer, layer, use_int8, max_batch, int8_batching)

    # --- the pipeline, stage by stage (public so the exporter and the benchmark can time / feed each) ----------
    def encode(self, texts: Sequence[str]) -> Encoded:
        """Token ids cut head+tail, padded; with each prompt's full token count (for the "truncated" reason).
        :func:`aco_bert.model.tokenization.encode_truncated` gets both without tokenising all of a long prompt.
        Chunked bundles: B x C x L windows (:func:`aco_bert.model.chunking.encode_chunks`), as in training."""
        from aco_bert.model.tokenization import pad_ids

        if self.cut.chunked:
            from aco_bert.model.chunking import pad_chunks

            windows, full, kept = self.cut.encode_chunks(self.tokenizer, texts)
            c = self.cut.max_chunks
            return Encoded(pad_chunks(windows, self.pad_id), kept, full, [len(p) for p in windows],
                           [max(len(w) for w in p) for p in windows],
                           f"{c} windows of {self.max_length} (the first {c - 1} and the last kept)")
        seqs, full = self.cut.encode_truncated(self.tokenizer, texts)
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
                out = self.forward(enc.rows(slice(i, i + 1)))
                for k, v in out.items():
                    if k not in parts:
                        parts[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
                    parts[k][i] = v[0]
            return enc, parts
        if n <= self.max_batch:
            enc = self.encode(texts)
            return enc, self.forward(enc.feed)
        full = self.encode(texts)  # for the counts; the chunks re-pad
        order = np.argsort(np.asarray(full.sizes), kind="stable")
        parts = {}
        for s in range(0, n, self.max_batch):
            idx = order[s: s + self.max_batch]
            out = self.forward(full.rows(idx))
            for k, v in out.items():
                if k not in parts:
                    parts[k] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
                parts[k][idx] = v
        return full, parts

    def decide_from_outputs(self, texts: Sequence[str], outputs: dict[str, np.ndarray], enc: Encoded,
                            step_types=None, domains=None, budgets=None, min_tiers=None,
                            metadata: Sequence[dict[str, Any] | None] | None = None) -> list[Decision]:
        """The decision layer on given encoder outputs (ORT here; torch in the exporter's parity check).
        ``metadata``: one mapping of the spec's declared columns (or None) per prompt."""
        n = len(texts)
        meta = self.layer.metadata_columns(metadata, n)
        return self.layer.decisions(texts, outputs, enc, step_types or [None] * n, domains or [None] * n,
                                    budgets or [None] * n, min_tiers or [None] * n, self.max_length, meta)

    # --- public API -------------------------------------------------------------------------------------------
    def route(self, prompt: str, step_type: str | None = None, domain: str | list[str] | None = None,
              budget: float | None = None, min_tier: int | None = None,
              metadata: dict[str, Any] | None = None) -> Decision:
        """Route one prompt (see :meth:`route_batch`)."""
        return self.route_batch([prompt], [step_type], [domain], [budget], [min_tier], [metadata])[0]

    def route_batch(self, prompts: Sequence[str], step_types: Sequence[str | None] | None = None,
                    domains: Sequence[str | list[str] | None] | None = None,
                    budgets: Sequence[float | None] | None = None,
                    min_tiers: Sequence[int | None] | None = None,
                    metadata: Sequence[dict[str, Any] | None] | None = None) -> list[Decision]:
        """Route a batch in one forward pass (chunked above ``max_batch``). Every input is validated before any
        work is done; a bad one raises :class:`RoutingInputError` naming its position. ``metadata``: per prompt,
        the values of the spec's declared metadata columns (e.g. ``{"repo": "django/django"}``; unknown: None)."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise RoutingInputError("prompts must be a list of strings")
        n = len(prompts)
        if n == 0:
            return []
        steps, doms, buds, mins = validate_requests(self.spec, prompts, step_types, domains, budgets, min_tiers)
        meta = self.layer.metadata_columns(metadata, n)  # bad metadata is refused before any work, once
        enc, outputs = self.infer(list(prompts))
        return self.layer.decisions(list(prompts), outputs, enc, steps, doms, buds, mins, self.max_length, meta)

    def escalate(self, prompt: str, tier_run: int, trace: dict[str, Any] | None = None,
                 step_type: str | None = None, metadata: dict[str, Any] | None = None, *,
                 response: str | None = None, responses: dict[int, str] | None = None,
                 logprobs: Sequence[float] | None = None) -> Escalation:
        """After ``tier_run`` (1-based) ran on ``prompt``: accept its answer, or escalate to a higher tier.

        ``trace`` holds the run's signals (``api_calls``, ``cost`` or ``cost_usd``, ``latency_s``, ...);
        ``response`` is what that tier answered, ``responses`` the answers of tiers that ran before it ({1-based
        tier: text}, for answer agreement), ``logprobs`` the response's token logprobs (optional). The bundle's
        verifier gives P(that run succeeded | prompt features, trace, response, agreement, the router's prior);
        without a verifier the prior P(success) of that tier is used (and the reasons say so).
        """
        steps, doms, _, mins = validate_requests(self.spec, [prompt], [step_type], None, None, None)
        tier0 = validate_tier(tier_run, self.spec.n_tiers)
        sig = validate_trace(trace)
        run = validate_response(response, responses, logprobs, self.spec.n_tiers, tier0)
        meta = self.layer.metadata_columns(None if metadata is None else [metadata], 1)
        _, outputs = self.infer([prompt])
        return self.layer.escalation(prompt, outputs, tier0, sig, steps[0], doms[0], mins[0], meta, run=run)

    def __repr__(self) -> str:
        return (f"Router({str(self.bundle_dir)!r}, spec={self.spec.name!r}, mode={self.mode!r}, "
                f"int8={self.int8}, tiers={self.spec.n_tiers}, max_length={self.max_length})")
