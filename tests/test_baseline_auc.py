"""``scripts/baseline_auc.py`` on any dataset: a user file with holes (its own models, no spec needed, ``--name``),
a registered dataset narrowed by ``--spec``, and clear errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from aco_bert.data.registry import load_outcomes

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["DeepSeek V3.2 Reasoner", "GPT-5 (2025-08-07) (medium reasoning)", "Claude 4.5 Opus medium (20251101)"]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("baseline_auc", ROOT / "scripts" / "baseline_auc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_user_file_with_holes_and_a_name(script, data_dir, tmp_path, capsys):
    t = load_outcomes("swebench-verified", data_dir=data_dir)
    df = t.df[t.df["model"].isin(MODELS)][["prompt_id", "prompt", "model", "success", "cost_usd"]]
    fails = np.sort(df[(df["model"] == MODELS[0]) & (df["success"] < 0.5)]["prompt_id"].to_numpy())
    drop = set(np.random.default_rng(0).choice(fails, 125, replace=False))
    df = df[~((df["model"] == MODELS[0]) & df["prompt_id"].isin(drop))]
    path = tmp_path / "outcomes.jsonl"
    df.to_json(path, orient="records", lines=True)
    out = tmp_path / "b.json"
    assert script.main(["--dataset", str(path), "--name", "my-agents", "--k", "3", "--json", str(out)]) == 0
    assert "## my-agents: TF-IDF + LR, 3-fold OOF" in capsys.readouterr().out
    res = json.loads(out.read_text())["results"][0]
    tiers = {r["model"]: r for r in res["tiers"]}
    assert res["dataset"] == "my-agents" and set(tiers) == set(MODELS)  # the file's own models, no spec
    assert tiers[MODELS[0]]["n"] == 375 and tiers[MODELS[0]]["base_rate"] == pytest.approx(300 / 375)
    assert all(r["auc"] is None or 0 < r["auc"] < 1 for r in res["tiers"])


def test_registered_dataset_with_spec_and_errors(script, data_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert script.main(["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--spec",
                        "swebench-verified-5tier", "--k", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert res["dataset"] == "swebench-verified" and len(res["tiers"]) == 5 and res["n_prompts"] == 500
    capsys.readouterr()
    assert script.main(["--dataset", "no-such-table"]) == 2
    assert "unknown dataset 'no-such-table'" in capsys.readouterr().err
    assert script.main(["--dataset", "swebench-verified", "--dataset_options", "[1, 2]"]) == 2
    assert "--dataset_options must be a mapping" in capsys.readouterr().err
