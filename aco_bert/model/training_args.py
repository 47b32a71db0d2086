"""``TrainConfig``: every knob of router training, loaded from YAML with ``--key value`` overrides.

``python -m aco_bert.train --config configs/minilm-cpu.yaml --max_steps 10`` is
``aco_bert.config.parse_config(TrainConfig, argv)``, i.e. ``load_config(TrainConfig, yaml, {"max_steps": 10})``:
a YAML key, a dataclass field and a command-line flag are the same name, and the comment after a field is its
``--help`` text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aco_bert.model.tokenization import Truncation

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class TrainConfig:
    # --- run / data --------------------------------------------------------------------------------------------
    run_name: str = "router"  # name of the run (default output dir, tracker run name)
    output_dir: str | None = None  # default: checkpoints/<run_name>
    dataset: str = "swebench-verified"  # registry name or path (aco_bert.data.load_outcomes)
    data_dir: str | None = None  # default: $ACO_BERT_DATA_DIR
    dataset_options: dict[str, Any] = field(default_factory=dict)  # extra kwargs for load_outcomes
    spec: str | None = None  # RouterSpec name/path: tier models and order; None = every model, cheapest first
    max_prompts: int | None = None  # a seeded random slice of the prompts (tests, quick looks)
    holdout: str | None = None  # "column=value": prompts whose matrix.meta[column] == value form the test set
    # --- model -------------------------------------------------------------------------------------------------
    encoder: str = "minilm"  # Hugging Face name or local path of the encoder; "minilm" = the packaged MiniLM
    encoder_config: dict[str, Any] | None = None  # random-init encoder, e.g. {model_type: distilbert, dim: 32, ...}
    tokenizer: str | None = None  # defaults to the encoder's own
    encoder_layers: int | None = None  # keep the encoder's first N layers (faster CPU routing); None = all
    pooling: str = "mean"  # mean | cls: how token states become one prompt vector
    normalize: bool = False  # L2-normalise pooled embeddings before the heads
    dropout: float = 0.1  # dropout before the heads
    success_rank: int | None = None  # low-rank success head shared by the tiers (None: one Linear(H, T))
    cost_heads: bool = False  # also predict log1p(cost USD) per tier (masked MSE)
    aux_targets: list[str] = field(default_factory=list)  # matrix.meta columns used as auxiliary CE targets
    attn_implementation: str | None = None  # transformers attn_implementation (e.g. sdpa); None: its default
    max_length: int = 256  # tokens per prompt, special tokens included (>= 8)
    truncation: str = "head_tail"  # head_tail (start + last tail_tokens) | head | chunked (whole prompt, in windows)
    tail_tokens: int | None = None  # default max_length // 4
    max_chunks: int = 8  # chunked: windows of max_length tokens per prompt (longer: the first max_chunks-1 + the last)
    chunk_overlap: int = 0  # chunked: tokens shared by consecutive windows
    freeze_encoder: bool = False  # embed once (cached), train the heads only
    freeze_layers: int = 0  # fine-tune, but freeze the embeddings + this many lower layers
    lora_r: int = 0  # > 0: LoRA adapters of this rank (peft), encoder weights frozen; merged before saving
    lora_alpha: float | None = None  # LoRA scale numerator (scale = lora_alpha / lora_r); default 2 * lora_r
    lora_dropout: float = 0.0  # dropout on the input of the LoRA branch
    lora_targets: list[str] | None = None  # encoder Linear names to adapt; None: q/k/v (query.., q_lin..)
    embedding_cache_dir: str | None = None  # default: checkpoints/.cache/embeddings
    # --- optimisation ------------------------------------------------------------------------------------------
    batch_size: int = 16  # per device
    eval_batch_size: int = 64  # validation / prediction batch size
    learning_rate: float = 5e-5  # encoder
    head_learning_rate: float | None = None  # default: learning_rate
    weight_decay: float = 0.01  # AdamW weight decay (none on biases and norms)
    warmup_ratio: float = 0.1  # share of the steps with linear learning-rate warmup
    num_epochs: int = 3  # passes over the training prompts (unless max_steps)
    max_steps: int | None = None  # optimizer steps; overrides num_epochs
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    max_grad_norm: float | None = 1.0  # gradient clipping; None: off
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    cpu: bool = False  # force CPU even where a GPU is visible
    seed: int = 0  # one seed for the prompt slice, folds (unless fold_seed), init, batches and dropout
    length_grouping: bool = True  # batch prompts of similar length together (less padding)
    pad_to_multiple_of: int | None = None  # 8 helps tensor cores on GPU
    num_workers: int = 0  # DataLoader worker processes
    num_threads: int | None = None  # torch.set_num_threads; 1 is far faster on an oversubscribed shared CPU
    # --- loss --------------------------------------------------------------------------------------------------
    success_loss_weight: float = 1.0  # weight of the masked BCE of the success heads
    cost_loss_weight: float = 0.1  # weight of the cost heads' masked MSE
    aux_loss_weight: float = 0.1  # weight of the auxiliary heads' cross-entropy
    pos_weight: str | float | None = None  # None | "balanced" (neg/pos per tier on the training fold) | a number
    label_smoothing: float = 0.0  # success targets pulled towards 0.5 by this much
    # --- validation / model selection ---------------------------------------------------------------------------
    val_fraction: float = 0.1  # carved (by prompt, seeded) from the training prompts, never from a test fold
    eval_every_epoch: bool = True  # validate after every epoch (else only after the last one)
    metric_for_best: str = "mean_auc"  # mean_auc (higher is better) | loss (lower is better)
    early_stopping_patience: int | None = None  # epochs without improvement before stopping
    # --- k-fold out-of-fold predictions ------------------------------------------------------------------------
    kfold: int = 0  # >= 2: out-of-fold logits + embeddings for every prompt (oof.safetensors)
    fold_seed: int | None = None  # default: seed
    final_fit: bool = False  # kfold: also train on all prompts -> <output_dir>/final
    save_fold_models: bool = False  # kfold: keep each fold's best model (fold_K/best)
    # --- checkpoints / logging ---------------------------------------------------------------------------------
    save_steps: int = 0  # resumable state every N optimizer steps (0: at the end of every epoch)
    save_total_limit: int = 1  # resumable states kept
    resume: bool = False  # continue from the latest state under output_dir
    stop_after_steps: int | None = None  # end the process after N steps without finishing (simulates a kill)
    logging_steps: int = 10  # a metrics.jsonl record every N optimizer steps
    with_tracking: bool = False  # also log to the accelerate trackers of report_to
    report_to: str = "tensorboard"  # accelerate tracker name(s), comma separated; skipped when not installed
    progress_bar: bool = True  # tqdm bars on the main process

    def __post_init__(self) -> None:
        if self.mixed_precision is False or self.mixed_precision is None:  # YAML reads a bare `no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision {self.mixed_precision!r} not in {MIXED_PRECISION}")
        if self.metric_for_best not in ("mean_auc", "loss"):
            raise ValueError(f"metric_for_best {self.metric_for_best!r} not in ('mean_auc', 'loss')")
        if self.kfold == 1 or self.kfold < 0:
            raise ValueError(f"kfold {self.kfold}: use 0 (single run) or >= 2 folds")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction {self.val_fraction} not in [0, 1)")
        if self.gradient_accumulation_steps < 1 or self.batch_size < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be >= 1")
        if isinstance(self.pos_weight, str) and self.pos_weight != "balanced":
            self.pos_weight = float(self.pos_weight)
        if self.kfold and self.holdout:
            raise ValueError("kfold and holdout are exclusive: k-fold uses every prompt as test exactly once")
        if self.lora_r < 0:
            raise ValueError(f"lora_r {self.lora_r}: use 0 (no LoRA) or a rank >= 1")
        if self.lora_r and (self.freeze_encoder or self.freeze_layers):
            raise ValueError("lora_r > 0 trains adapters on a frozen encoder: it cannot be combined with "
                             "freeze_encoder (cached embeddings, heads only) or freeze_layers (partial fine-tune)")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout {self.lora_dropout} not in [0, 1)")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha {self.lora_alpha} must be > 0")
        Truncation(self.max_length, self.truncation, self.tail_tokens, self.max_chunks, self.chunk_overlap)  # raises

    @property
    def text_truncation(self) -> Truncation:
        """``max_length``, ``truncation``, ``tail_tokens`` and the chunk settings: one validated :class:`Truncation`."""
        return Truncation(self.max_length, self.truncation, self.tail_tokens, self.max_chunks, self.chunk_overlap)

    @property
    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("checkpoints") / self.run_name
