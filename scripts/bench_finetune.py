"""Frozen vs partial vs LoRA vs full fine-tune of the router's encoder on the SAME k folds: pooled out-of-fold AUC,
wall time, trainable parameters and training throughput per mode. Prints a markdown table; nothing is asserted.

    python scripts/bench_finetune.py [--config configs/bench/finetune-compare.yaml] [--modes frozen,lora,...]
        [--out checkpoints/ft-bench] [--threads 1] [--set KEY=VALUE ...] [--reuse]

The config holds ``base`` (a TrainConfig: dataset, spec, encoder, folds, ...) and ``modes`` (each mode's keys
override ``base``). ``--set KEY=VALUE`` overrides ``base`` (modes keep their own value of KEY), ``--set
MODE.KEY=VALUE`` one mode (e.g. ``--set lora.num_epochs=3``); values are YAML (``--set spec=null``). Every mode
runs through the library's k-fold driver (:func:`aco_bert.model.trainer.train`) with the same ``seed`` and so the
same folds; the frozen mode embeds into a fresh cache so its wall time includes the one embedding pass. Each
mode's exact command is ``python -m aco_bert.train --config <out>/<mode>/train_config.yaml``. ``--reuse`` reads
modes that already finished under ``--out`` instead of training them again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aco_bert.config import from_dict
from aco_bert.model.training_args import TrainConfig

DEFAULT_CONFIG = "configs/bench/finetune-compare.yaml"
BENCH_RESULT = "bench.json"  # in <out>/<mode>/


def parse_sets(items: list[str], modes: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``KEY=VALUE`` -> base overrides; ``MODE.KEY=VALUE`` -> that mode's overrides (values parsed as YAML)."""
    base: dict[str, Any] = {}
    per_mode: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE or MODE.KEY=VALUE")
        mode, dot, field = key.partition(".")
        if dot and mode not in modes:
            raise SystemExit(f"--set {item!r}: no mode {mode!r} (modes: {modes})")
        (per_mode.setdefault(mode, {}) if dot else base)[field if dot else key] = yaml.safe_load(value)
    return base, per_mode


def mode_configs(path: str | Path, sets: list[str] | None = None, out: str | Path = "checkpoints/ft-bench",
                 threads: int | None = None) -> dict[str, TrainConfig]:
    """One validated TrainConfig per mode of the bench config (base < --set KEY < mode < --set MODE.KEY)."""
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("base"), dict) or not isinstance(spec.get("modes"), dict):
        raise ValueError(f"{path}: expected a mapping with 'base' (TrainConfig keys) and 'modes' (name -> keys)")
    base_sets, mode_sets = parse_sets(sets or [], list(spec["modes"]))
    cfgs = {}
    for name, keys in spec["modes"].items():
        data = {**spec["base"], **base_sets, **(keys or {}), **mode_sets.get(name, {})}
        data.update(run_name=f"ft-{name}", output_dir=str(Path(out) / name),
                    embedding_cache_dir=str(Path(out) / name / "embedding_cache"))
        if threads:
            data["num_threads"] = threads
        cfgs[name] = from_dict(TrainConfig, data, where=f"{path} mode {name}")
    return cfgs


def trainable_parameters(cfg: TrainConfig) -> tuple[int, int]:
    """(trainable, total) parameters of the model ``fit`` trains in this mode (LoRA: adapters + heads)."""
    import torch

    from aco_bert.model.data import load_router_data, model_config_for
    from aco_bert.model.fit import configure_trainable
    from aco_bert.model.modeling import RouterModel

    torch.manual_seed(cfg.seed)
    model = configure_trainable(RouterModel(model_config_for(cfg, load_router_data(cfg))), cfg)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def run_mode(name: str, cfg: TrainConfig, reuse: bool) -> dict[str, Any]:
    from aco_bert.model.trainer import train

    out = cfg.resolved_output_dir
    if reuse and (out / BENCH_RESULT).exists():
        return json.loads((out / BENCH_RESULT).read_text())
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: the frozen mode's embedding pass is part of its time
    t0 = time.perf_counter()
    r = train(cfg)
    wall = time.perf_counter() - t0
    meta = json.loads((out / "oof_meta.json").read_text())
    trainable, total = trainable_parameters(cfg)
    fold_auc = [f["test_mean_auc"] for f in r.folds]
    row = {"mode": name, "mean_auc": meta["mean_auc"], "per_tier_auc": meta["per_tier_auc"],
           "fold_auc_mean": float(np.nanmean(fold_auc)), "fold_auc_sd": float(np.nanstd(fold_auc)),
           "wall_s": wall, "trainable": trainable, "total": total, "train_sps": r.samples_per_second,
           "epochs": cfg.num_epochs, "steps": r.global_step, "n_prompts": len(meta["prompt_ids"]),
           "command": f"python -m aco_bert.train --config {out / 'train_config.yaml'}"}
    (out / BENCH_RESULT).write_text(json.dumps(row, indent=2) + "\n")
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | OOF mean AUC | per-tier AUC | fold AUC (mean ± sd) | epochs | wall (s) | trainable params "
             "| train samples/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tiers = " / ".join(f"{a:.3f}" for a in r["per_tier_auc"])
        share = 100 * r["trainable"] / r["total"]
        lines.append(f"| {r['mode']} | {r['mean_auc']:.4f} | {tiers} | {r['fold_auc_mean']:.3f} ± "
                     f"{r['fold_auc_sd']:.3f} | {r['epochs']} | {r['wall_s']:.0f} | {r['trainable']:,} "
                     f"({share:.2f} %) | {r['train_sps']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    import logging
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--modes", default=None, help="comma-separated subset of the config's modes (default: all)")
    ap.add_argument("--out", default="checkpoints/ft-bench")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared CPU)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="[MODE.]KEY=VALUE")
    ap.add_argument("--reuse", action="store_true", help="read modes already finished under --out")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfgs = mode_configs(args.config, args.sets, args.out, args.threads)
    names = args.modes.split(",") if args.modes else list(cfgs)
    unknown = [n for n in names if n not in cfgs]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; the config has {list(cfgs)}")
    rows = []
    for name in names:
        row = run_mode(name, cfgs[name], args.reuse)
        print(f"{name}: OOF mean AUC {row['mean_auc']:.4f}, {row['wall_s']:.0f} s", flush=True)
        rows.append(row)
    first = cfgs[names[0]]
    print(f"\n{first.dataset} (spec {first.spec}), {rows[0]['n_prompts']} prompts, {first.kfold} folds (seed "
          f"{first.seed}), encoder {first.encoder} layers {first.encoder_layers}, max_length {first.max_length}, "
          f"torch threads {args.threads or 'default'}\n")
    print(table(rows))
    print()
    for r in rows:
        print(f"- {r['mode']}: `{r['command']}`")


if __name__ == "__main__":
    main()
