"""Parity gates: the exported bundle, run by the torch-free runtime, against the training forward in torch.

Why a separate torch reference instead of trusting the graph: ONNX tracing, the ORT optimizer's fusions and int8
quantisation all change numbers. The reference is :meth:`RouterModel.forward` itself (:func:`torch_outputs`),
never an export wrapper, so a step the graph skips shows up as a parity failure. Measured on a validation slice of
real prompts with real labels (untrained ones first) and recorded in the manifest; the export fails when a gate is
exceeded: fp32 ORT vs torch max |dp| <= 1e-4, the runtime's decisions equal the torch pipeline's on >= 99 % of
prompts, int8 max |dp| <= 0.03 and per-tier AUC change <= 0.5 pt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from aco_bert.artifacts import bundle as B
from aco_bert.decision.calibration import sigmoid
from aco_bert.export.int8 import INT8_SCHEMES, quantize_int8
from aco_bert.export.onnx import onnx_output_names

if TYPE_CHECKING:
    from aco_bert.export.build import ExportConfig

logger = logging.getLogger("aco_bert.export.parity")

FALLBACK_PROMPTS = (  # parity without data (--validation_slice 0): varied shapes, not a validation
    "Fix the crash when the config file is empty.",
    "The parser raises a ValueError on nested lists:\n\n    Traceback (most recent call last):\n      File \"a.py\", "
    "line 3, in <module>\n    ValueError: bad input\n\nExpected the list to be flattened.",
    "Add a --verbose flag to the CLI and document it in the README. " * 20,
    "Is this contract clause legally binding for the tenant?",
)
BATCH = 32  # prompts per torch / fp32 ORT batch (the same token ids for both)


# --- the validation slice --------------------------------------------------------------------------------------


@dataclass
class ValidationSlice:
    texts: list[str]
    labels: np.ndarray | None  # (N, T) success of the spec's tiers, NaN = unknown
    head_labels: np.ndarray | None = None  # (N, H) success of the heads' tiers (= labels when they coincide)
    prompt_ids: list[str] = field(default_factory=list)
    in_training: int = 0  # how many slice prompts the exported model was trained on
    source: str = ""


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
    """:func:`aco_bert.evaluation.metrics.core.per_tier_auc` as a JSON-ready list (None where a tier has one
    class only), for the manifest's parity section."""
    from aco_bert.evaluation.metrics.core import per_tier_auc

    return [None if not np.isfinite(a) else float(a) for a in per_tier_auc(labels, probs)]


# --- outputs: torch (the training forward) and ORT (the runtime) -----------------------------------------------


def torch_outputs(model, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``model(input_ids, attention_mask)`` -- the training forward, eval mode -- as the ONNX graph's named
    outputs (``logits``, ``pooled``[, ``cost``])."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(feed["input_ids"]), attention_mask=torch.from_numpy(feed["attention_mask"]))
    return {n: getattr(out, n).numpy() for n in onnx_output_names(model)}


def _batches(n: int, size: int = BATCH):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def _torch_reference(router, model, texts: list[str]):
    """Torch outputs and the torch pipeline's decisions on the very token ids the runtime feeds ORT."""
    parts: dict[str, list[np.ndarray]] = {}
    decisions = []
    for sl in _batches(len(texts)):
        enc = router.encode(texts[sl])
        out = torch_outputs(model, enc.feed)
        decisions += router.decide_from_outputs(texts[sl], out, enc)
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}, decisions


