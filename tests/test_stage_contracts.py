"""train -> stack -> export as a user runs them: three processes, three working directories, typed contracts.

Regression for "a spec given by path is lost between stages": ``train`` stored only the spec's *name*, so
``stack --run R`` failed with ``FileNotFoundError: no router spec 'user-3tier'`` for any user spec, and from another
directory with ``unknown dataset 'data/x.jsonl'``. Now ``run.json`` / ``stack.json`` carry the whole spec and an
absolute dataset reference, so each verb runs from any directory with nothing repeated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aco_bert.testing import TINY_CONFIG

PY = sys.executable
SMALL_STACK = ["--k", "2", "--within", "0.05", "--delta", "0.2",
               "--stacker", "{n_rounds: 20, nthread: 1, inner_k: 2, pca_dim: 3, min_labels: 5}",
               "--cost", "{n_rounds: 20, nthread: 1, pca_dim: 3, min_rows: 5}",
               "--verifier", "{n_rounds: 20, nthread: 1}"]
FAST_TRAIN = ["--kfold", "2", "--final_fit", "true", "--num_epochs", "1", "--num_threads", "1"]


def _verb(args: list[str], cwd: Path, data_dir: Path) -> str:
    env = dict(os.environ, ACO_BERT_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    r = subprocess.run([PY, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)} (cwd {cwd}) failed:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture()
def user_project(swebench, tmp_path) -> Path:
    """A user's folder: a spec no package ships (specs/user.yaml) and their own outcome file (data/x.jsonl,
    60 real SWE-bench prompts in the long format), both referenced by relative paths."""
    from aco_bert.spec import RouterSpec

    s5 = RouterSpec.load("swebench-verified-5tier")
    models = [s5.models[0], s5.models[3], s5.models[4]]
    proj = tmp_path / "project"
    (proj / "specs").mkdir(parents=True)
    (proj / "data").mkdir()
    spec = RouterSpec("user-3tier", [t for t in s5.tiers if t.model in models], frontier=s5.frontier,
                      floors={"legal": 2})
    spec.save(proj / "specs" / "user.yaml")
    df = swebench.df
    pids = list(dict.fromkeys(df["prompt_id"].tolist()))[:60]
    part = df[df["prompt_id"].isin(pids) & df["model"].isin(models)].copy()
    for col, values in swebench.extras.get("prompt_meta", {}).items():  # difficulty: the tiny config's aux target
        part[col] = part["prompt_id"].map(values)
    part = part.loc[:, [c for c in part.columns if part[c].notna().any()]]
    part.to_json(proj / "data" / "x.jsonl", orient="records", lines=True, force_ascii=False)
    return proj


@pytest.mark.parametrize("variant", ["user-spec-and-data", "max-prompts-heads"])
def test_train_stack_export_run_from_any_working_directory(variant, user_project, data_dir, tmp_path):
    proj = user_project
    elsewhere, third = tmp_path / "elsewhere", tmp_path / "third"
    elsewhere.mkdir()
    third.mkdir()
    train = ["aco_bert.train", "--config", str(TINY_CONFIG), "--spec", "specs/user.yaml", "--output_dir", "R",
             *FAST_TRAIN]
    mode = "stacked"
    if variant == "user-spec-and-data":
        train += ["--dataset", "data/x.jsonl"]
    else:  # the registry dataset, a seeded slice of it, the heads decision layer
        train += ["--max_prompts", "48"]
        mode = "heads"
    _verb(train, proj, data_dir)
    run = proj / "R"
    # the spec file is gone by the time the later stages run: they must not need it
    (proj / "specs" / "user.yaml").unlink()
    _verb(["aco_bert.stack", "--run", str(run), "--mode", mode, *SMALL_STACK], elsewhere, data_dir)
    info = json.loads((run / "stack" / "stack.json").read_text())
    assert info["spec"]["name"] == "user-3tier" and info["mode"] == mode
    assert len(info["prompt_ids"]) == (60 if variant == "user-spec-and-data" else 48)
    if variant == "user-spec-and-data":
        assert info["dataset"]["dataset"] == str(proj / "data" / "x.jsonl")
    out = json.loads(_verb(["aco_bert.export", "--checkpoint", str(run), "--out", "B", "--validation_slice", "16",
                            "--threads", "1"], third, data_dir))
    bundle = third / "B"
    assert out["mode"] == mode and out["bundle"] == "B"
    ry = yaml.safe_load((bundle / "router.yaml").read_text())
    assert ry["spec"]["name"] == "user-3tier" and ry["spec"]["floors"] == {"legal": 2}
    assert ry["routing"]["mode"] == mode
    man = json.loads((bundle / "manifest.json").read_text())
    assert man["parity"]["passed"] and man["parity"]["source"].startswith(
        "x: 16" if variant == "user-spec-and-data" else "swebench-verified: 16")
    from aco_bert.runtime import Router

    d = Router.load(bundle).route("Fix the crash when the config file is empty.")
    assert d.model == ry["spec"]["tiers"][d.tier - 1]["model"]
