"""The multi-head neural router: a text encoder, pooling, and one success logit per tier.

One shared encoder feeds T success heads (a single ``Linear(H, T)``), optional per-tier log-cost regression heads
and optional auxiliary classification heads (e.g. SWE-bench ``difficulty``: a *training-time* target that shapes the
representation, never an input at routing time). Saved as safetensors + JSON only: ``model.safetensors``,
``router_config.json``, the encoder's ``config.json`` and the tokenizer files, so a saved router loads with no
network and no pickle.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from aco_bert.config import from_dict
from aco_bert.model.tokenization import TEXT_TRUNCATIONS, TOKENIZER_FILES, Truncation, resolve_local_path

ROUTER_CONFIG_NAME = "router_config.json"
WEIGHTS_NAME = "model.safetensors"
POOLINGS = ("mean", "cls")


@dataclass
class RouterModelConfig:
    """Everything needed to rebuild a router (JSON-serialisable). Tier order = ``models``, cheapest first."""

    models: list[str]
    encoder: str = "minilm"  # "minilm", a Hub name (distilbert-base-uncased) or a local folder
    encoder_config: dict[str, Any] | None = None  # build a randomly initialised encoder, e.g. {"model_type": "distilbert", "dim": 32}
    tokenizer: str | None = None  # tokenizer source when it differs from the encoder (random encoders)
    # Keep only the encoder's first N transformer layers (None: all). Routing cost grows with depth; on 2 CPU cores
    # MiniLM-L6 at 256 tokens cannot decide in 10 ms, its first 3 layers can (README: latency).
    encoder_layers: int | None = None
    pooling: str = "mean"
    normalize: bool = False  # L2-normalise the pooled embedding before the heads (MiniLM is trained for cosine)
    dropout: float = 0.1
    success_rank: int | None = None  # None: Linear(H, T); r: Linear(H, r) -> Linear(r, T), a bottleneck shared by tiers
    cost_heads: bool = False  # per-tier regression of log1p(cost USD)
    aux_heads: dict[str, int] = field(default_factory=dict)  # name -> number of classes
    aux_labels: dict[str, list[str]] = field(default_factory=dict)  # name -> class names (index order)
    max_length: int = 256  # tokens per prompt (chunked: per window)
    truncation: str = "head_tail"  # head_tail | head | chunked (input_ids B x C x L, pooled over the windows)
    tail_tokens: int | None = None  # head_tail: tokens kept from the end (default max_length // 4)
    max_chunks: int = 8  # chunked: windows per prompt
    chunk_overlap: int = 0  # chunked: tokens shared by consecutive windows
    attn_implementation: str | None = None  # "eager" for ONNX export; None = transformers' default (sdpa)
    spec: str | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("RouterModelConfig: no tier models")
        if self.pooling not in POOLINGS:
            raise ValueError(f"RouterModelConfig: pooling {self.pooling!r} not in {POOLINGS}")
        if self.encoder_layers is not None and int(self.encoder_layers) < 1:
            raise ValueError(f"RouterModelConfig: encoder_layers must be >= 1, got {self.encoder_layers}")
        if self.success_rank is not None and int(self.success_rank) < 1:
            raise ValueError(f"RouterModelConfig: success_rank must be >= 1, got {self.success_rank}")
        if self.truncation not in TEXT_TRUNCATIONS:
            raise ValueError(f"RouterModelConfig: truncation {self.truncation!r} not in {TEXT_TRUNCATIONS}")
        try:
            _ = self.text_truncation
        except ValueError as e:
            raise ValueError(f"RouterModelConfig: {e}") from e
        for name, n in self.aux_heads.items():
            if int(n) < 2:
                raise ValueError(f"RouterModelConfig: aux head {name!r} needs >= 2 classes, got {n}")

    @property
    def n_tiers(self) -> int:
        return len(self.models)

    @property
    def text_truncation(self) -> Truncation:
        """How this model's prompts are cut (what the runtime and the exporter must reproduce)."""
        return Truncation(int(self.max_length), self.truncation, self.tail_tokens, int(self.max_chunks),
                          int(self.chunk_overlap))

    @property
    def chunked(self) -> bool:
        """Whether the model reads B x C x L windows (``truncation: chunked``) instead of B x L ids."""
        return self.text_truncation.chunked

    @property
    def tokenizer_source(self) -> str:
        return self.tokenizer or self.encoder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RouterModelConfig":
        with open(path) as f:
            return from_dict(cls, json.load(f), where=str(path))


@dataclass
class RouterOutput(ModelOutput):
    """``logits`` (B, T) success logits; ``pooled`` (B, H); ``cost`` (B, T) predicted log1p(USD) or None;
    ``aux`` {name: (B, n_classes)} or None."""

    logits: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    cost: torch.Tensor | None = None
    aux: dict[str, torch.Tensor] | None = None


