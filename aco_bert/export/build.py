"""Export a trained router to a torch-free bundle: ONNX (+ int8), tokenizer, decision layer, manifest.

    python -m aco_bert.export --checkpoint checkpoints/<run> --out bundles/<name> [--int8] [--validation-slice N]
                              [--stack DIR] [--data-dir DIR] [--policy threshold --tau 0.6 | --target 0.73]

Steps, and why each is there:

1. Load the trained :class:`aco_bert.model.modeling.RouterModel` with ``attn_implementation="eager"``: the explicit
   softmax(QK^T)V graph is what ONNX Runtime's transformer optimizer recognises and fuses into one ``Attention``
   op (SDPA exports to a graph it does not fuse).
2. ``torch.onnx.export`` of encoder + pooling + heads with dynamic batch and sequence axes. The TorchScript
   exporter (``dynamo=False``) is used on purpose: on torch 2.13 the dynamo exporter's graph is not fused by the
   ORT optimizer (measured: 0 Attention nodes vs 6 for MiniLM), and fusion is most of the CPU speed-up.
3. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert", num_heads, hidden_size)`` from the
   encoder config -> ``model.onnx``; the fused-op counts go into the manifest.
4. ``--int8``: ``quantize_dynamic(per_channel=True)`` -> ``model.int8.onnx`` (per-tensor weights lost up to 0.04
   in probability). Schemes are tried from the fastest and the first that passes the int8 gates ships: ``all``
   (every MatMul/Attention), ``smooth`` (SmoothQuant + fp32 outlier channels, calibrated on real prompts outside
   the parity slice: a quarter of the error for ~1 ms at 256 tokens), ``ffn_down_fp32`` (FFN down-projections
   kept fp32: about half the error, 3+ ms slower).
5. Decision layer: with stacking artifacts (``--stack``, default ``<checkpoint>/stack``) the bundle runs in
   "stacked" mode; otherwise "heads" mode -- the heads' sigmoid, isotonic-calibrated on the run's out-of-fold
   logits, and the per-tier mean cost.
6. **Parity gates** on a validation slice of real prompts with real labels, recorded in the manifest, and the
   export FAILS (nothing is written at ``--out``) when one is exceeded: fp32 ORT vs torch max |dp| <= 1e-4, the
   runtime's decisions equal the torch pipeline's on >= 99 % of prompts, int8 max |dp| <= 0.03 and per-tier AUC
   change <= 0.5 pt.

The bundle is assembled in a temporary sibling directory and renamed into place only after every gate passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aco_bert.artifacts import bundle as B
from aco_bert.artifacts.jsonio import json_safe

logger = logging.getLogger("aco_bert.export.build")

STACK_DIR_NAME = "stack"  # default stacking artifacts under a checkpoint run
STACK_ROUTING = "routing.json"  # optional policy/tau written by the stacking stage
STACK_CALIBRATOR_NAMES = ("calibrator.json", "calibrators.json")
MODEL_FILES = ("router_config.json", "model.safetensors")
FALLBACK_PROMPTS = (  # parity without data (--validation-slice 0): varied shapes, not a validation
    "Fix the crash when the config file is empty.",
    "The parser raises a ValueError on nested lists:\n\n    Traceback (most recent call last):\n      File \"a.py\", "
    "line 3, in <module>\n    ValueError: bad input\n\nExpected the list to be flattened.",
    "Add a --verbose flag to the CLI and document it in the README. " * 20,
    "Is this contract clause legally binding for the tenant?",
)


class ExportError(RuntimeError):
    """The export could not produce a trustworthy bundle (a parity gate failed, inputs missing, ...)."""

    def __init__(self, message: str, report: dict[str, Any] | None = None):
        self.report = report or {}
        super().__init__(message)


@dataclass
class ExportConfig:
    checkpoint: str  # a training run (final/ or best/ inside) or a saved model folder
    out: str
    int8: bool = False
    validation_slice: int = 256  # real prompts (with labels) for the parity/AUC gates; 0 = built-in prompts only
    data_dir: str | None = None
    stack: str | None = None  # stacking artifacts; default <checkpoint>/stack when present, else heads-only mode
    heads_only: bool = False  # ignore stacking artifacts even when present
    opset: int = 17
    policy: str | None = None  # threshold | target-success | utility | budget (default: the stack's, else target-success)
    tau: float | None = None
    lam: float | None = None
    budget: float | None = None
    target: float | None = None  # target success for target-success (default: frontier success - 1 pt)
    delta: float = 0.1
    cascade_accept: float | None = None
    fp32_tol: float = 1e-4
    int8_tol: float = 0.03
    int8_auc_tol: float = 0.005  # 0.5 AUC points
    min_agreement: float = 0.99
    seed: int = 0
    int8_scheme: str | None = None  # all | smooth | ffn_down_fp32; default: try them in that order, ship the first passing
    calibration_prompts: int = 64  # prompts (outside the parity slice) that calibrate the "smooth" int8 scheme
    int8_optional: bool = False  # no int8 scheme passes -> ship fp32 only (recorded) instead of failing the export
    force: bool = False  # replace an existing --out
    card: str | None = None  # model card text file (default: a placeholder)
    threads: int | None = None  # torch/ORT threads during the parity checks


# --- locating the model ----------------------------------------------------------------------------------------


def resolve_model_dir(checkpoint: str | Path) -> Path:
    """The saved model inside a run: the folder itself, else ``final/`` (k-fold final fit), else ``best/``."""
    p = Path(checkpoint)
    for cand in (p, p / "final", p / "best"):
        if all((cand / f).exists() for f in MODEL_FILES):
            return cand
    raise ExportError(f"{p}: no saved router (router_config.json + model.safetensors) in it, its final/ or best/")


def run_dir_of(model_dir: Path) -> Path:
    return model_dir.parent if model_dir.name in ("final", "best") else model_dir


def _train_settings(run_dir: Path) -> dict[str, Any]:
    """dataset_options / data_dir / max_prompts the run was trained with (train_config.yaml), when present."""
    import yaml

    f = run_dir / "train_config.yaml"
    return (yaml.safe_load(f.read_text()) or {}) if f.exists() else {}


# --- ONNX ------------------------------------------------------------------------------------------------------


class _ExportModule:
    """Built lazily (torch import): (input_ids, attention_mask) -> logits, pooled[, cost]."""

    @staticmethod
    def build(model):
        import torch

        class M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                logits, pooled = self.m.export_forward(input_ids, attention_mask)
                if self.m.cost_head is None:
                    return logits, pooled
                return logits, pooled, self.m.cost_head(pooled)

        return M(model).eval()


def onnx_output_names(model) -> list[str]:
    return ["logits", "pooled"] + (["cost"] if model.cost_head is not None else [])


def export_onnx(model, path: str | Path, opset: int = 17) -> None:
    """TorchScript-exporter ONNX with dynamic batch/sequence axes (see the module docstring for why)."""
    import torch

    wrapper = _ExportModule.build(model)
    vocab = int(getattr(model.encoder.config, "vocab_size", 1000))
    ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=(2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # a padded row so the mask path is traced
    names = onnx_output_names(model)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch"} for n in names})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=names, dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                          dynamo=False)


def optimize_onnx(src: str | Path, dst: str | Path, encoder_config) -> dict[str, int]:
    """ORT transformer optimizer (model_type "bert"; heads/hidden size from the encoder config) -> fused-op counts.
    Add + LayerNormalization are NOT fused into SkipLayerNormalization: that kernel is ~5x slower than the pair on
    this CPU (see ``aco_bert.runtime.router.DISABLED_ORT_OPTIMIZERS``, which keeps ORT from fusing them at load)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    n_heads = int(getattr(encoder_config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(encoder_config, "hidden_size", 0) or 0)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    om = optimizer.optimize_model(str(src), model_type="bert", num_heads=n_heads, hidden_size=hidden,
                                  optimization_options=options)
    om.save_model_to_file(str(dst))
    stats = om.get_fused_operator_statistics() or {}
    return {k: int(v) for k, v in stats.items() if v}


INT8_SCHEMES = ("all", "smooth", "ffn_down_fp32")  # tried in this order: the fastest one that passes the gates ships
# The matrix products only. The embedding lookup (EmbedLayerNormalization/Gather) is left fp32: quantising the
# vocabulary table saves file size, not time, and added error (MiniLM: max |dp| 0.043 -> 0.051).
INT8_OP_TYPES = ("MatMul", "Attention")


def _down_projections(model_path: str | Path) -> list[str]:
    """MatMul nodes whose constant weight maps a wider input to a narrower output (the FFN down-projections,
    4H -> H). Their input is the post-GELU activation, whose outliers per-tensor dynamic quantisation handles
    worst; keeping them fp32 roughly halves the int8 error (MiniLM, measured on SWE-bench texts)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in shapes:
            dims = shapes[n.input[1]]
            if len(dims) == 2 and dims[0] > dims[1]:
                out.append(n.name)
    return out


SMOOTH_ALPHAS = (0.5, 0.75, 0.85, 0.95)  # SmoothQuant migration strengths tried per MatMul (and no smoothing)
SMOOTH_ROWS = 2048  # calibration rows (tokens) per MatMul that score each alpha


def _quant_dequant_activation(x: np.ndarray) -> np.ndarray:
    """What ORT's dynamic quantisation does to an activation: one uint8 range per tensor, zero exactly
    representable."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def _quant_dequant_weight(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric int8, as ``quantize_dynamic(per_channel=True)`` stores a MatMul weight."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.round(w / scale) * scale


def calibrate_activations(model, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]],
                          rows: int = SMOOTH_ROWS, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per named tensor: (per-channel max |x| over every real token of ``feeds``, a seeded sample of ``rows``
    token rows). ``model``: an ``onnx.ModelProto`` (left unchanged) or a path. The tensors are exposed as extra
    outputs of an unoptimised copy of the model."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)))
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the named tensors intact
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    amax: dict[str, np.ndarray] = {}
    sample: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    rng = np.random.default_rng(seed)
    per_feed = max(1, rows // max(1, len(feeds)))
    for feed in feeds:
        keep = feed["attention_mask"].reshape(-1).astype(bool)  # padded positions do not count
        for t, x in zip(tensors, sess.run(list(tensors), feed)):
            x = x.reshape(-1, x.shape[-1])[keep]
            a = np.abs(x).max(axis=0)
            amax[t] = a if t not in amax else np.maximum(amax[t], a)
            sample[t].append(x[rng.choice(len(x), size=min(per_feed, len(x)), replace=False)])
    return {t: (amax[t], np.concatenate(sample[t])) for t in tensors}


SMOOTH_OUTLIERS = (0, 8, 16)  # input channels with the largest |x| that may stay fp32 (MatMul only)
SPLIT_GAIN = 0.25  # an fp32 outlier split (Gather + MatMul + Add, ~0.1 ms each) must cut the error by this fraction


def _smoothing_error(x: np.ndarray, w: np.ndarray, s: np.ndarray, hi: np.ndarray) -> float:
    """Relative error, against ``x @ w``, of ``q(x_lo / s) @ q(diag(s) w_lo) + x_hi @ w_hi`` where ``hi`` are the
    channels kept fp32 (zeroed on the int8 path, so they no longer set its ranges)."""
    keep = np.ones(len(s), bool)
    keep[hi] = False
    y = x @ w
    yq = _quant_dequant_activation(x * (keep / s)) @ _quant_dequant_weight(w * (s * keep)[:, None])
    if len(hi):
        yq += x[:, hi] @ w[hi]
    return float(np.linalg.norm(y - yq) / (np.linalg.norm(y) or 1.0))


def smooth_matmuls(src: str | Path, dst: str | Path, feeds: Sequence[dict[str, np.ndarray]],
                   alphas: Sequence[float] = SMOOTH_ALPHAS, outliers: Sequence[int] = SMOOTH_OUTLIERS
                   ) -> dict[str, Any]:
    """Prepare an fp32 graph for dynamic int8: SmoothQuant (Xiao et al., 2023) plus fp32 outlier channels
    (Dettmers et al., 2022, LLM.int8()), for every MatMul / fused Attention with a constant weight.

    Why: dynamic int8 gives an activation ONE range per tensor, and in MiniLM a few channels of the LayerNorm and
    GELU outputs are 10-17x larger than the median channel, so most channels get a handful of int8 levels (the
    FFN down-projection lost 7-9 % of its output norm). Two exact rewrites fix the range:

    * smoothing, ``x @ W == (x / s) @ (diag(s) W)`` with ``s_k = max|x_k|^alpha / max|W_k|^(1 - alpha)`` per
      input channel: one elementwise Mul in front of the MatMul, the per-channel int8 weights absorb ``s``;
    * for a plain MatMul, the ``k`` largest input channels leave the int8 product (their Mul factor is 0) and run
      as a tiny fp32 ``Gather -> MatMul`` added back (``k`` x H multiply-adds per token).

    ``alpha`` and ``k`` are chosen per node: the pair whose simulated int8 product has the least error on the
    calibration rows (nothing is changed where that does not help). ``feeds`` should be real prompts outside the
    slice that judges parity. Returns the choices and ``fp32_nodes``, the outlier MatMuls to keep unquantised."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    targets = [n for n in m.graph.node if n.op_type in INT8_OP_TYPES and len(n.input) >= 2
               and n.input[1] in inits and len(inits[n.input[1]].dims) == 2]
    if not targets:
        raise ExportError(f"{src}: no MatMul/Attention with a constant weight to smooth")
    calib = calibrate_activations(m, sorted({n.input[0] for n in targets}), feeds)  # before m is rewritten
    chosen: dict[str, Any] = {}
    fp32_nodes: list[str] = []
    for node in targets:
        x_name, w_name = node.input[0], node.input[1]
        amax, rows = calib[x_name]
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        w_max = np.maximum(np.abs(w).max(axis=1), 1e-5)
        order = np.argsort(-amax, kind="stable")
        none = np.ones(w.shape[0], np.float32)
        base = _smoothing_error(rows, w, none, order[:0])
        best = {0: (base, None, 0, none)}  # per k: (error, alpha, k, s)
        for k in outliers if node.op_type == "MatMul" else (0,):
            for alpha in (None, *alphas):
                s = none if alpha is None else np.clip(
                    np.maximum(amax, 1e-5) ** alpha / w_max ** (1.0 - alpha), 1e-3, 1e3).astype(np.float32)
                err = _smoothing_error(rows, w, s, order[:k]) if (alpha, k) != (None, 0) else base
                if k not in best or err < best[k][0]:
                    best[k] = (err, alpha, k, s)
        err, alpha, k, s = best[0]
        for cand in (best[k_] for k_ in sorted(best) if k_):
            if cand[0] < (1.0 - SPLIT_GAIN) * best[0][0] and cand[0] < err:
                err, alpha, k, s = cand
        chosen[node.name] = {"alpha": alpha, "fp32_channels": k, "error_before": round(base, 5),
                             "error_after": round(err, 5)}
        if alpha is None and k == 0:
            continue
        hi = np.sort(order[:k])
        keep = np.ones(len(s), np.float32)
        keep[hi] = 0.0
        new_nodes = []
        inv = f"{node.name}_smooth_inv_scale"
        m.graph.initializer.append(numpy_helper.from_array((keep / s).astype(np.float32), inv))
        smoothed = f"{node.name}_smoothed_input"
        new_nodes.append(onnx.helper.make_node("Mul", [x_name, inv], [smoothed], name=f"{node.name}_smooth"))
        inits[w_name].CopyFrom(numpy_helper.from_array((w * (s * keep)[:, None]).astype(np.float32), w_name))
        node.input[0] = smoothed
        if k:
            out = node.output[0]
            users = [n for n in m.graph.node if out in n.input]
            bias_add = users[0] if len(users) == 1 and users[0].op_type == "Add" and any(
                i in inits and len(inits[i].dims) == 1 for i in users[0].input) else None
            # The outlier part joins after the bias Add when there is one: MatMul -> Add(bias) stays adjacent, so
            # ONNX Runtime still fuses the bias into the int8 MatMul (one op fewer per split).
            joint = bias_add if bias_add is not None else node
            out, part = joint.output[0], f"{node.name}_int8_part"
            joint.output[0] = part
            idx, w_hi = f"{node.name}_outlier_channels", f"{node.name}_outlier_weight"
            m.graph.initializer.append(numpy_helper.from_array(hi.astype(np.int64), idx))
            m.graph.initializer.append(numpy_helper.from_array(w[hi].astype(np.float32), w_hi))
            x_hi, y_hi = f"{node.name}_outlier_input", f"{node.name}_outlier_output"
            mm_hi = f"{node.name}_outlier_matmul"
            new_nodes.append(onnx.helper.make_node("Gather", [x_name, idx], [x_hi], name=f"{node.name}_outlier_gather",
                                                   axis=-1))
            new_nodes.append(onnx.helper.make_node("MatMul", [x_hi, w_hi], [y_hi], name=mm_hi))
            fp32_nodes.append(mm_hi)
        pos = list(m.graph.node).index(node)
        for i, n in enumerate(new_nodes):
            m.graph.node.insert(pos + i, n)
        if k:
            pos = list(m.graph.node).index(joint)
            add = onnx.helper.make_node("Add", [part, y_hi], [out], name=f"{node.name}_outlier_add")
            m.graph.node.insert(pos + 1, add)
    onnx.save(m, str(dst))
    return {"alphas": list(alphas), "outlier_channels": list(outliers), "calibration_prompts": len(feeds),
            "nodes": chosen, "fp32_nodes": fp32_nodes}


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quantize_int8(src: str | Path, dst: str | Path, scheme: str = "all",
                  calibration: Sequence[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Dynamic int8 with per-channel weights (per-tensor lost up to 0.04 in probability). ``scheme``:
    ``all`` quantises every MatMul/Attention (not the embeddings); ``smooth`` first applies SmoothQuant to them
    (:func:`smooth_matmuls`; needs ``calibration`` feeds, one prompt each); ``ffn_down_fp32`` keeps those projections in
    fp32 instead (slower: they are a third of the FFN work).
    ``DefaultTensorType`` lets the quantizer type the outputs of fused contrib ops (Attention,
    SkipLayerNormalization) that ONNX shape inference cannot see through."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if scheme not in INT8_SCHEMES:
        raise ValueError(f"int8 scheme {scheme!r} not in {INT8_SCHEMES}")
    info: dict[str, Any] = {}
    exclude = _down_projections(src) if scheme == "ffn_down_fp32" else []
    if scheme == "smooth":
        if not calibration:
            raise ValueError("int8 scheme 'smooth' needs calibration prompts")
        smoothed = Path(dst).with_suffix(".smooth.onnx")
        info["smoothing"] = smooth_matmuls(src, smoothed, calibration)
        exclude = list(info["smoothing"]["fp32_nodes"])
        src = smoothed
    opts = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    root = logging.getLogger()
    quiet = _DropMessage("pre-processing before quantization")  # ORT's advice for static (QDQ) image models
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8, extra_options=opts,
                         op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_exclude=exclude or None)
    finally:
        root.removeFilter(quiet)
        if scheme == "smooth":
            Path(src).unlink(missing_ok=True)
    return {"method": "quantize_dynamic", "per_channel": True, "weight_type": "QInt8", "reduce_range": False,
            "op_types": list(INT8_OP_TYPES), "scheme": scheme, "fp32_nodes": exclude, **info}


# --- data ------------------------------------------------------------------------------------------------------


@dataclass
class ValidationSlice:
    texts: list[str]
    labels: np.ndarray | None  # (N, T) success of the spec's tiers, NaN = unknown
    head_labels: np.ndarray | None = None  # (N, H) success of the heads' tiers (= labels when they coincide)
    prompt_ids: list[str] = field(default_factory=list)
    in_training: int = 0  # how many slice prompts the exported model was trained on
    source: str = ""


def _load_matrix(dataset: str, models: Sequence[str], data_dir: str | None, options: dict[str, Any]):
    from aco_bert.data.registry import load_outcomes

    return load_outcomes(dataset, data_dir=data_dir, **(options or {})).matrix(list(models))


def validation_slice(matrix, n: int, seed: int, trained_ids: set[str] | None, spec_models: Sequence[str],
                     head_models: Sequence[str]) -> ValidationSlice:
    """A seeded random slice of ``n`` prompts, taking prompts the model was not trained on first; labels for the
    spec's tiers and for the heads' tiers (``matrix`` holds both)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(matrix.n_prompts)
    if trained_ids:
        order = np.concatenate([[i for i in order if matrix.prompt_ids[i] not in trained_ids],
                                [i for i in order if matrix.prompt_ids[i] in trained_ids]]).astype(int)
    idx = np.sort(order[:n])
    ids = [matrix.prompt_ids[i] for i in idx]
    succ = np.asarray(matrix.success, float)[idx]
    col = {m: j for j, m in enumerate(matrix.models)}
    return ValidationSlice([matrix.prompts[i] for i in idx], succ[:, [col[m] for m in spec_models]],
                           head_labels=succ[:, [col[m] for m in head_models]], prompt_ids=ids,
                           in_training=sum(1 for p in ids if trained_ids and p in trained_ids))


def calibration_texts(matrix, exclude: set[str], n: int, seed: int) -> list[str]:
    """Up to ``n`` seeded random prompts of ``matrix`` outside ``exclude`` (the parity slice), so the int8
    smoothing is never calibrated on the prompts that judge it."""
    if matrix is None or n <= 0:
        return []
    rng = np.random.default_rng(seed + 1)
    idx = [i for i in rng.permutation(matrix.n_prompts) if matrix.prompt_ids[i] not in exclude][:n]
    return [matrix.prompts[i] for i in idx]


def auc_per_tier(probs: np.ndarray, labels: np.ndarray) -> list[float | None]:
    """ROC AUC per tier on observed labels (>= 0.5 = success); None where a tier has one class only."""
    from sklearn.metrics import roc_auc_score

    out: list[float | None] = []
    for t in range(labels.shape[1]):
        ok = ~np.isnan(labels[:, t])
        y = (labels[ok, t] >= 0.5).astype(int)
        out.append(float(roc_auc_score(y, probs[ok, t])) if 0 < y.sum() < len(y) else None)
    return out


# --- decision layer --------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _find_stack_dir(cfg: ExportConfig, run_dir: Path) -> Path | None:
    if cfg.heads_only:
        return None
    if cfg.stack:
        p = Path(cfg.stack)
        if not (p / B.STACKER_DIR / "manifest.json").exists() and not (p / "manifest.json").exists():
            raise ExportError(f"--stack {p}: no stacker (expected {p}/{B.STACKER_DIR}/manifest.json)")
        return p
    p = run_dir / STACK_DIR_NAME
    return p if (p / B.STACKER_DIR / "manifest.json").exists() else None


def _heads_decision_layer(run_dir: Path, models: list[str], matrix, out: Path, seed: int) -> dict[str, Any]:
    """Heads-only mode: isotonic calibrators on the run's out-of-fold head probabilities, per-tier mean cost.

    Returns the calibration data (cross-fitted calibrated OOF probabilities, labels, costs) for choosing tau.
    """
    from aco_bert.decision.calibration import IsotonicCalibrator
    from aco_bert.decision.cost_model import CostModel, CostModelConfig
    from aco_bert.data.splits import kfold
    from aco_bert.decision.stacker import load_oof

    if not (run_dir / "oof.safetensors").exists():
        raise ExportError(f"{run_dir}: heads-only export needs out-of-fold predictions (oof.safetensors from "
                          "`aco_bert.model.trainer --kfold K`) to fit calibrators on held-out outputs; or pass --stack DIR")
    inputs, meta, _ = load_oof(run_dir, models=models)
    pos = {p: i for i, p in enumerate(matrix.prompt_ids)}
    missing = [p for p in meta["prompt_ids"] if p not in pos]
    if missing:
        raise ExportError(f"{run_dir}: {len(missing)} out-of-fold prompts are not in the dataset, e.g. {missing[:3]}")
    rows = np.array([pos[p] for p in meta["prompt_ids"]])
    labels = np.asarray(matrix.success, float)[rows]
    cost = np.asarray(matrix.cost, float)[rows]
    raw = _sigmoid(inputs.logits)
    cal = IsotonicCalibrator.fit(raw, labels, models)
    cal.save(out / B.CALIBRATORS)
    cm = CostModel.fit(cost, cfg=CostModelConfig(method="mean"), tiers=models)
    cm.save(out / B.COST_MODEL_DIR)
    # Held-out calibrated probabilities for choosing tau: each prompt calibrated by a map not fitted on it.
    held = np.full(raw.shape, np.nan)
    for f in kfold(list(meta["prompt_ids"]), 5, seed + 7):
        held[f.test] = IsotonicCalibrator.fit(raw[f.train], labels[f.train]).transform(raw[f.test])
    return {"probs": held, "labels": labels, "cost": cost, "exp_cost": cm.predict(n=len(rows)),
            "oof": {k: meta.get(k) for k in ("per_tier_auc", "mean_auc", "n_folds")}}


def stack_spec_name(stack: Path) -> str | None:
    """The spec the stacking stage fitted for (``stack_report.json`` config), when it says."""
    f = stack / "stack_report.json"
    if f.exists():
        return (json.loads(f.read_text()).get("config") or {}).get("spec")
    return None


def _stacked_decision_layer(stack: Path, models: list[str], out: Path) -> dict[str, Any]:
    """Copy the stacking stage's artifacts into the bundle (checked to load and to match the spec's tiers)."""
    from aco_bert.decision.calibration import IsotonicCalibrator
    from aco_bert.decision.stacker import Stacker

    st_dir = stack / B.STACKER_DIR if (stack / B.STACKER_DIR).exists() else stack
    st = Stacker.load(st_dir)
    if list(st.tiers) != list(models):
        raise ExportError(f"{st_dir}: stacker tiers {st.tiers} are not the spec's {models}")
    cal_file = next((stack / n for n in STACK_CALIBRATOR_NAMES if (stack / n).exists()), None)
    if cal_file is None:
        raise ExportError(f"{stack}: no calibrator ({' or '.join(STACK_CALIBRATOR_NAMES)}) for the stacker's output")
    cal = IsotonicCalibrator.load(cal_file)
    if cal.n_tiers != len(models):
        raise ExportError(f"{cal_file}: calibrator has {cal.n_tiers} tiers, the model {len(models)}")
    shutil.copytree(st_dir, out / B.STACKER_DIR)
    shutil.copyfile(cal_file, out / B.CALIBRATORS)
    if (stack / B.COST_MODEL_DIR / "manifest.json").exists():
        shutil.copytree(stack / B.COST_MODEL_DIR, out / B.COST_MODEL_DIR)
    if (stack / B.VERIFIER_DIR / "manifest.json").exists():
        shutil.copytree(stack / B.VERIFIER_DIR, out / B.VERIFIER_DIR)
    routing = json.loads((stack / STACK_ROUTING).read_text()) if (stack / STACK_ROUTING).exists() else {}
    return {"routing": routing}


def _choose_policy(cfg: ExportConfig, base: dict[str, Any], calib: dict[str, Any] | None, spec) -> dict[str, Any]:
    """The routing section: CLI flags win, then the stacking stage's routing.json, then target-success with tau
    certified by Learn-then-Test on held-out calibrated probabilities (heads mode)."""
    routing = dict(base)
    for k in ("policy", "tau", "lam", "budget", "target"):
        v = getattr(cfg, k)
        if v is not None:
            routing[k] = v
    if cfg.tau is not None and cfg.policy is None:
        routing["policy"] = "threshold"
    routing.setdefault("policy", "target-success")
    pol = routing["policy"]
    if pol == "target-success" and (routing.get("tau") is None or cfg.target is not None):
        if calib is None:
            raise ExportError("target-success needs held-out calibration data; give --tau (or a routing.json)")
        from aco_bert.policies.base import RoutingContext
        from aco_bert.policies.floors import TargetSuccess

        labels = calib["labels"]
        if routing.get("target") is None:  # always-frontier success on these prompts, minus 1 point
            f = spec.models.index(spec.frontier) if spec.frontier in spec.models else spec.n_tiers - 1
            routing["target"] = float(np.nanmean(labels[:, f]) - 0.01)
        ok = ~np.isnan(calib["probs"]).any(axis=1)
        ctx = RoutingContext(calib["probs"][ok], calib["exp_cost"][ok])
        ts = TargetSuccess(float(routing["target"]), float(routing.get("delta", cfg.delta))).fit(
            ctx, labels[ok], calib["cost"][ok])
        routing.update({"tau": float(ts.tau), "delta": float(ts.delta), "guaranteed": bool(ts.guaranteed),
                        "tau_source": "learn-then-test on held-out calibrated out-of-fold probabilities"})
    if pol in ("threshold", "target-success") and routing.get("tau") is None:
        raise ExportError(f"policy {pol!r} needs --tau")
    if pol == "utility" and routing.get("lam") is None:
        raise ExportError("policy 'utility' needs --lam")
    cascade = dict(routing.get("cascade") or {})
    if cfg.cascade_accept is not None:
        cascade["accept"] = cfg.cascade_accept
    cascade.setdefault("accept", 0.5)
    routing["cascade"] = cascade
    return routing


# --- parity ----------------------------------------------------------------------------------------------------


def torch_outputs(model, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    wrapper = _ExportModule.build(model)
    with torch.no_grad():
        outs = wrapper(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))
    return {n: o.numpy() for n, o in zip(onnx_output_names(model), outs)}


def _batched(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def _torch_reference(router, model, texts: list[str], batch: int = 32):
    """Torch outputs and the torch pipeline's decisions on the very token ids the runtime feeds ORT."""
    parts: dict[str, list[np.ndarray]] = {}
    decisions = []
    for sl in _batched(len(texts), batch):
        enc = router.encode(texts[sl])
        out = torch_outputs(model, enc.feed)
        decisions += router.decide_from_outputs(texts[sl], out, enc)
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}, decisions


def compare_to_torch(router, texts: list[str], ref: dict[str, np.ndarray], torch_dec: list,
                     labels: np.ndarray | None, tag: str, head_labels: np.ndarray | None = None) -> dict[str, Any]:
    """One ORT router against the torch reference: head |dp|, calibrated |dp|, pooled |d|, decision agreement,
    per-tier AUCs of the heads and of the router's final probabilities."""
    t = time.perf_counter()
    _, out = router.infer(texts)
    dec = router.route_batch(texts)
    p, p_ref = _sigmoid(out["logits"]), _sigmoid(ref["logits"])
    final, final_ref = np.array([d.probs for d in dec]), np.array([d.probs for d in torch_dec])
    r: dict[str, Any] = {
        "max_abs_dp": float(np.max(np.abs(p - p_ref))), "mean_abs_dp": float(np.mean(np.abs(p - p_ref))),
        "max_abs_dp_calibrated": float(np.max(np.abs(final - final_ref))),
        "max_abs_d_pooled": float(np.max(np.abs(out["pooled"] - ref["pooled"]))),
        "decision_agreement": float(np.mean([a.tier == b.tier for a, b in zip(dec, torch_dec)])),
        "seconds": round(time.perf_counter() - t, 3)}
    if labels is not None:
        hl = labels if head_labels is None else head_labels
        a_t, a_o = auc_per_tier(p_ref, hl), auc_per_tier(p, hl)
        r["head_auc_torch"], r[f"head_auc_{tag}"] = a_t, a_o
        ch = [abs(x - y) for x, y in zip(a_t, a_o) if x is not None and y is not None]
        r["max_abs_auc_change"] = max(ch, default=0.0)
        r["mean_abs_auc_change"] = float(np.mean(ch)) if ch else 0.0
        r["router_auc_torch"] = auc_per_tier(final_ref, labels)
        r[f"router_auc_{tag}"] = auc_per_tier(final, labels)
    return r


def fp32_failures(r: dict[str, Any], cfg: ExportConfig) -> list[str]:
    bad = []
    if not r["max_abs_dp"] <= cfg.fp32_tol:
        bad.append(f"fp32 vs torch max |dp| {r['max_abs_dp']:.3g} > {cfg.fp32_tol:g}")
    if not r["decision_agreement"] >= cfg.min_agreement:
        bad.append(f"fp32 runtime decisions agree with torch on {r['decision_agreement']:.1%} < {cfg.min_agreement:.0%}")
    return bad


def int8_failures(r: dict[str, Any], cfg: ExportConfig) -> list[str]:
    bad = []
    if not r["max_abs_dp"] <= cfg.int8_tol:
        bad.append(f"int8 vs torch max |dp| {r['max_abs_dp']:.3g} > {cfg.int8_tol:g}")
    if "max_abs_auc_change" in r and not r["max_abs_auc_change"] <= cfg.int8_auc_tol:
        bad.append(f"int8 per-tier AUC change {r['max_abs_auc_change'] * 100:.2f} pt > {cfg.int8_auc_tol * 100:.2f} pt")
    return bad


def parity_report(model, bundle_dir: Path, vs: ValidationSlice, cfg: ExportConfig,
                  calibration_texts: Sequence[str] = ()) -> dict[str, Any]:
    """fp32 ORT against torch on ``vs``, then (``cfg.int8``) int8 schemes from the fastest until one passes the
    int8 gates; the passing model is left at ``model.int8.onnx`` (none is left when all fail).
    ``calibration_texts`` (prompts outside ``vs``) calibrate the ``smooth`` scheme."""
    from aco_bert.runtime import Router

    texts = vs.texts
    r32 = Router.load(bundle_dir, int8=False, verify=False, threads=cfg.threads)
    t0 = time.perf_counter()
    ref, torch_dec = _torch_reference(r32, model, texts)
    rep: dict[str, Any] = {"n_prompts": len(texts), "source": vs.source, "prompts_in_training": vs.in_training,
                           "torch_seconds": round(time.perf_counter() - t0, 3)}
    rep["fp32"] = compare_to_torch(r32, texts, ref, torch_dec, vs.labels, "fp32", vs.head_labels)
    failed = fp32_failures(rep["fp32"], cfg)
    if cfg.int8 and not failed:
        schemes = [cfg.int8_scheme] if cfg.int8_scheme else list(INT8_SCHEMES)
        attempts = []
        # one prompt per feed, as the int8 runtime runs them; only the smooth scheme reads them
        calib = [r32.encode([t]).feed for t in calibration_texts or FALLBACK_PROMPTS] if "smooth" in schemes else None
        for scheme in schemes:
            quant = quantize_int8(bundle_dir / B.MODEL_FP32, bundle_dir / B.MODEL_INT8, scheme, calib)
            r8 = Router.load(bundle_dir, int8=True, verify=False, threads=cfg.threads)
            q = compare_to_torch(r8, texts, ref, torch_dec, vs.labels, "int8", vs.head_labels)
            q["decision_agreement_vs_fp32"] = float(np.mean(
                [a.tier == b.tier for a, b in zip(r8.route_batch(texts), r32.route_batch(texts))]))
            bad = int8_failures(q, cfg)
            logger.info("int8 scheme %s: max |dp| %.4f, max AUC change %.2f pt", scheme, q["max_abs_dp"],
                        100 * q.get("max_abs_auc_change", 0.0))
            attempts.append({"scheme": scheme, "passed": not bad, "failures": bad,
                             **{k: q.get(k) for k in ("max_abs_dp", "mean_abs_dp", "max_abs_auc_change",
                                                      "mean_abs_auc_change", "decision_agreement")}})
            if not bad:
                rep["int8"], rep["quantization"] = q, quant
                break
            logger.info("int8 scheme %s rejected: %s", scheme, "; ".join(bad))
        rep["int8_attempts"] = attempts
        if "int8" not in rep:
            (bundle_dir / B.MODEL_INT8).unlink(missing_ok=True)
            why = [f"int8 ({a['scheme']}): " + "; ".join(a["failures"]) for a in attempts]
            if cfg.int8_optional:
                rep["int8_rejected"] = why
                logger.warning("no int8 scheme passed the gates; shipping fp32 only: %s", " | ".join(why))
            else:
                failed += why
    rep["failures"] = failed
    return rep


def check_gates(rep: dict[str, Any], cfg: ExportConfig) -> list[str]:
    """The failed gates, as readable lines (empty = the bundle may ship)."""
    return list(rep.get("failures", []))


# --- the export ------------------------------------------------------------------------------------------------


def _spec_for(model_config, run_dir: Path, stack: Path | None = None):
    """The bundle's tiers. Heads-only: the model's own tiers (one head each). Stacked: the spec the stacker was
    fitted for, which may route among a subset of the heads' tiers (every head logit is a stacker input)."""
    from aco_bert.spec import RouterSpec, Tier

    name = (stack_spec_name(stack) if stack is not None else None) or model_config.spec
    if name:
        spec = RouterSpec.load(name)
        if stack is None and spec.models != list(model_config.models):
            raise ExportError(f"spec {name!r} tiers {spec.models} differ from the model's {model_config.models}; "
                              "a different tier set needs a stacker (--stack)")
        return spec
    return RouterSpec(name=run_dir.name, tiers=[Tier(model=m) for m in model_config.models],
                      dataset=model_config.dataset)


def export(cfg: ExportConfig) -> dict[str, Any]:
    """Run the export; returns the manifest. Raises :class:`ExportError` (and writes nothing at ``cfg.out``) when
    an input is missing or a parity gate fails."""
    import torch
    import yaml

    from aco_bert.model.modeling import RouterModel

    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    model_dir = resolve_model_dir(cfg.checkpoint)
    run_dir = run_dir_of(model_dir)
    train_cfg = _train_settings(run_dir)
    data_dir = cfg.data_dir or train_cfg.get("data_dir")
    model = RouterModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    mc = model.config
    stack = _find_stack_dir(cfg, run_dir)
    spec = _spec_for(mc, run_dir, stack)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix=".export-work.", dir=out.parent))
    try:
        # 1-3. ONNX, optimised
        logger.info("exporting %s (%s) to ONNX", model_dir, getattr(model.encoder.config, "model_type", "?"))
        t = time.perf_counter()
        export_onnx(model, work / "raw.onnx", cfg.opset)
        fused = optimize_onnx(work / "raw.onnx", tmp / B.MODEL_FP32, model.encoder.config)
        timings = {"onnx_export_s": round(time.perf_counter() - t, 2)}
        n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
        if n_layers and fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0) < n_layers:
            logger.warning("attention fused in %s of %d layers (%s)", fused.get("Attention", 0), n_layers, fused)
        # tokenizer
        (tmp / B.TOKENIZER_DIR).mkdir()
        from aco_bert.model.tokenization import TOKENIZER_FILES

        for name in TOKENIZER_FILES:
            if (model_dir / name).exists():
                shutil.copyfile(model_dir / name, tmp / B.TOKENIZER_DIR / name)
        if not (tmp / B.TOKENIZER_DIR / "tokenizer.json").exists():
            raise ExportError(f"{model_dir}: no tokenizer.json next to the model")
        # 5. decision layer
        matrix = None
        dataset = spec.dataset or mc.dataset
        if dataset:
            try:
                matrix = _load_matrix(dataset, list(dict.fromkeys(list(mc.models) + spec.models)), data_dir,
                                      train_cfg.get("dataset_options") or {})
            except (FileNotFoundError, OSError, ValueError) as e:
                logger.warning("dataset %r not loadable (%s): no labelled validation slice", dataset, e)
        calib = None
        if stack is not None:
            mode, base = "stacked", _stacked_decision_layer(stack, spec.models, tmp)["routing"]
            if not (tmp / B.COST_MODEL_DIR / "manifest.json").exists():
                if matrix is None:
                    raise ExportError(f"{stack} has no cost_model/ and the dataset is unavailable for mean costs")
                from aco_bert.decision.cost_model import CostModel, CostModelConfig

                cols = [matrix.models.index(m_) for m_ in spec.models]
                CostModel.fit(np.asarray(matrix.cost, float)[:, cols], cfg=CostModelConfig(method="mean"),
                              tiers=spec.models).save(tmp / B.COST_MODEL_DIR)
            missing = [m_ for m_ in spec.models if m_ not in mc.models]
            if missing and model.cost_head is not None:
                from aco_bert.decision.cost_model import CostModel

                if (CostModel.load(tmp / B.COST_MODEL_DIR).layout or {}).get("heads"):
                    raise ExportError(f"the cost model reads the neural cost heads, but tiers {missing} have none")
        else:
            if matrix is None:
                raise ExportError("heads-only export needs the training dataset (labels for calibration); "
                                  "set --data-dir or $ACO_BERT_DATA_DIR")
            mode, base = "heads", {}
            calib = _heads_decision_layer(run_dir, list(mc.models), matrix, tmp, cfg.seed)
        routing = _choose_policy(cfg, base, calib, spec)
        routing["mode"] = mode
        routing.setdefault("cost_heads_input", "usd")
        outputs = onnx_output_names(model)
        router_yaml = {
            "format": B.FORMAT,
            "spec": spec.to_dict(),
            "routing": json_safe(routing),
            "model": {"max_length": int(mc.max_length), "truncation": mc.truncation, "tail_tokens": mc.tail_tokens,
                      "pooling": mc.pooling, "encoder": mc.encoder, "n_tiers": mc.n_tiers,
                      "hidden_size": int(model.hidden_size), "head_models": list(mc.models),
                      "inputs": ["input_ids", "attention_mask"],
                      "outputs": outputs, "opset": cfg.opset},
        }
        (tmp / B.ROUTER_YAML).write_text(yaml.safe_dump(router_yaml, sort_keys=False, allow_unicode=True))
        if cfg.card:
            B.write_model_card(tmp, text=Path(cfg.card).read_text())
        else:
            B.write_model_card(tmp, {"mode": mode, "spec": spec.name, "dataset": mc.dataset, "encoder": mc.encoder,
                                     "policy": routing.get("policy")})
        # 4. int8
        # 6. parity on a validation slice
        trained: set[str] = set()
        oof_meta = run_dir / "oof_meta.json"
        if oof_meta.exists() and model_dir.name == "final":
            trained = set(json.loads(oof_meta.read_text())["prompt_ids"])
        if matrix is not None and cfg.validation_slice > 0:
            vs = validation_slice(matrix, min(cfg.validation_slice, matrix.n_prompts), cfg.seed, trained or None,
                                  spec.models, list(mc.models))
            vs.source = f"{dataset}: {len(vs.texts)} seeded random prompts (untrained first)"
        else:
            vs = ValidationSlice(list(FALLBACK_PROMPTS), None, source="built-in prompts (no labelled data)")
        B.write_manifest(tmp, {"mode": mode})  # provisional, so the parity Router loads a well-formed bundle
        calib_texts = calibration_texts(matrix, set(vs.prompt_ids), cfg.calibration_prompts, cfg.seed)
        logger.info("parity on %d prompts (%s)", len(vs.texts), vs.source)
        t = time.perf_counter()
        rep = parity_report(model, tmp, vs, cfg, calib_texts)
        if "quantization" in rep and "smoothing" in rep["quantization"]:
            rep["quantization"]["calibration"] = (f"{len(calib_texts)} {dataset} prompts outside the parity slice"
                                                  if calib_texts else "built-in prompts")
        timings["parity_s"] = round(time.perf_counter() - t, 2)
        failed = check_gates(rep, cfg)
        rep["gates"] = {"fp32_max_abs_dp": cfg.fp32_tol, "min_decision_agreement": cfg.min_agreement,
                        "int8_max_abs_dp": cfg.int8_tol, "int8_max_auc_change": cfg.int8_auc_tol}
        rep["passed"] = not failed
        if failed:
            raise ExportError("export rejected, parity gate(s) failed: " + "; ".join(failed), json_safe(rep))
        info = {
            "mode": mode,
            "spec": spec.name,
            "dataset": dataset,
            "models": list(spec.models),
            "head_models": list(mc.models),
            "encoder": {"name": mc.encoder, "model_type": getattr(model.encoder.config, "model_type", None),
                        "hidden_size": int(model.hidden_size), "layers": n_layers, "max_length": int(mc.max_length),
                        "attn_implementation": "eager", "fused_ops": fused, "opset": cfg.opset},
            "int8": rep.get("quantization"),
            "routing": json_safe(routing),
            "parity": json_safe(rep),
            "validation": json_safe({"oof": (calib or {}).get("oof") or _oof_summary(run_dir),
                                      "slice": {k: rep[k] for k in ("n_prompts", "source", "prompts_in_training")}}),
            "source": {"checkpoint": str(Path(cfg.checkpoint)), "model_dir": str(model_dir),
                       "stack": None if stack is None else str(stack)},
            "timings": timings | {"total_s": round(time.perf_counter() - t_start, 2)},
        }
        manifest = B.write_manifest(tmp, info)
        B.verify_bundle(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _oof_summary(run_dir: Path) -> dict[str, Any] | None:
    f = run_dir / "oof_meta.json"
    if not f.exists():
        return None
    m = json.loads(f.read_text())
    return {k: m.get(k) for k in ("per_tier_auc", "mean_auc", "n_folds")}


# --- CLI -------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aco_bert.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training run (checkpoints/<run>) or saved model folder")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic, per-channel)")
    p.add_argument("--int8-scheme", choices=INT8_SCHEMES, default=None,
                   help="int8 scheme (default: the fastest that passes the gates, in the order all, smooth, "
                        "ffn_down_fp32)")
    p.add_argument("--calibration-prompts", type=int, default=64,
                   help="real prompts outside the parity slice that calibrate the smooth int8 scheme")
    p.add_argument("--int8-optional", action="store_true",
                   help="when no int8 scheme passes the gates, ship fp32 only (recorded) instead of failing")
    p.add_argument("--fp32-tol", type=float, default=1e-4, help="gate: fp32 vs torch max |dp|")
    p.add_argument("--int8-tol", type=float, default=0.03, help="gate: int8 vs torch max |dp|")
    p.add_argument("--int8-auc-tol", type=float, default=0.005, help="gate: int8 per-tier AUC change (0.005 = 0.5 pt)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="gate: fp32 decisions equal to torch's")
    p.add_argument("--validation-slice", type=int, default=256, help="real prompts for the parity gates (0: none)")
    p.add_argument("--data-dir", default=None, help="shared data folder (default $ACO_BERT_DATA_DIR)")
    p.add_argument("--stack", default=None, help="stacking artifacts (default <checkpoint>/stack when present)")
    p.add_argument("--heads-only", action="store_true", help="heads-only mode even when stacking artifacts exist")
    p.add_argument("--policy", choices=("threshold", "target-success", "utility", "budget"), default=None)
    p.add_argument("--tau", type=float, default=None)
    p.add_argument("--lam", type=float, default=None)
    p.add_argument("--budget", type=float, default=None, help="default per-task budget of the budget policy")
    p.add_argument("--target", type=float, default=None, help="target success rate for --policy target-success")
    p.add_argument("--delta", type=float, default=0.1)
    p.add_argument("--cascade-accept", type=float, default=None)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--card", default=None, help="model card text file to ship (default: a placeholder)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # WARNING at the root: onnxruntime's optimizer and quantizer log every node at INFO through the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    cfg = ExportConfig(**{k: v for k, v in vars(args).items()})
    try:
        manifest = export(cfg)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        if e.report:
            print(json.dumps(e.report, indent=2), file=sys.stderr)
        return 1
    par = manifest["parity"]
    summary = {"bundle": cfg.out, "mode": manifest["mode"], "fp32_max_abs_dp": par["fp32"]["max_abs_dp"],
               "fp32_decision_agreement": par["fp32"]["decision_agreement"],
               "fused_ops": manifest["encoder"]["fused_ops"], "timings": manifest["timings"]}
    if "int8" in par:
        summary |= {"int8_scheme": manifest["int8"]["scheme"], "int8_max_abs_dp": par["int8"]["max_abs_dp"],
                    "int8_max_auc_change": par["int8"].get("max_abs_auc_change")}
    if "int8_rejected" in par:
        summary["int8_rejected"] = par["int8_rejected"]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
