"""Router training on real SWE-bench slices with a tiny random DistilBERT: loss falls, resume is exact, k-fold
writes the stacking contract, frozen-encoder mode caches embeddings, `accelerate launch` works end to end."""

from __future__ import annotations

import json
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from aco_bert.config import load_config, parse_config
from aco_bert.model.data import LengthGroupedBatchSampler
from aco_bert.model.metrics import tier_metrics
from aco_bert.model.trainer import PROG, main, train
from aco_bert.model.training_args import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "tiny-test.yaml"
def cfg_for(tmp: Path, data_dir: Path, spec: str, **kw) -> TrainConfig:
    base = dict(data_dir=str(data_dir), spec=spec, output_dir=str(tmp / "run"), num_threads=1,
                embedding_cache_dir=str(tmp / "cache"), max_prompts=40)
    base.update(kw)
    return load_config(TrainConfig, TINY_YAML, base)


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_length_grouped_batch_sampler():
    lengths = np.random.default_rng(0).integers(5, 500, 203)
    s = LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=3, mega_batch_mult=4)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(i for b in e1 for i in b) == list(range(203)) and len(e1) == len(s) == 26
    assert list(s) == e1  # a function of (seed, epoch) only: what resume relies on
    s.set_epoch(2)
    assert list(s) != e1
    # grouping: within-batch length spread is far below that of random batches
    spread = np.mean([np.ptp(lengths[b]) for b in e1])
    rnd = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(203, 8, replace=False)]) for i in range(50)])
    assert spread < 0.5 * rnd
    ev = list(LengthGroupedBatchSampler(lengths, 64, shuffle=False))
    flat = [i for b in ev for i in b]
    assert list(lengths[flat]) == sorted(lengths, reverse=True)


def test_tier_metrics_masks_and_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 3)).astype(float)
    y[:10, 0] = np.nan
    y[:, 2] = 1.0  # one class: AUC undefined
    z = rng.normal(size=(50, 3)) + y * 0.5
    m = tier_metrics(z, y)
    assert abs(m["per_tier_auc"][0] - roc_auc_score(y[10:, 0], z[10:, 0])) < 1e-12
    assert np.isnan(m["per_tier_auc"][2]) and m["mean_auc"] == pytest.approx(np.mean(m["per_tier_auc"][:2]))
    p = 1 / (1 + np.exp(-z[10:, 0]))
    assert m["per_tier_brier"][0] == pytest.approx(np.mean((p - y[10:, 0]) ** 2))


def test_metrics_log_keeps_the_records_before_the_state(tmp_path):
    from aco_bert.model.state import MetricsLog, TrainerState

    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, "fold0/")
    log.start(None)
    assert not path.exists()  # nothing logged yet: no file
    for step in (1, 2, 3, 3, 4):  # (3, 3): a step record and the epoch-end record at the same step
        log.write({"step": step})
    assert log.n_records == 5 and _log(path)[0] == {"tag": "fold0/", "step": 1}
    log.start(TrainerState(global_step=3, log_records=3))  # saved before the epoch-end record: cut by count
    assert [r["step"] for r in _log(path)] == [1, 2, 3] and log.n_records == 3
    log.write({"step": 3})
    log.write({"step": 4})
    log.start(TrainerState(global_step=3))  # a state without the count: cut by step
    assert [r["step"] for r in _log(path)] == [1, 2, 3, 3]
    log.start(None)  # a fresh run starts over
    assert path.read_text() == "" and log.n_records == 0


def test_tiny_router_loss_falls(tmp_path, data_dir, spec_path, five_models):
    cfg = cfg_for(tmp_path, data_dir, spec_path, max_steps=30, logging_steps=1, val_fraction=0.0, dropout=0.0,
                  learning_rate=3e-3, warmup_ratio=0.0, batch_size=8)
    r = train(cfg)
    assert r.mode == "single" and r.global_step == 30 and not r.stopped
    log = [x for x in _log(tmp_path / "run" / "metrics.jsonl") if "train_success" in x]
    first = np.mean([x["train_success"] for x in log[:5]])
    last = np.mean([x["train_success"] for x in log[-5:]])
    assert last < first - 0.01, (first, last)
    total_first, total_last = np.mean([x["train_loss"] for x in log[:5]]), np.mean([x["train_loss"] for x in log[-5:]])
    assert total_last < total_first
    assert {"train_cost", "train_aux_difficulty"} <= set(log[0])
    saved = json.loads((tmp_path / "run" / "best" / "router_config.json").read_text())
    assert saved["models"] == five_models and saved["aux_labels"]["difficulty"][0] == "1-4 hours"
    assert not (tmp_path / "run" / "state").exists()  # resumable state is removed once a run finishes