def build_encoder(config: RouterModelConfig, attn_implementation: str | None = None) -> nn.Module:
    """The ``AutoModel`` encoder: random weights from ``encoder_config``, else pretrained weights from
    ``encoder`` (the packaged MiniLM, a local folder, or a Hub name)."""
    from transformers import AutoConfig, AutoModel

    attn = attn_implementation or config.attn_implementation
    kw = {"attn_implementation": attn} if attn else {}
    if config.encoder_config is not None:
        ec = dict(config.encoder_config)
        model_type = ec.pop("model_type", None)
        if model_type is None:
            raise ValueError("encoder_config needs a 'model_type' (e.g. 'distilbert')")
        enc_cfg = AutoConfig.for_model(model_type, **ec)
        _keep_layers(enc_cfg, config.encoder_layers, f"encoder_config {config.encoder_config}")
        return AutoModel.from_config(enc_cfg, **kw)
    local = resolve_local_path(config.encoder)
    source = str(local) if local else config.encoder
    if config.encoder_layers is None:
        return AutoModel.from_pretrained(source, **kw)
    from transformers.utils import logging as hf_logging

    enc_cfg = AutoConfig.from_pretrained(source)
    _keep_layers(enc_cfg, config.encoder_layers, source)
    # The config decides how many layers are built; the checkpoint's weights for the dropped ones go unused, which
    # transformers reports as a table of UNEXPECTED keys: expected here, so not shown.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(source, config=enc_cfg, **kw)
    finally:
        hf_logging.set_verbosity(level)


def _keep_layers(enc_cfg, n: int | None, where: str) -> None:
    """Set the encoder config's depth to its first ``n`` layers (BERT ``num_hidden_layers``, DistilBERT
    ``n_layers`` through the same attribute map); refuse to deepen a pretrained model."""
    if n is None:
        return
    have = int(getattr(enc_cfg, "num_hidden_layers"))
    if int(n) > have:
        raise ValueError(f"encoder_layers {n} > the {have} layers of {where}")
    enc_cfg.num_hidden_layers = int(n)


