"""`data describe` on real SWE-bench outcomes: the cheapest-succeeding-tier analysis, recomputed here straight from
leaderboards.json, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aco_bert.data.describe import describe, main, tier_order, tier_shares
from aco_bert.data.schema import OutcomeTable, validate_table
from aco_bert.spec import RouterSpec

EXCLUDED = "Claude 3.7 Sonnet (20250219)"


@pytest.fixture(scope="module")
def raw_board(data_dir) -> dict[str, dict[str, dict]]:
    """model -> instance -> {resolved, cost}, read directly from the leaderboard JSON."""
    lb = json.loads((data_dir / "swebench-verified" / "leaderboards.json").read_text())
    board = next(b for b in lb["leaderboards"] if b["name"] == "bash-only")
    return {r["name"]: r["per_instance_details"] for r in board["results"]
            if r.get("per_instance_details") and r["name"] != EXCLUDED}


def test_swebench_headroom_numbers(swebench, raw_board):
    assert len(raw_board) == 24
    ids = sorted(next(iter(raw_board.values())))
    solved = {i: any(raw_board[m][i]["resolved"] for m in raw_board) for i in ids}
    none_share = 1 - np.mean(list(solved.values()))
    assert none_share == pytest.approx(0.128)  # the oracle over all 24 models resolves 87.2 %

    m = swebench.matrix()
    order = tier_order(m)
    mean_cost = {k: np.mean([d["cost"] for d in v.values()]) for k, v in raw_board.items()}
    assert order == sorted(mean_cost, key=mean_cost.get)
    sh = tier_shares(m, order)
    assert sh.none_share == pytest.approx(none_share)
    assert sh.shares.sum() + sh.none_share == pytest.approx(1.0)
    # Tier 1's share is simply its resolve rate; tier k's share counts tasks tiers < k all fail.
    cheapest = order[0]
    assert sh.shares[0] == pytest.approx(np.mean([raw_board[cheapest][i]["resolved"] for i in ids]))
    k2 = np.mean([raw_board[order[1]][i]["resolved"] and not raw_board[cheapest][i]["resolved"] for i in ids])
    assert sh.shares[1] == pytest.approx(k2)

    text = describe(swebench)
    assert "500 prompts x 24 models" in text
    assert "none (no tier succeeds)" in text and "12.8%" in text
    assert "oracle success (some tier succeeds, score >= 0.5): 87.2%" in text
    assert f"cheapest tier alone solves {sh.shares[0]:.1%}" in text
    assert "excluded entries (Claude 3.7 Sonnet (20250219))" in text


def test_spec_tiers_fix_the_order(swebench, raw_board):
    spec = RouterSpec.load("swebench-verified-5tier")
    ids = sorted(next(iter(raw_board.values())))
    sh = tier_shares(swebench.matrix(), spec.models)
    oracle5 = np.mean([any(raw_board[t][i]["resolved"] for t in spec.models) for i in ids])
    assert sh.oracle_success == pytest.approx(oracle5)
    first = []
    for i in ids:
        ks = [k for k, t in enumerate(spec.models) if raw_board[t][i]["resolved"]]
        first.append(ks[0] if ks else -1)
    assert np.array_equal(sh.first_success, first)
    text = describe(swebench, spec.models)
    lines = [ln for ln in text.splitlines() if ln[:4].strip().isdigit()]
    assert [ln.split()[0] for ln in lines] == ["1", "2", "3", "4", "5"]
    assert spec.models[0][:20] in lines[0] and spec.models[-1][:20] in lines[-1]
    with pytest.raises(ValueError, match="not in"):
        describe(swebench, ["no such model"])


def test_graded_threshold_and_missing_outcomes():
    df = pd.DataFrame({
        "prompt_id": ["a", "a", "b", "b", "c"],
        "prompt": ["x", "x", "y", "y", "z"],
        "model": ["cheap", "dear", "cheap", "dear", "dear"],
        "success": [0.4, 1.0, 0.6, 0.0, 0.3],
        "cost_usd": [1.0, 5.0, 1.0, 5.0, 5.0],
    })
    t = OutcomeTable(validate_table(df), name="toy")
    m = t.matrix()
    assert tier_order(m) == ["cheap", "dear"]
    sh = tier_shares(m, ["cheap", "dear"], threshold=0.5)
    # a: cheap 0.4 < 0.5, dear succeeds -> tier 2; b: cheap 0.6 -> tier 1; c: cheap missing (never a success), dear 0.3.
    assert sh.first_success.tolist() == [1, 0, -1]
    assert tier_shares(m, ["cheap", "dear"], threshold=0.25).first_success.tolist() == [0, 0, 1]
    assert "1 prompt x model cells missing" in describe(t)


def test_cli(data_dir, capsys):
    assert main(["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--spec", "default"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spec swebench-verified-5tier: 5 tiers")
    assert "500 prompts x 24 models" in out
    assert main(["--dataset", "routerbench", "--data-dir", str(data_dir), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "routerbench: 952 prompts x 11 models" in out


def test_cli_errors_are_one_line(data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--data-dir" in capsys.readouterr().out  # the flags are DescribeConfig's fields, dashes accepted
    for argv, msg in ([["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--split", "test"],
                       "swebench-verified: "],
                      [["--dataset", "no-such-dataset", "--data-dir", str(data_dir)], "unknown dataset 'no-such-dataset'"],
                      [["--dataset", "swebench-verified", "--data-dir", str(data_dir), "--spec", "nope"],
                       "no router spec 'nope'"],
                      [["--dataset", "swebench-verified", "--threshold", "high"], "threshold"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("aco-bert data describe: ") and msg in err, err
    assert main([]) == 2  # --dataset is required
    assert "required: --dataset" in capsys.readouterr().err