def test_killed_run_resumes_to_the_same_result(tmp_path, data_dir, spec_path):
    from safetensors.torch import load_file as load_t

    common = dict(max_steps=9, save_steps=2, gradient_accumulation_steps=2, val_fraction=0.0, batch_size=4,
                  dropout=0.2, max_prompts=24, logging_steps=1)  # 3 steps per epoch: the kill lands mid-epoch 1
    full = train(cfg_for(tmp_path / "a", data_dir, spec_path, **common))
    killed = train(cfg_for(tmp_path / "b", data_dir, spec_path, stop_after_steps=5, save_total_limit=2, **common))
    assert killed.stopped and killed.global_step == 5
    state_dir = tmp_path / "b" / "run" / "state"
    assert sorted(p.name for p in state_dir.iterdir()) == ["step_00000004", "step_00000005"]  # the 2 newest
    assert not (tmp_path / "b" / "run" / "result.json").exists()
    # A real kill lands anywhere: here after step 5 was logged but before its state was written. The resumed run
    # replays step 5 from the step-4 state and must not log it twice.
    shutil.rmtree(state_dir / "step_00000005")
    assert [r["step"] for r in _log(tmp_path / "b" / "run" / "metrics.jsonl")] == [1, 2, 3, 3, 4, 5]  # 3: epoch end
    resumed = train(cfg_for(tmp_path / "b", data_dir, spec_path, resume=True, **common))
    assert resumed.global_step == full.global_step == 9
    log_a, log_b = _log(tmp_path / "a" / "run" / "metrics.jsonl"), _log(tmp_path / "b" / "run" / "metrics.jsonl")
    assert [r["step"] for r in log_b] == [r["step"] for r in log_a] == [1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9]
    for ra, rb in zip(log_a, log_b):  # one step per record: the resumed run logs what the uninterrupted one did
        assert ra.keys() == rb.keys() and all(rb[k] == pytest.approx(v, abs=1e-6) for k, v in ra.items())
    wa = load_t(str(tmp_path / "a" / "run" / "best" / "model.safetensors"))
    wb = load_t(str(tmp_path / "b" / "run" / "best" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    # the match is not vacuous: another seed (other slice, init and dropout) ends elsewhere
    other = train(cfg_for(tmp_path / "c", data_dir, spec_path, seed=1, **common))
    wc = load_t(str(Path(other.model_dir) / "model.safetensors"))
    assert float((wa["success_head.weight"] - wc["success_head.weight"]).abs().max()) > 1e-3
    # --resume on a finished run returns its result instead of training again
    again = train(cfg_for(tmp_path / "b", data_dir, spec_path, resume=True, **common))
    assert again.global_step == 9 and again.model_dir == resumed.model_dir
    # a fresh run into a used output_dir starts a new log instead of appending to the old one
    train(cfg_for(tmp_path / "b", data_dir, spec_path, **common))
    assert [r["step"] for r in _log(tmp_path / "b" / "run" / "metrics.jsonl")] == [r["step"] for r in log_a]


def test_kfold_writes_the_stacking_contract(tmp_path, data_dir, spec_path, five_models):
    cfg = cfg_for(tmp_path, data_dir, spec_path, kfold=3, max_steps=3, val_fraction=0.25, final_fit=True,
                  cost_heads=True, num_epochs=1)
    r = train(cfg)
    out = tmp_path / "run"
    oof = load_file(str(out / "oof.safetensors"))
    meta = json.loads((out / "oof_meta.json").read_text())
    P = len(meta["prompt_ids"])
    assert P == 40 and len(set(meta["prompt_ids"])) == P
    assert meta["models"] == five_models and meta["dataset"] == "swebench-verified" and meta["spec"] == "five"
    assert oof["logits"].shape == (P, 5) and oof["logits"].dtype == np.float32
    assert oof["embeddings"].shape == (P, 32) and oof["embeddings"].dtype == np.float32
    assert oof["cost"].shape == (P, 5) and (oof["cost"] >= 0).all()
    assert oof["fold"].dtype == np.int64 and sorted(np.bincount(oof["fold"]).tolist()) == [13, 13, 14]
    assert np.isfinite(oof["logits"]).all() and np.isfinite(oof["embeddings"]).all()
    assert len(meta["per_tier_auc"]) == 5 and meta["mean_auc"] == pytest.approx(r.mean_auc)
    assert meta["config"]["kfold"] == 3
    # each prompt was predicted by the model of the fold that held it out, exactly once
    for f in range(3):
        saved = load_file(str(out / f"fold_{f}" / "predictions.safetensors"))
        assert (oof["fold"][saved["index"]] == f).all()
        np.testing.assert_array_equal(oof["logits"][saved["index"]], saved["logits"])
        fr = json.loads((out / f"fold_{f}" / "fold_result.json").read_text())
        assert fr["n_train"] + fr["n_val"] + fr["n_test"] == P
    # the final model (trained on every prompt) is loadable and reproduces its own pooled embeddings
    from aco_bert.model.modeling import RouterModel

    final = RouterModel.from_pretrained(r.model_dir)
    assert final.config.models == five_models and r.model_dir.endswith("final")


def test_frozen_encoder_embeds_once_and_kfold_resumes(tmp_path, data_dir, spec_path):
    kw = dict(kfold=2, freeze_encoder=True, num_epochs=3, max_prompts=30, learning_rate=1e-2, batch_size=8,
              val_fraction=0.2, normalize=True, success_rank=2)
    train(cfg_for(tmp_path, data_dir, spec_path, **kw))
    cached = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(cached) == 1
    emb = load_file(str(cached[0]))["embeddings"]
    oof = load_file(str(tmp_path / "run" / "oof.safetensors"))
    np.testing.assert_allclose(oof["embeddings"], emb, rtol=0, atol=1e-6)  # the encoder never moved
    mtime = cached[0].stat().st_mtime_ns
    # killed inside fold 0 (frozen: the resumable state holds the heads only), then resumed: same predictions
    run2 = str(tmp_path / "run2")
    killed = train(cfg_for(tmp_path, data_dir, spec_path, output_dir=run2, stop_after_steps=4, **kw))
    assert killed.stopped and not (tmp_path / "run2" / "oof.safetensors").exists()
    state = next((tmp_path / "run2" / "fold_0" / "state").iterdir())
    assert all(k.startswith(("success_head", "cost_head", "aux_heads")) for k in load_file(str(state / "model.safetensors")))
    train(cfg_for(tmp_path, data_dir, spec_path, output_dir=run2, resume=True, **kw))
    np.testing.assert_allclose(load_file(run2 + "/oof.safetensors")["logits"], oof["logits"], rtol=0, atol=1e-6)
    assert cached[0].stat().st_mtime_ns == mtime and len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_holdout_split(tmp_path, data_dir, spec_path):
    r = train(cfg_for(tmp_path, data_dir, spec_path, holdout="repo=django/django", max_prompts=60, max_steps=4))
    meta = json.loads((tmp_path / "run" / "test_meta.json").read_text())
    pred = load_file(str(tmp_path / "run" / "test_predictions.safetensors"))
    assert meta["prompt_ids"] and all(p.startswith("django__django") for p in meta["prompt_ids"])
    assert pred["logits"].shape == (len(meta["prompt_ids"]), 5)
    assert r.mode == "holdout" and "val" in r.metrics
    with pytest.raises(ValueError, match="holdout column"):
        train(cfg_for(tmp_path, data_dir, spec_path, holdout="nope=1", output_dir=str(tmp_path / "x")))


def test_accelerate_launch_smoke(tmp_path, data_dir, spec_path):
    out = tmp_path / "launch"
    env = dict(os.environ, ACO_BERT_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "aco_bert.train", "--config", str(TINY_YAML), "--max_steps", "3", "--output_dir", str(out),
           "--spec", spec_path, "--max_prompts", "24", "--seed", "7"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["global_step"] == 3 and summary["mode"] == "single"
    assert (out / "best" / "model.safetensors").exists() and (out / "result.json").exists()
    assert yaml.safe_load((out / "train_config.yaml").read_text())["seed"] == 7


def test_cli_help_and_bad_override(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"--{f.name}" in out for f in dataclasses.fields(TrainConfig))  # every field is a flag ...
    assert "optimizer steps; overrides num_epochs" in out  # ... with its comment as help
    # a typo'd flag, a value a check rejects, an unknown YAML key: exit code 2, no traceback
    assert main(["--config", str(TINY_YAML), "--max_stepz", "3"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --max_stepz 3" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_YAML.read_text() + "max_stepz: 3\n")
    for argv, msg in ([["--config", str(TINY_YAML), "--kfold", "1"], "kfold 1: use 0"],
                      [["--config", str(TINY_YAML), "--max_length", "4"], "max_length 4: expected an integer >= 8"],
                      [["--config", str(TINY_YAML), "--truncation", "middle"], "truncation 'middle' not in"],
                      [["--config", str(bad)], f"{bad}: unknown key(s) ['max_stepz']"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(PROG) and msg in err, err


def test_cli_flags_are_the_config_fields():
    cfg = parse_config(TrainConfig, ["--config", str(TINY_YAML), "--max-steps", "7", "--resume", "--cost_heads",
                                     "false", "--dataset_options", "{split: test}", "--mixed_precision", "no",
                                     "--pos_weight", "balanced", "--tail_tokens", "16"], PROG)
    assert (cfg.max_steps, cfg.resume, cfg.cost_heads, cfg.dataset_options) == (7, True, False, {"split": "test"})
    assert (cfg.mixed_precision, cfg.pos_weight, cfg.run_name) == ("no", "balanced", "tiny-test")  # rest: the YAML
    assert cfg.text_truncation.tail_tokens == 16 and cfg.text_truncation.max_length == 64


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    from aco_bert.data.registry import DATASETS
    from aco_bert.spec import RouterSpec

    cfg = load_config(TrainConfig, path)
    assert cfg.dataset in DATASETS
    assert RouterSpec.load(cfg.spec).models
