"""ONNX graph of a trained router: the training forward, traced once, then fused by ORT's transformer optimizer.

Why the graph is traced from :meth:`aco_bert.model.modeling.RouterModel.forward` itself (no export-only forward):
an export path of its own once fed the cost head the raw pooled embedding while training fed it the
L2-normalised one (``normalize: true``), and a parity check built on the same wrapper could not see it.

* ``attn_implementation="eager"`` (set when the model is loaded): the explicit softmax(QK^T)V graph is what the
  optimizer recognises and fuses into one ``Attention`` op (SDPA exports to a graph it does not fuse).
* The TorchScript exporter (``dynamo=False``) on purpose: on torch 2.13 the dynamo exporter's graph is not fused
  by the ORT optimizer (measured: 0 Attention nodes vs 6 for MiniLM), and fusion is most of the CPU speed-up.
* A windowed model (``truncation: chunked``) takes (batch, chunks, sequence) ids and mask; the flattening, the
  per-window pooling and the pooling over windows are part of the traced forward, so they are in the graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

INPUT_NAMES = ("input_ids", "attention_mask")


def onnx_output_names(model) -> list[str]:
    """The graph's outputs, in order: success ``logits``, raw ``pooled`` embedding, and ``cost`` with cost heads."""
    return ["logits", "pooled"] + (["cost"] if model.cost_head is not None else [])


def graph_module(model):
    """A ``torch.nn.Module`` ``(input_ids, attention_mask) -> (logits, pooled[, cost])`` that only unpacks
    ``model(...)``'s :class:`RouterOutput` into the plain tensors the tracer needs (auxiliary heads are training
    targets, not routing inputs: left out, and pruned from the graph as dead code)."""
    import torch

    class RouterGraph(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask)
            return (out.logits, out.pooled) + ((out.cost,) if out.cost is not None else ())

    return RouterGraph(model).eval()


def export_onnx(model, path: str | Path, opset: int = 17) -> None:
    """TorchScript-exporter ONNX with dynamic batch/sequence (and chunks) axes (see the module docstring for why)."""
    import torch

    wrapper = graph_module(model)
    vocab = int(getattr(model.encoder.config, "vocab_size", 1000))
    chunked = model.config.chunked
    size = (2, 3, 16) if chunked else (2, 16)
    ids = torch.randint(low=min(1000, vocab - 1), high=vocab, size=size, generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, ..., 11:] = 0  # a padded row so the mask path is traced
    if chunked:
        mask[1, 2] = 0  # and a padding window
    names = onnx_output_names(model)
    seq_axes = {0: "batch", 1: "chunks", 2: "sequence"} if chunked else {0: "batch", 1: "sequence"}
    axes: dict[str, Any] = {n: dict(seq_axes) for n in INPUT_NAMES}
    axes.update({n: {0: "batch"} for n in names})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask), str(path), input_names=list(INPUT_NAMES), output_names=names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)


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
