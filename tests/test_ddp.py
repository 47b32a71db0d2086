"""Multi-process training for real: `accelerate launch` with 2 gloo DDP processes on CPU against 1 process.

The 2-process run uses per-process batch 8 and the 1-process run batch 16, so that every optimizer step sees the
same 16 prompts (length grouping off: the batches are then consecutive slices of the same shuffled order, and
:class:`aco_bert.model.sharding.EvenShardBatches` cuts the short tail into one piece per process). Every target of
this slice is observed, so the all-reduced mean of the two per-process mean losses is the 16-prompt mean loss:
in exact arithmetic the two runs train the same weights. They still differ a little because the gradient is
summed in another order (two half-batch means averaged by all-reduce), and AdamW turns that rounding into up to
+-lr per step on weights whose gradient is ~0 (its update is g / sqrt(v), about the *sign* of g). Measured on this
slice: OOF logits within 0.003, final weights within 0.006 (lr 1e-3, 10 steps); the tolerances below are a few
times that. A run that silently trained on one process (``accelerate launch --cpu --num_processes 2`` does
exactly that) takes twice the steps at batch 8, which the step count check catches.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "tiny-test.yaml"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n_proc: int, out: Path, data_dir: Path, spec: str, *args: str) -> dict:
    """`accelerate launch` the training verb on ``n_proc`` CPU processes; returns its one-line JSON summary.

    ``--multi_gpu`` (not ``--cpu``) is what makes accelerate start N processes (torchrun); the train flag
    ``--cpu true`` keeps each of them on the CPU, where accelerate joins them with gloo."""
    procs = ["--multi_gpu", "--num_processes", str(n_proc)] if n_proc > 1 else ["--num_processes", "1"]
    port = free_port()
    cmd = [ACCELERATE, "launch", *procs, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "aco_bert.train", "--config", str(TINY_YAML), "--cpu", "true",
           "--spec", spec, "--output_dir", str(out), "--num_threads", "1", "--length_grouping", "false",
           "--dropout", "0", "--seed", "3", "--data_dir", str(data_dir), *args]
    env = dict(os.environ, ACO_BERT_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", MASTER_PORT=str(port))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # the summary is printed by the main process only
    return json.loads(lines[0])


def test_even_shard_batches_give_each_prompt_once_per_epoch():
    """accelerate's shard of the length-grouped sampler loses prompts when the short batch is not last (its
    shuffled batch order puts it anywhere); the wrapper keeps every prompt exactly once and one batch per process
    per step, with the step's prompts those of one N x batch_size batch on one process."""
    from accelerate.data_loader import BatchSamplerShard

    from aco_bert.model.data import LengthGroupedBatchSampler
    from aco_bert.model.sharding import EvenShardBatches

    def shards(batch_sampler, n_proc):
        per = [list(BatchSamplerShard(batch_sampler, n_proc, r)) for r in range(n_proc)]
        assert len({len(p) for p in per}) == 1  # every process takes the same number of steps
        return per

    lengths = np.random.default_rng(0).integers(5, 200, 36)
    lost = []
    for seed in range(6):
        s = LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=seed)
        raw = [i for p in shards(s, 2) for b in p for i in b]
        lost.append(len(set(range(36)) - set(raw)))
        for n_proc in (2, 3):
            per = shards(EvenShardBatches(s, n_proc), n_proc)
            seen = sorted(i for p in per for b in p for i in b)
            assert seen == list(range(36)), (seed, n_proc)
            assert max(len(b) for p in per for b in p) <= 8
    assert max(lost) > 0  # the failure the wrapper exists for does happen on this data
    # ungrouped: each step of 2 x 8 holds the prompts of the 1-process batch of 16, the short tail too
    s8 = LengthGroupedBatchSampler(np.ones(36), 8, shuffle=True, seed=1, group=False)
    s16 = LengthGroupedBatchSampler(np.ones(36), 16, shuffle=True, seed=1, group=False)
    r0, r1 = shards(EvenShardBatches(s8, 2), 2)
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in s16]
    with pytest.raises(ValueError, match="num_processes 0"):
        EvenShardBatches(s8, 0)


