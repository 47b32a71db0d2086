"""Dynamic int8 for the exported graph: schemes, SmoothQuant smoothing with fp32 outlier channels, quantisation.

``quantize_dynamic(per_channel=True)`` -> ``model.int8.onnx`` (per-tensor weights lost up to 0.04 in probability).
Schemes are tried from the fastest and the first that passes the int8 parity gates ships
(:func:`aco_bert.export.parity.parity_report`): ``all`` (every MatMul/Attention), ``smooth`` (SmoothQuant + fp32
outlier channels, calibrated on real prompts outside the parity slice: a quarter of the error for ~1 ms at 256
tokens), ``ffn_down_fp32`` (FFN down-projections kept fp32: about half the error, 3+ ms slower).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aco_bert.export.errors import ExportError

INT8_SCHEMES = ("all", "smooth", "ffn_down_fp32")  # tried in this order: the fastest one that passes the gates ships
# The matrix products only. The embedding lookup (EmbedLayerNormalization/Gather) is left fp32: quantising the
# vocabulary table saves file size, not time, and added error (MiniLM: max |dp| 0.043 -> 0.051).
INT8_OP_TYPES = ("MatMul", "Attention")


def down_projections(model_path: str | Path) -> list[str]:
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
    exclude = down_projections(src) if scheme == "ffn_down_fp32" else []
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
