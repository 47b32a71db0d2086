"""Issue 14 for the data layer: bad text and malformed files are DataErrors naming file and row, printed by
`data describe` / `evaluate` as one line with exit code 2; empty inputs are errors, never "nothing skipped".

Small files written in tmp_path around real SWE-bench issue texts and the real RouterBench header.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pandas as pd
import pytest

from aco_bert.data import DataError
from aco_bert.data.adapters.generic import load_generic
from aco_bert.data.adapters.routerbench import load_routerbench
from aco_bert.data.adapters.scores_json import load_scores_json
from aco_bert.data.describe import main as describe_main
from aco_bert.data.text import clean_text_error, invalid_unicode_in, is_blank
from aco_bert.evaluate import main as evaluate_main


@pytest.fixture(scope="module")
def prompts(data_dir) -> list[str]:
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        return [" ".join(json.loads(line)["problem_statement"].split()[:30]) for line in islice(f, 4)]


def _long_rows(prompts: list[str]) -> list[dict]:
    return [{"prompt_id": f"p{i}", "prompt": p, "model": m, "success": float((i + j) % 2)}
            for i, p in enumerate(prompts) for j, m in enumerate(("small", "large"))]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_clean_text_error_refuses_surrogates_and_invisible_only_text():
    assert clean_text_error("Fix the crash in parse()") is None
    assert clean_text_error("caf\u00e9 \u200b ok") is None  # a zero-width space inside real text is fine
    assert "lone surrogate U+D800" in clean_text_error("ab\ud800")
    for blank in ("", " \n\t", "\u200b\u200c\u200d", "\ufeff", "\x00\x00", "\u2060\u00a0\u3000"):
        assert is_blank(blank) and clean_text_error(blank).startswith("empty text"), repr(blank)
    assert invalid_unicode_in({"a": [1, {"b": "x\udc00"}]}) == "a[1].b is not valid Unicode: lone surrogate " \
                                                                  "U+DC00 at character 1"


def test_lone_surrogate_names_file_and_row(prompts, tmp_path, capsys):
    rows = _long_rows(prompts)
    rows[3]["prompt"] = prompts[1][:20] + "\ud800"  # json.dumps writes it as the escape \ud800
    rows[2]["prompt"] = rows[3]["prompt"]
    f = _jsonl(tmp_path / "sur.jsonl", rows)
    with pytest.raises(DataError, match="lone surrogate") as e:
        load_generic(f)
    assert e.value.file == str(f) and e.value.row == 2
    assert describe_main(["--dataset", str(f)]) == 2
    err = capsys.readouterr().err
    assert "sur.jsonl" in err and "row 2" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("blank", ["\u200b\u200b", "\ufeff", "\x00", " \u200d\t"])
def test_invisible_only_prompt_is_empty(blank, prompts, tmp_path):
    rows = _long_rows(prompts)
    rows[4]["prompt"] = rows[5]["prompt"] = blank
    with pytest.raises(DataError, match="empty prompt") as e:
        load_generic(_jsonl(tmp_path / "zw.jsonl", rows))
    assert e.value.row == 4
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "zw.csv", index=False)
    with pytest.raises(DataError, match="empty prompt"):
        load_generic(tmp_path / "zw.csv")


def test_non_utf8_jsonl_and_csv_name_file_and_row(prompts, tmp_path, capsys):
    good = _jsonl(tmp_path / "ok.jsonl", _long_rows(prompts))
    assert len(load_generic(good).df) == 8  # the control: the same rows load when they are UTF-8
    lines = good.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"prompt": "', b'"prompt": "caf\xe9 ')
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match="invalid UTF-8") as e:
        load_generic(bad)
    assert e.value.file == str(bad) and e.value.row == 5
    pd.DataFrame(_long_rows(prompts)).to_csv(tmp_path / "ok.csv", index=False)
    raw = (tmp_path / "ok.csv").read_bytes().splitlines(keepends=True)
    raw[3] = raw[3].replace(b",", b"\xff,", 1)  # data row 2
    (tmp_path / "bad.csv").write_bytes(b"".join(raw))
    with pytest.raises(DataError, match="invalid UTF-8") as e:
        load_generic(tmp_path / "bad.csv")
    assert e.value.row == 2
    assert evaluate_main(["--dataset", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "latin1.jsonl" in err and "row 5" in err and "Traceback" not in err


def test_empty_files_are_errors_naming_the_file(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    for load in (load_generic, load_routerbench):
        with pytest.raises(DataError, match="empty file") as e:
            load(empty)
        assert e.value.file == str(empty)
    assert describe_main(["--dataset", str(empty)]) == 2
    assert "empty.csv" in capsys.readouterr().err
    # a real RouterBench header with no rows, and the same file with 3 real rows as the control
    real = data_dir / "routerbench" / "mbpp_test.csv"
    df = pd.read_csv(real, nrows=3)
    df.to_csv(tmp_path / "rb3.csv", index=False)
    assert load_routerbench(tmp_path / "rb3.csv").n_prompts == 3
    df.iloc[:0].to_csv(tmp_path / "rb0.csv", index=False)
    with pytest.raises(DataError, match="no outcome rows") as e:
        load_routerbench(tmp_path / "rb0.csv")
    assert e.value.file == str(tmp_path / "rb0.csv")
    hdr = tmp_path / "hdr.jsonl"
    hdr.write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        load_generic(hdr)


def test_long_file_missing_success_is_not_read_as_wide(prompts, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "success"} | {"cost_usd": 0.01} for r in _long_rows(prompts)]
    with pytest.raises(DataError, match="missing column success"):
        load_generic(_jsonl(tmp_path / "nosucc.jsonl", rows))


def test_scores_json_duplicate_and_zero_records(prompts, tmp_path):
    recs = [{"question": p, "scores": {"small": 1.0, "large": 0.0}} for p in prompts]
    (tmp_path / "ok.json").write_text(json.dumps(recs))
    assert load_scores_json(tmp_path / "ok.json").n_prompts == 4
    (tmp_path / "dup.json").write_text(json.dumps(recs + [dict(recs[1])]))
    with pytest.raises(DataError, match="duplicate record: the same question as row 1") as e:
        load_scores_json(tmp_path / "dup.json")
    assert e.value.row == 4
    (tmp_path / "zero.json").write_text("[]")
    with pytest.raises(DataError, match="no records"):
        load_scores_json(tmp_path / "zero.json")
    recs[2]["question"] = "\u200b\ufeff"
    (tmp_path / "zw.json").write_text(json.dumps(recs))
    with pytest.raises(DataError, match="empty text") as e:
        load_scores_json(tmp_path / "zw.json")
    assert e.value.row == 2


def test_out_of_range_success_error_and_clip_option(prompts, tmp_path, capsys):
    # with a cost: evaluate refuses a table whose models have none (tests/test_costs.py)
    rows = [{**r, "cost_usd": 0.001 if r["model"] == "small" else 0.01} for r in _long_rows(prompts)]
    rows[3]["success"] = -0.033
    rows[6]["success"] = 1.2
    f = _jsonl(tmp_path / "neg.jsonl", rows)
    with pytest.raises(DataError, match=r"success -0.033 is not in \[0, 1\].*clip_success") as e:
        load_generic(f)
    assert e.value.row == 3
    t = load_generic(f, clip_success=True)
    assert t.df["success"].tolist()[3] == 0.0 and t.df["success"].tolist()[6] == 1.0
    assert t.skipped == {"success values outside [0, 1] clipped (kept)": 2} and t.extras["clipped_success"]
    assert describe_main(["--dataset", str(f)]) == 2
    assert "row 3" in capsys.readouterr().err
    assert describe_main(["--dataset", str(f), "--clip_success", "true"]) == 0
    assert "2 success values outside [0, 1] clipped" in capsys.readouterr().out
    assert evaluate_main(["--dataset", str(f)]) == 2 and "row 3" in capsys.readouterr().err
    assert evaluate_main(["--dataset", str(f), "--clip_success", "true"]) == 0
    wide = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": prompts[:2], "small": [-0.5, 1.0], "large": [1, 0]})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(DataError, match="model column 'small'"):
        load_generic(tmp_path / "wide.csv")
    assert load_generic(tmp_path / "wide.csv", clip_success=True).skipped[
        "success values outside [0, 1] clipped (kept)"] == 1