def test_a_head_without_loss_turns_on_the_unused_parameter_search():
    """DDP fails with "Expected to have finished reduction in the prior iteration" when a head gets no gradient
    (reproduced with cost_loss_weight 0 on 2 processes); the flag is on exactly then (the slow test trains so)."""
    from aco_bert.config import load_config
    from aco_bert.model.trainer import has_unused_heads
    from aco_bert.model.training_args import TrainConfig

    def cfg(**kw):
        return load_config(TrainConfig, TINY_YAML, kw)

    assert not has_unused_heads(cfg())  # tiny-test: cost and difficulty heads, both with a loss
    assert has_unused_heads(cfg(cost_loss_weight=0.0)) and has_unused_heads(cfg(aux_loss_weight=0.0))
    assert not has_unused_heads(cfg(cost_heads=False, cost_loss_weight=0.0, aux_targets=[], aux_loss_weight=0.0))


def run_one_in_process(out: Path, data_dir: Path, spec: str, *args: str) -> dict:
    """The 1-process reference, run in this process (the code path of `accelerate launch --num_processes 1`,
    without a second interpreter's start-up): the same flags as :func:`launch`, the same summary keys."""
    from aco_bert.config import parse_config
    from aco_bert.model.trainer import PROG, train
    from aco_bert.model.training_args import TrainConfig

    cfg = parse_config(TrainConfig, ["--config", str(TINY_YAML), "--cpu", "true", "--spec", spec, "--output_dir",
                                     str(out), "--num_threads", "1", "--length_grouping", "false", "--dropout", "0",
                                     "--seed", "3", "--data_dir", str(data_dir), *args], PROG)
    r = train(cfg)
    return {"mode": r.mode, "global_step": r.global_step, "mean_auc": r.mean_auc, "model_dir": r.model_dir}