class RouterModel(nn.Module):
    """Encoder + pooling + dropout + per-tier success heads (+ optional cost and auxiliary heads)."""

    def __init__(self, config: RouterModelConfig, encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config)
        h = int(self.encoder.config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        # Tier outcomes are strongly correlated (a hard issue is hard for every model): a low-rank head shares one
        # small "difficulty" subspace across tiers instead of fitting T independent directions on few prompts.
        if config.success_rank:
            self.success_head: nn.Module = nn.Sequential(nn.Linear(h, int(config.success_rank), bias=False),
                                                         nn.Linear(int(config.success_rank), config.n_tiers))
        else:
            self.success_head = nn.Linear(h, config.n_tiers)
        self.cost_head = nn.Linear(h, config.n_tiers) if config.cost_heads else None
        self.aux_heads = nn.ModuleDict({k: nn.Linear(h, int(n)) for k, n in config.aux_heads.items()})
        heads = [self.success_head, self.aux_heads] + ([self.cost_head] if self.cost_head is not None else [])
        for lin in [m for h in heads for m in h.modules() if isinstance(m, nn.Linear)]:
            nn.init.normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("encoder.")]

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled sentence embedding (B, H): masked mean of the last hidden states, or the first ([CLS]) token.
        Windowed prompts (B, C, L) go through :meth:`encode_chunks`."""
        if input_ids.dim() == 3:
            return self.encode_chunks(input_ids, attention_mask)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def encode_chunks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, C, L) windows -> (B, H): every window encoded and pooled as a prompt of its own (one B*C batch),
        then :meth:`pool_chunks` (a padding window, all-zero mask, is encoded too and weighs 0)."""
        b, c, n = input_ids.shape
        pooled = self.encode(input_ids.reshape(b * c, n), attention_mask.reshape(b * c, n))
        return self.pool_chunks(pooled.reshape(b, c, -1), attention_mask.sum(-1))

    @staticmethod
    def pool_chunks(pooled: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
        """(B, C, H) window embeddings -> (B, H): their mean weighted by each window's token count ``n_tokens``
        (B, C); 0 for a padding window, which is therefore ignored. Token-count weights make mean pooling over
        windows the mean over every token of the prompt (a short last window counts for what it holds). The
        weights are normalised before the sum, so one window (weight exactly 1) returns its embedding unchanged."""
        w = n_tokens.to(pooled.dtype)
        w = w / w.sum(1, keepdim=True).clamp(min=1)
        x = torch.where(w.unsqueeze(-1) > 0, pooled, torch.zeros_like(pooled))
        return (x * w.unsqueeze(-1)).sum(1)

    def heads(self, pooled: torch.Tensor) -> RouterOutput:
        """Success/cost/aux heads on a pooled embedding (as returned by :meth:`encode`).

        Every head reads the same input (:meth:`_head_input`: L2-normalised when ``config.normalize``). This and
        :meth:`forward` are the only forward paths: training, the out-of-fold predictions, the ONNX graph
        (:func:`aco_bert.export.onnx.export_onnx`) and the exporter's torch parity reference all call them, so an
        exported output cannot skip a step that training applied."""
        x = self.dropout(self._head_input(pooled))
        return RouterOutput(
            logits=self.success_head(x),
            pooled=pooled,
            cost=self.cost_head(x) if self.cost_head is not None else None,
            aux={k: head(x) for k, head in self.aux_heads.items()} or None,
        )

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None) -> RouterOutput:
        """Either token ids (full model) or precomputed ``pooled`` embeddings (frozen-encoder training)."""
        if pooled is None:
            if input_ids is None:
                raise ValueError("RouterModel.forward needs input_ids (+ attention_mask) or pooled")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            pooled = self.encode(input_ids, attention_mask)
        return self.heads(pooled)

    def _head_input(self, pooled: torch.Tensor) -> torch.Tensor:
        """What every head sees: the pooled embedding, L2-normalised when ``config.normalize`` (cosine-trained
        encoders such as MiniLM); ``RouterOutput.pooled`` stays the raw embedding."""
        return nn.functional.normalize(pooled, dim=-1) if self.config.normalize else pooled

    def set_attn_implementation(self, attn_implementation: str) -> None:
        """Switch the encoder's attention kernel (e.g. "eager" before ONNX export)."""
        self.encoder.set_attn_implementation(attn_implementation)
        self.config.attn_implementation = attn_implementation

    def freeze_encoder(self, n_layers: int | None = None) -> None:
        """Freeze the whole encoder (``n_layers=None``) or its embeddings plus the first ``n_layers`` blocks."""
        if n_layers is None:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            return
        if n_layers <= 0:
            return
        n_total = int(getattr(self.encoder.config, "num_hidden_layers", 0))
        blocks = next((m for m in self.encoder.modules() if isinstance(m, nn.ModuleList) and len(m) == n_total), None)
        emb = getattr(self.encoder, "embeddings", None)
        if blocks is None or emb is None:
            raise ValueError(f"cannot find the embeddings/layer list of {type(self.encoder).__name__} to freeze")
        for mod in [emb, *list(blocks)[:n_layers]]:
            for p in mod.parameters():
                p.requires_grad_(False)

    # ---- persistence (safetensors + JSON) -------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, tokenizer_source: str | Path | None = None) -> Path:
        """Write model.safetensors, router_config.json, the encoder's config.json and the tokenizer files."""
        from safetensors.torch import save_model

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        save_model(self, str(out / WEIGHTS_NAME), metadata={"format": "pt", "aco_bert": "router"})
        self.config.save(out / ROUTER_CONFIG_NAME)
        self.encoder.config.save_pretrained(str(out))
        save_tokenizer_files(tokenizer_source or self.config.tokenizer_source, out)
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, attn_implementation: str | None = None,
                        map_location: str | torch.device = "cpu") -> "RouterModel":
        """Rebuild from a :meth:`save_pretrained` folder (no network: the encoder is built from its config.json)."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel

        d = Path(directory)
        if not (d / ROUTER_CONFIG_NAME).exists():
            raise FileNotFoundError(f"{d} is not a saved router: no {ROUTER_CONFIG_NAME}")
        config = RouterModelConfig.load(d / ROUTER_CONFIG_NAME)
        if attn_implementation:
            config.attn_implementation = attn_implementation
        kw = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(d)), **kw)
        model = cls(config, encoder)
        load_model(model, str(d / WEIGHTS_NAME), strict=True, device=str(map_location))
        return model.eval()


def save_tokenizer_files(source: str | Path, out: str | Path) -> None:
    """Copy a tokenizer's files (tokenizer.json first of all) next to the weights so the runtime needs no Hub."""
    out = Path(out)
    local = resolve_local_path(source)
    if local is not None and local.is_dir():
        if not (local / "tokenizer.json").exists():
            raise FileNotFoundError(f"tokenizer source {local} has no tokenizer.json")
        for name in TOKENIZER_FILES:
            if (local / name).exists() and (local / name).resolve() != (out / name).resolve():
                shutil.copyfile(local / name, out / name)
        return
    from transformers import AutoTokenizer  # Hub name: fetch (or read from the HF cache) and write tokenizer.json

    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out))
    if not (out / "tokenizer.json").exists():
        raise FileNotFoundError(f"tokenizer {source!r} has no fast (tokenizer.json) version")
