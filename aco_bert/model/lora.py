"""LoRA fine-tuning of the router's encoder (``peft``): train low-rank adapters on the attention projections, keep
the encoder's own weights frozen, then merge the adapters back so the saved router is a plain :class:`RouterModel`.

Why: on 2 CPU cores a full fine-tune of even the 3-layer MiniLM updates ~11M weights per step; LoRA adapts the
same layers with a few thousand, moves the representation further than heads on frozen embeddings can, and merges
into the weights at no routing cost. Because :func:`merge_lora` folds every adapter into its ``nn.Linear`` before
the model is saved or used for predictions, ``save_pretrained``/``from_pretrained``, ONNX export, parity and the
torch-free runtime never see peft (it is needed only while training).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from aco_bert.model.modeling import RouterModel

# Attention query/key/value projections: BERT-family (all-MiniLM is a BertModel) and DistilBERT names.
DEFAULT_TARGETS = ("query", "key", "value", "q_lin", "k_lin", "v_lin")
# Sub-modules the router never runs (RouterModel pools the last hidden states itself): adapters there get no
# gradient, so they are never targeted (BERT's pooler.dense would otherwise match a "dense" target).
UNUSED_PREFIXES = ("pooler.",)


def lora_target_modules(encoder: nn.Module, targets: Sequence[str] | None = None) -> list[str]:
    """Full names of the encoder's ``nn.Linear`` layers whose last name part is in ``targets`` (default: the
    attention q/k/v projections); a clear error when none matches."""
    wanted = set(targets or DEFAULT_TARGETS)
    linear = [n for n, m in encoder.named_modules() if isinstance(m, nn.Linear)]
    found = [n for n in linear if n.rsplit(".", 1)[-1] in wanted and not n.startswith(UNUSED_PREFIXES)]
    if not found:
        names = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"lora_targets {sorted(wanted)} match no Linear layer of {type(encoder).__name__}; "
                         f"its Linear layers are named {names}")
    return found


def add_lora(model: RouterModel, r: int, alpha: float | None = None, dropout: float = 0.0,
             targets: Sequence[str] | None = None) -> list[str]:
    """Inject rank-``r`` LoRA adapters into ``model.encoder`` in place (peft ``inject_adapter_in_model``).

    Afterwards only the adapters and the heads train: peft freezes the encoder's own weights, the heads are left
    as they were. ``alpha`` defaults to ``2 * r`` (scale 2). Returns the adapted module names."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:  # peft is a training-only dependency
        raise ImportError("lora_r > 0 needs peft (pip install 'peft>=0.11', part of the train extra)") from e
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    modules = lora_target_modules(model.encoder, targets)
    config = LoraConfig(r=int(r), lora_alpha=float(alpha if alpha is not None else 2 * r),
                        lora_dropout=float(dropout), target_modules=modules, bias="none")
    inject_adapter_in_model(config, model.encoder)
    return modules


def has_lora(model: nn.Module) -> bool:
    """Whether any peft adapter layer is still in ``model`` (i.e. :func:`merge_lora` has not run)."""
    layer = _adapter_layer_type()
    return layer is not None and any(isinstance(m, layer) for m in model.modules())


def merge_lora(model: RouterModel) -> int:
    """Fold every adapter into its base ``nn.Linear`` (W + scale * B @ A) and put the plain layer back in place,
    so ``model`` holds exactly the parameters of a fresh :class:`RouterModel`. Returns the layers merged (0: none).

    The base weights stay frozen (``requires_grad`` False) afterwards: the merged model is for saving and
    prediction, not for more training."""
    layer = _adapter_layer_type()
    if layer is None:  # no peft installed: no adapter can be in the model
        return 0
    merged = 0
    for name, module in list(model.encoder.named_modules()):
        if not isinstance(module, layer):
            continue
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.encoder.get_submodule(parent_name) if parent_name else model.encoder
        setattr(parent, child, module.get_base_layer())
        merged += 1
    if hasattr(model.encoder, "peft_config"):  # left by inject_adapter_in_model; the encoder is plain again
        del model.encoder.peft_config
    return merged


def _adapter_layer_type() -> type | None:
    """peft's base class of every adapter layer, or None without peft (the serving side never installs it)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return None
    return BaseTunerLayer