def check_same_run(a: Path, b: Path, one: dict, two: dict, models: list[str], n: int, n_folds: int) -> None:
    """``b`` (2 processes) against ``a`` (1 process): same steps, every prompt once out of fold, files written
    once and valid, the same model up to the tolerances of the module docstring."""
    from aco_bert.artifacts.layout import RunInfo
    from aco_bert.model.metrics import tier_metrics

    # same optimizer steps: 2 x 8 per step (a 1-process run at batch 8 would take more steps)
    assert one["mode"] == two["mode"] == "kfold" and one["global_step"] == two["global_step"] > 0
    # the out-of-fold predictions cover every prompt exactly once, the same prompts as the 1-process run
    meta_a, meta_b = (json.loads((d / "oof_meta.json").read_text()) for d in (a, b))
    assert meta_b["prompt_ids"] == meta_a["prompt_ids"] and len(set(meta_b["prompt_ids"])) == n
    assert meta_b["models"] == models
    oof_a, oof_b = load_file(str(a / "oof.safetensors")), load_file(str(b / "oof.safetensors"))
    np.testing.assert_array_equal(oof_b["fold"], oof_a["fold"])
    assert np.bincount(oof_b["fold"]).tolist() == [n // n_folds] * n_folds
    seen = []
    for f in range(n_folds):
        idx = load_file(str(b / f"fold_{f}" / "predictions.safetensors"))["index"]
        assert len(idx) == len(set(idx.tolist())) == n // n_folds and (oof_b["fold"][idx] == f).all()
        seen += idx.tolist()
        # logged once (by the main process): the same records as the 1-process fold
        log_a, log_b = ((d / f"fold_{f}" / "metrics.jsonl").read_text().splitlines() for d in (a, b))
        assert [json.loads(r)["step"] for r in log_b] == [json.loads(r)["step"] for r in log_a]
    assert sorted(seen) == list(range(n))
    for k in ("logits", "embeddings", "cost"):
        assert oof_b[k].shape == oof_a[k].shape and np.isfinite(oof_b[k]).all()
    # the same model, up to summation order amplified by AdamW (module docstring)
    assert float(np.abs(oof_b["logits"] - oof_a["logits"]).max()) < 0.02
    info = RunInfo.load(b)  # run.json: valid, written once, the same in both runs
    assert RunInfo.load(a) == info and info.prompt_ids == meta_a["prompt_ids"]
    assert abs(one["mean_auc"] - two["mean_auc"]) < 0.05
    assert two["mean_auc"] == pytest.approx(meta_b["mean_auc"]) == pytest.approx(
        tier_metrics(oof_b["logits"], _targets(info))["mean_auc"])
    assert json.loads((b / "result.json").read_text())["global_step"] == two["global_step"]


def test_two_process_kfold_matches_one_process(tmp_path, data_dir, spec_path, five_models):
    """The default-suite check: 2 folds, 1 epoch each (folds of 18: train 14 = one step of 7 + 7, val 4)."""
    common = ("--kfold", "2", "--final_fit", "false", "--num_epochs", "1", "--max_prompts", "36")
    one = run_one_in_process(tmp_path / "p1", data_dir, spec_path, "--batch_size", "16", *common)
    two = launch(2, tmp_path / "p2", data_dir, spec_path, "--batch_size", "8", *common)
    check_same_run(tmp_path / "p1", tmp_path / "p2", one, two, five_models, 36, 2)


@pytest.mark.slow
def test_two_process_kfold_and_final_fit_match_one_process(tmp_path, data_dir, spec_path, five_models):
    """Both runs launched, 2 epochs per fold with selection on validation, and the final fit on every prompt
    (a minute or more on 2 shared cores)."""
    from aco_bert.model.modeling import RouterModel

    # selection on validation loss: with 4 validation prompts the AUC of two epochs can tie up to rounding, and
    # the selected epoch (hence the final fit's length) then flips between runs that agree to 1e-3
    common = ("--kfold", "2", "--final_fit", "true", "--max_prompts", "36", "--metric_for_best", "loss")
    one = launch(1, tmp_path / "p1", data_dir, spec_path, "--batch_size", "16", *common)
    two = launch(2, tmp_path / "p2", data_dir, spec_path, "--batch_size", "8", *common)
    check_same_run(tmp_path / "p1", tmp_path / "p2", one, two, five_models, 36, 2)
    fa, fb = RouterModel.from_pretrained(one["model_dir"]), RouterModel.from_pretrained(two["model_dir"])
    assert fb.config.models == five_models and two["model_dir"].endswith("final")
    wa, wb = fa.state_dict(), fb.state_dict()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 0.03


def _targets(info) -> np.ndarray:
    """Per-tier success of the run's prompts, read back from the dataset the run names (not from the run)."""
    table = info.dataset.load()
    m = table.matrix(info.models)
    pos = {p: i for i, p in enumerate(m.prompt_ids)}
    return m.success[[pos[p] for p in info.prompt_ids]].astype(np.float32)


@pytest.mark.slow
def test_two_process_frozen_encoder_unused_head_and_resume(tmp_path, data_dir, spec_path):
    """Frozen encoder (embedding cache written once by the main process), a head without loss (DDP must look
    for unused parameters), a run killed mid-way and resumed on 2 processes ending where an uninterrupted one
    does (a few minutes on 2 shared cores)."""
    cache = tmp_path / "cache"
    kw = ("--max_prompts", "30", "--batch_size", "4", "--freeze_encoder", "true", "--embedding_cache_dir",
          str(cache), "--aux_loss_weight", "0", "--learning_rate", "1e-2", "--val_fraction", "0",
          "--max_steps", "6", "--save_steps", "2")
    full = launch(2, tmp_path / "full", data_dir, spec_path, *kw)
    assert full["global_step"] == 6 and len(list(cache.glob("*.safetensors"))) == 1
    killed = launch(2, tmp_path / "r", data_dir, spec_path, *kw, "--stop_after_steps", "3")
    assert killed["stopped"] and killed["global_step"] == 3
    resumed = launch(2, tmp_path / "r", data_dir, spec_path, *kw, "--resume", "true")
    assert resumed["global_step"] == 6 and len(list(cache.glob("*.safetensors"))) == 1
    from safetensors.torch import load_file as load_t

    wa, wb = (load_t(str(d / "best" / "model.safetensors")) for d in (tmp_path / "full", tmp_path / "r"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


@pytest.mark.parametrize("name, kind", [("cpu-ddp", "MULTI_GPU"), ("gpu-ddp", "MULTI_GPU"), ("gpu-fsdp", "FSDP"),
                                        ("gpu-deepspeed", "DEEPSPEED")])
def test_accelerate_configs_load(name, kind):
    """The shipped `accelerate launch --config_file` files parse with accelerate's own loader (cpu-ddp is
    MULTI_GPU on purpose: see the file), and the ZeRO-2 micro-batch is the DistilBERT recipe's batch."""
    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.name == kind and cfg.num_processes == 2 and cfg.num_machines == 1
    assert path.read_text().startswith("#")  # says when to use it
    if kind == "DEEPSPEED":
        ds = json.loads((REPO / cfg.deepspeed_config["deepspeed_config_file"]).read_text())
        recipe = yaml.safe_load((REPO / "configs" / "distilbert-gpu.yaml").read_text())
        assert ds["zero_optimization"]["stage"] == 2 and ds["train_micro_batch_size_per_gpu"] == recipe["batch_size"]