def ort_outputs(router, texts: list[str], one_by_one: bool) -> dict[str, np.ndarray]:
    """The runtime's ONNX outputs through its public stages (``encode`` -> ``forward``): batches of the torch
    reference's size, or one prompt per call as the int8 runtime runs them (a batch-wide activation range would
    make a prompt's int8 output depend on its batch-mates)."""
    parts: dict[str, list[np.ndarray]] = {}
    slices = [slice(i, i + 1) for i in range(len(texts))] if one_by_one else list(_batches(len(texts)))
    for sl in slices:
        for k, v in router.forward(router.encode(texts[sl]).feed).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def compare_to_torch(router, texts: list[str], ref: dict[str, np.ndarray], torch_dec: list,
                     labels: np.ndarray | None, tag: str, head_labels: np.ndarray | None = None,
                     one_by_one: bool = False) -> dict[str, Any]:
    """One ORT router against the torch reference: head |dp|, calibrated |dp|, pooled |d|, cost |d|, decision
    agreement, per-tier AUCs of the heads and of the router's final probabilities."""
    t = time.perf_counter()
    out = ort_outputs(router, texts, one_by_one)
    dec = router.route_batch(texts)
    p, p_ref = sigmoid(out["logits"]), sigmoid(ref["logits"])
    final, final_ref = np.array([d.probs for d in dec]), np.array([d.probs for d in torch_dec])
    r: dict[str, Any] = {
        "max_abs_dp": float(np.max(np.abs(p - p_ref))), "mean_abs_dp": float(np.mean(np.abs(p - p_ref))),
        "max_abs_dp_calibrated": float(np.max(np.abs(final - final_ref))),
        "max_abs_d_pooled": float(np.max(np.abs(out["pooled"] - ref["pooled"]))),
        "decision_agreement": float(np.mean([a.tier == b.tier for a, b in zip(dec, torch_dec)])),
        "seconds": round(time.perf_counter() - t, 3)}
    if "cost" in ref:
        r["max_abs_d_cost"] = float(np.max(np.abs(out["cost"] - ref["cost"])))
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


# --- gates -----------------------------------------------------------------------------------------------------


def fp32_failures(r: dict[str, Any], cfg: "ExportConfig") -> list[str]:
    bad = []
    if not r["max_abs_dp"] <= cfg.fp32_tol:
        bad.append(f"fp32 vs torch max |dp| {r['max_abs_dp']:.3g} > {cfg.fp32_tol:g}")
    if "max_abs_d_cost" in r and not r["max_abs_d_cost"] <= cfg.fp32_tol:
        bad.append(f"fp32 vs torch max |d cost| {r['max_abs_d_cost']:.3g} > {cfg.fp32_tol:g}")
    if not r["decision_agreement"] >= cfg.min_agreement:
        bad.append(f"fp32 runtime decisions agree with torch on {r['decision_agreement']:.1%} < {cfg.min_agreement:.0%}")
    return bad


def int8_failures(r: dict[str, Any], cfg: "ExportConfig") -> list[str]:
    bad = []
    if not r["max_abs_dp"] <= cfg.int8_tol:
        bad.append(f"int8 vs torch max |dp| {r['max_abs_dp']:.3g} > {cfg.int8_tol:g}")
    if "max_abs_auc_change" in r and not r["max_abs_auc_change"] <= cfg.int8_auc_tol:
        bad.append(f"int8 per-tier AUC change {r['max_abs_auc_change'] * 100:.2f} pt > {cfg.int8_auc_tol * 100:.2f} pt")
    return bad


def gates(cfg: "ExportConfig") -> dict[str, float]:
    """The thresholds used, for the manifest."""
    return {"fp32_max_abs_dp": cfg.fp32_tol, "min_decision_agreement": cfg.min_agreement,
            "int8_max_abs_dp": cfg.int8_tol, "int8_max_auc_change": cfg.int8_auc_tol}


def parity_report(model, bundle_dir: Path, vs: ValidationSlice, cfg: "ExportConfig",
                  calibration_texts: Sequence[str] = ()) -> dict[str, Any]:
    """fp32 ORT against torch on ``vs``, then (``cfg.int8``) int8 schemes from the fastest until one passes the
    int8 gates; the passing model is left at ``model.int8.onnx`` (none is left when all fail). ``failures``
    lists every failed gate (empty: the bundle may ship). ``calibration_texts`` (prompts outside ``vs``)
    calibrate the ``smooth`` scheme."""
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
        fp32_dec = r32.route_batch(texts)
        for scheme in schemes:
            quant = quantize_int8(bundle_dir / B.MODEL_FP32, bundle_dir / B.MODEL_INT8, scheme, calib)
            r8 = Router.load(bundle_dir, int8=True, verify=False, threads=cfg.threads)
            q = compare_to_torch(r8, texts, ref, torch_dec, vs.labels, "int8", vs.head_labels, one_by_one=True)
            q["decision_agreement_vs_fp32"] = float(np.mean(
                [a.tier == b.tier for a, b in zip(r8.route_batch(texts), fp32_dec)]))
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
    rep["gates"] = gates(cfg)
    rep["passed"] = not failed
    return rep
