"""Batch scoring (`python -m aco_bert.score`) on real SWE-bench texts with the real tiny bundle.

What must hold: output rows = input rows for every input format, bad rows marked at their index and counted (or the
run stops there), and a run interrupted mid-file -- by an exception after chunk k, or by SIGKILL of the process --
resumes without redoing finished chunks and writes byte-for-byte the output of an uninterrupted run.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aco_bert.data.messages import messages_to_text
from aco_bert.score import ScoreConfig, ScoreError, load_router, main, score_dataset, score_texts
from aco_bert.score.sources import open_table

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 150
CHUNK = 32


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router(bundle):
    return load_router(bundle)


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    """Real issue texts, cut to their first 60 words so the tiny model scores them fast."""
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [" ".join(r["problem_statement"].split()[:60]) for r in rows[:N_ROWS]]


# Malformed rows planted at known indices -> the reason we expect in their `error` column.
BAD = {
    3: ({"prompt": ""}, "empty text"),
    17: ({"prompt": "   \n  "}, "empty text"),
    40: ({"prompt": None, "messages": "[{not json"}, "messages is not valid JSON"),
    41: ({"prompt": None, "messages": "[]"}, "empty list"),
    77: ({"step_type": "dance"}, "unknown step_type"),
    120: ({"prompt": None}, "no text|empty text"),  # csv cannot tell a null from an empty string
}


def _rows(texts: list[str]) -> list[dict]:
    steps = ["search", "read", "edit", "test", None]
    rows = []
    for i, t in enumerate(texts):
        r = {"id": f"t{i}", "prompt": t, "messages": None, "step_type": steps[i % len(steps)]}
        if i % 9 == 5:  # chat form: system + user, no bare prompt
            r["prompt"] = None
            r["messages"] = json.dumps([{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": t}])
        if i in BAD:
            r.update(BAD[i][0])
        rows.append(r)
    return rows


def _write(fmt: str, rows: list[dict], path: Path) -> Path:
    df = pd.DataFrame(rows)
    if fmt == "jsonl":
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    elif fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, row_group_size=50)  # row groups that do not line up with chunks
    elif fmt == "datasets":
        import datasets

        datasets.Dataset.from_pandas(df, preserve_index=False).save_to_disk(str(path))
    return path


def _cfg(bundle: str, inp: Path, out: Path, **kw) -> ScoreConfig:
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("progress", False)
    return ScoreConfig(bundle=bundle, input=str(inp), output=str(out), **kw)


def _quiet(_msg: str) -> None:
    pass


# --- unit: messages ------------------------------------------------------------------------------------------


def test_messages_to_text_forms_and_errors():
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Fix the crash"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "user", "content": [{"type": "text", "text": "in parse()"}, {"type": "image_url"}]}]
    assert messages_to_text(chat) == "Be terse.\n\nFix the crash\n\nin parse()"
    assert messages_to_text(json.dumps(chat)) == messages_to_text(chat)
    assert messages_to_text([{"role": "user", "content": "just this"}]) == "just this"  # same as a bare prompt
    for bad, why in [("{oops", "not valid JSON"), ([], "empty list"), ({"role": "user"}, "must be a list"),
                     ([{"content": "x"}], "no string role"), (["hi"], "not an object"),
                     ([{"role": "user", "content": 5}], "not text"), ([{"role": "user", "content": " "}], "no text")]:
        with pytest.raises(ValueError, match=why):
            messages_to_text(bad)


def test_messages_route_like_the_http_service(router):
    """One chat, one text: the scorer's messages column and the HTTP schemas (/v1/route, the OpenAI proxy) give
    the same text -- bare-string content parts included (OpenAI allows them; they are text) -- and so the same
    decision."""
    schemas = pytest.importorskip("aco_bert.serve.schemas")
    chat = [{"role": "system", "content": "Be terse."}, {"role": "tool", "content": None},
            {"role": "user", "content": [{"type": "text", "text": "a"}, "b", {"type": "image_url", "x": 1}, "c"]}]
    served = schemas.messages_text([schemas.ChatMessage.model_validate(m) for m in chat])
    assert messages_to_text(chat) == served == "Be terse.\n\na\nb\nc"
    proxied = schemas.ChatCompletionRequest.model_validate({"model": "aco-router", "messages": chat})
    assert schemas.messages_text(proxied.messages) == served
    assert schemas.RouteRequest.model_validate({"messages": chat}).text() == served
    a = score_texts(router, [served])
    b = _score_messages(router, [json.dumps(chat)])
    assert a["tier"].iloc[0] == b["tier"].iloc[0] and a["p_success"].iloc[0] == b["p_success"].iloc[0]
    # a text part without text is malformed in both (not silently routed on less)
    broken = [{"role": "user", "content": [{"type": "text"}, "x"]}]
    with pytest.raises(ValueError, match="part 0 has no text"):
        messages_to_text(broken)
    with pytest.raises(ValueError, match="part 0 has no text"):
        schemas.RouteRequest.model_validate({"messages": broken})


def _score_messages(router, messages: list[str]) -> pd.DataFrame:
    """Score chats through the file scorer's row path (the messages column, no text column)."""
    from aco_bert.score.chunk import score_chunk
    from aco_bert.score.rows import Columns
    from aco_bert.score.sources import Chunk

    n = len(messages)
    chunk = Chunk(0, 0, n, {"prompt": [None] * n, "messages": list(messages)})
    return score_chunk(router, chunk, Columns("prompt", "messages", None, None, None, None)).table.to_pandas()


def test_every_documented_flag_reaches_the_config(monkeypatch, tmp_path, capsys):
    """The CLI is generated from ScoreConfig: each flag of the old hand-written parser (dashes or underscores)
    sets its field; --fp32 / --no-progress are kept as spellings of --int8 false / --progress false."""
    import aco_bert.score.scorer as scorer

    seen: list[ScoreConfig] = []
    monkeypatch.setattr(scorer, "run", lambda cfg: seen.append(cfg) or 0)
    argv = ["--bundle", "b", "--input", "in.csv", "--output", "o.jsonl", "--text-column", "q",
            "--messages-column", "chat", "--step-type-column", "st", "--id-column", "key", "--domain-column", "dom",
            "--budget-column", "usd", "--split", "test", "--hf-config", "c", "--input-format", "csv",
            "--chunk-size", "64", "--batch-size", "8", "--workers", "2", "--threads", "1", "--on-error", "stop",
            "--evaluate", "--format", "jsonl", "--fp32", "--fresh", "--keep-parts", "--no-progress",
            "--plot", "p.png", "--report-json", "r.json"]
    assert main(argv) == 0
    want = ScoreConfig(bundle="b", input="in.csv", output="o.jsonl", text_column="q", messages_column="chat",
                       step_type_column="st", id_column="key", domain_column="dom", budget_column="usd",
                       split="test", hf_config="c", input_format="csv", chunk_size=64, batch_size=8, workers=2,
                       threads=1, on_error="stop", evaluate=True, format="jsonl", int8=False, fresh=True,
                       keep_parts=True, progress=False, plot="p.png", report_json="r.json")
    assert seen == [want]
    assert main(["--bundle", "b", "--input", "i", "--output", "o.parquet", "--int8", "--chunk_size", "7"]) == 0
    assert seen[-1].int8 is True and seen[-1].chunk_size == 7 and seen[-1].format == "parquet"
    for bad, why in [(["--on-error", "later"], "on_error"), (["--input-format", "xml"], "input_format"),
                     (["--workers", "1.5"], "workers"), (["--no-such-flag", "1"], "unrecognized arguments")]:
        assert main(["--bundle", "b", "--input", "i", "--output", "o.parquet", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert why in err[-1] and err[-1].startswith("python -m aco_bert.score:")
    assert len(seen) == 2


# --- row counts, formats, malformed rows -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "datasets"])
def test_rows_preserved_and_bad_rows_marked(fmt, bundle, router, texts, tmp_path):
    rows = _rows(texts)
    inp = _write(fmt, rows, tmp_path / f"in.{fmt}")
    s = score_dataset(_cfg(bundle, inp, tmp_path / "out.parquet"), router=router, log=_quiet)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert s.n_rows == len(out) == len(rows)
    assert out["row"].tolist() == list(range(len(rows)))
    assert out["id"].tolist() == [r["id"] for r in rows]
    assert s.n_chunks == -(-len(rows) // CHUNK)
    # every planted bad row is marked at its index with its reason, and nothing else is
    bad = out.index[out["error"].notna()].tolist()
    assert bad == sorted(BAD)
    assert s.n_errors == len(BAD) and [r for r, _ in s.errors] == sorted(BAD)
    for i, (_patch, why) in BAD.items():
        assert re.search(why, out.loc[i, "error"]), (i, out.loc[i, "error"])
        assert pd.isna(out.loc[i, "tier"]) and pd.isna(out.loc[i, "p_success"])
    good = out[out["error"].isna()]
    models = router.spec.models
    assert good["tier"].between(1, len(models)).all()
    assert (good["model"] == [models[int(t) - 1] for t in good["tier"]]).all()
    probs = good[[f"p:{m}" for m in models]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert np.allclose(probs[np.arange(len(good)), good["tier"].to_numpy(int) - 1], good["p_success"])
    assert (good[[f"cost:{m}" for m in models]].to_numpy() >= 0).all()
    assert (good["tier"] >= good["min_tier"]).all()


def test_decisions_match_the_runtime_and_every_format_agrees(bundle, router, texts, tmp_path):
    rows = _rows(texts)
    outs = {}
    for fmt in ("jsonl", "csv", "parquet", "datasets"):
        inp = _write(fmt, rows, tmp_path / f"in.{fmt}")
        score_dataset(_cfg(bundle, inp, tmp_path / f"out_{fmt}.parquet"), router=router, log=_quiet)
        outs[fmt] = pd.read_parquet(tmp_path / f"out_{fmt}.parquet")
    for fmt in ("csv", "parquet", "datasets"):  # error texts may differ (csv has no null), not where they are
        pd.testing.assert_frame_equal(outs["jsonl"].drop(columns="error"), outs[fmt].drop(columns="error"))
        assert (outs["jsonl"]["error"].isna() == outs[fmt]["error"].isna()).all()
    # each good row got what Router.route gives that prompt alone (chat rows: system + user text)
    out = outs["jsonl"]
    for i in [0, 1, 2, 5, 14, 99, 149]:
        r = rows[i]
        text = r["prompt"] if r["prompt"] else messages_to_text(r["messages"])
        d = router.route(text, step_type=r["step_type"])
        assert out.loc[i, "tier"] == d.tier and out.loc[i, "model"] == d.model
        assert np.allclose(out.loc[i, [f"p:{m}" for m in router.spec.models]].to_numpy(float), d.probs, atol=1e-5)


def test_jsonl_unparseable_and_blank_lines(bundle, router, texts, tmp_path):
    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as f:
        f.write(json.dumps({"prompt": texts[0]}) + "\n")
        f.write("{this is not json\n")
        f.write("\n   \n")  # blank lines are not records
        f.write("[1, 2]\n")
        f.write(json.dumps({"prompt": texts[1]}) + "\n")
    out_path = tmp_path / "out.jsonl"
    s = score_dataset(_cfg(bundle, inp, out_path), router=router, log=_quiet)
    out = [json.loads(line) for line in open(out_path)]
    assert [r["row"] for r in out] == [0, 1, 2, 3] and s.n_rows == 4 and s.blank_lines == 2
    assert "unparseable JSON" in out[1]["error"] and "line 2" in out[1]["error"]
    assert "not an object" in out[2]["error"]
    assert out[0]["error"] is None and out[3]["error"] is None and out[3]["tier"] >= 1
    assert "2 blank line(s)" in s.text() and "bad row 1" in s.text()


def test_on_error_stop_names_the_row(bundle, router, texts, tmp_path, capsys):
    inp = _write("jsonl", _rows(texts), tmp_path / "in.jsonl")
    with pytest.raises(ScoreError, match="bad row 3: empty text") as e:
        score_dataset(_cfg(bundle, inp, tmp_path / "out.parquet", on_error="stop"), router=router, log=_quiet)
    assert e.value.row == 3
    assert not (tmp_path / "out.parquet").exists()
    rc = main(["--bundle", bundle, "--input", str(inp), "--output", str(tmp_path / "o2.parquet"),
               "--on-error", "stop", "--no-progress", "--chunk-size", "64"])
    assert rc == 1 and "bad row 3" in capsys.readouterr().err
    # a chunk saved (marked) by an interrupted --on-error mark run still stops a resumed --on-error stop run
    out = tmp_path / "o3.parquet"
    with pytest.raises(_Crash):
        score_dataset(_cfg(bundle, inp, out), router=router, log=_quiet,
                      on_chunk=lambda r: (_ for _ in ()).throw(_Crash()))
    with pytest.raises(ScoreError, match="bad row 3") as e:
        score_dataset(_cfg(bundle, inp, out, on_error="stop"), router=router, log=_quiet)
    assert e.value.row == 3


def test_whole_input_errors_are_clear(bundle, tmp_path, capsys):
    csv = tmp_path / "x.csv"
    pd.DataFrame({"question": ["a", "b"]}).to_csv(csv, index=False)
    assert main(["--bundle", bundle, "--input", str(csv), "--output", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no text column 'prompt'" in err and "question" in err
    assert main(["--bundle", bundle, "--input", str(tmp_path / "missing.jsonl"), "--output", "o.parquet"]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- resume ------------------------------------------------------------------------------------------------------


class _Crash(Exception):
    pass


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_resume_after_failure_is_byte_identical(fmt, bundle, router, texts, tmp_path):
    inp = _write("jsonl", _rows(texts), tmp_path / "in.jsonl")
    full = tmp_path / f"full.{fmt}"
    score_dataset(_cfg(bundle, inp, full), router=router, log=_quiet)

    out = tmp_path / f"resumed.{fmt}"
    seen: list[int] = []

    def crash_after_two(res):
        seen.append(res.index)
        if len(seen) == 2:
            raise _Crash

    with pytest.raises(_Crash):
        score_dataset(_cfg(bundle, inp, out), router=router, on_chunk=crash_after_two, log=_quiet)
    assert not out.exists()
    prog = json.loads((tmp_path / f"resumed.{fmt}.parts" / "progress.json").read_text())
    assert sorted(prog["done"]) == ["0", "1"]

    redone: list[int] = []
    logs: list[str] = []
    s = score_dataset(_cfg(bundle, inp, out), router=router, on_chunk=lambda r: redone.append(r.index),
                      log=logs.append)
    assert redone == [2, 3, 4] and s.chunks_resumed == 2  # finished chunks are not redone
    assert any("resuming: 2 chunk(s)" in m for m in logs)
    assert filecmp.cmp(full, out, shallow=False)
    assert s.n_rows == N_ROWS and s.n_errors == len(BAD)  # errors of resumed chunks are still counted
    assert not (tmp_path / f"resumed.{fmt}.parts").exists()


def test_changed_input_does_not_reuse_old_parts(bundle, router, texts, tmp_path):
    rows = _rows(texts)
    inp = _write("jsonl", rows, tmp_path / "in.jsonl")
    out = tmp_path / "out.parquet"
    with pytest.raises(_Crash):
        score_dataset(_cfg(bundle, inp, out), router=router, log=_quiet,
                      on_chunk=lambda r: (_ for _ in ()).throw(_Crash()))
    rows[0]["prompt"] = "A completely different first prompt about a segfault in the C extension."
    _write("jsonl", rows, inp)
    logs: list[str] = []
    s = score_dataset(_cfg(bundle, inp, out), router=router, log=logs.append)
    assert s.chunks_resumed == 0 and any("different input" in m for m in logs)
    fresh = tmp_path / "fresh.parquet"
    score_dataset(_cfg(bundle, inp, fresh), router=router, log=_quiet)
    assert filecmp.cmp(out, fresh, shallow=False)


def test_resume_after_sigkill_of_the_cli(bundle, router, texts, tmp_path):
    """The real thing: `python -m aco_bert.score` killed with SIGKILL mid-file, then rerun (with --workers 2)."""
    rows = _rows(texts) * 4  # 600 rows, 19 chunks of 32
    inp = _write("jsonl", rows, tmp_path / "in.jsonl")
    full = tmp_path / "full.parquet"
    score_dataset(_cfg(bundle, inp, full), router=router, log=_quiet)

    out = tmp_path / "killed.parquet"
    cmd = [sys.executable, "-m", "aco_bert.score", "--bundle", bundle, "--input", str(inp), "--output", str(out),
           "--chunk-size", str(CHUNK), "--no-progress"]
    progress = tmp_path / "killed.parquet.parts" / "progress.json"
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done: dict = {}
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            done = json.loads(progress.read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = {}
        if len(done) >= 3:
            os.kill(p.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    n_done = len(json.loads(progress.read_text())["done"])
    assert 3 <= n_done < 19

    # resume with 2 worker processes: results must not depend on how many processes score the chunks
    r = subprocess.run(cmd + ["--workers", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming: {n_done} chunk(s)" in r.stderr
    assert f"({n_done} resumed)" in r.stdout and f"scored {len(rows)} rows" in r.stdout
    assert filecmp.cmp(full, out, shallow=False)


# --- evaluate ---------------------------------------------------------------------------------------------


def test_evaluate_on_a_canonical_outcome_table(bundle, router, swebench, tmp_path, capsys):
    models = router.spec.models
    df = swebench.df
    pids = df["prompt_id"].drop_duplicates().tolist()[:60]
    df = df[df["prompt_id"].isin(pids) & df["model"].isin(models)].reset_index(drop=True)
    df["prompt"] = df["prompt"].str.split().str[:60].str.join(" ")
    inp = tmp_path / "outcomes.parquet"
    df.to_parquet(inp)
    out = tmp_path / "scored.parquet"
    rc = main(["--bundle", bundle, "--input", str(inp), "--output", str(out), "--evaluate", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    scored = pd.read_parquet(out)
    assert len(df) == 60 * len(models) and len(scored) == 60  # each unique prompt scored once
    assert sorted(scored["prompt_id"]) == sorted(pids) and scored["error"].isna().all()
    for name in ("always-frontier", "zero-router", "oracle", "router ("):
        assert name in printed
    plot = tmp_path / "scored.cost_quality.png"
    assert plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"
    rep = json.loads((tmp_path / "scored.eval.json").read_text())
    router_row = next(p for p in rep["policies"] if p["name"].startswith("router ("))
    assert router_row["n"] == 60 and sum(router_row["chosen"].values()) == 60
    # the replayed router success is what its chosen tiers actually achieved on these prompts
    succ = df.pivot(index="prompt_id", columns="model", values="success")
    chosen = scored.set_index("prompt_id")["model"]
    assert router_row["success"] == pytest.approx(np.mean([succ.loc[p, chosen[p]] for p in pids]))


def test_open_table_counts_and_fingerprints(texts, tmp_path):
    rows = _rows(texts)
    a = open_table(_write("parquet", rows, tmp_path / "a.parquet"))
    assert a.n_rows == len(rows) and "prompt" in a.columns
    b = open_table(_write("jsonl", rows, tmp_path / "b.jsonl"))
    assert b.n_rows is None and b.n_rows_estimate == len(rows) and b.first_keys == list(rows[0])
    fp = b.fingerprint
    rows[7]["prompt"] += "!"
    assert open_table(_write("jsonl", rows, tmp_path / "b.jsonl")).fingerprint != fp
    sizes = [ch.n for ch in open_table(tmp_path / "a.parquet").iter_chunks(64, ["prompt"])]
    assert sizes == [64, 64, len(rows) - 128]  # exact chunks across parquet row groups of 50


def test_hub_style_input_and_in_memory_scoring(bundle, router, texts, tmp_path):
    """``hf:<name>`` goes through datasets.load_dataset(streaming=True); a local folder stands in for the Hub."""
    rows = _rows(texts)
    (tmp_path / "hub").mkdir()
    _write("parquet", rows, tmp_path / "hub" / "train.parquet")
    out = tmp_path / "out.parquet"
    s = score_dataset(_cfg(bundle, f"hf:{tmp_path / 'hub'}", out), router=router, log=_quiet)
    got = pd.read_parquet(out)
    assert s.n_rows == len(got) == len(rows) and got["error"].notna().sum() == len(BAD)
    mem = score_texts(router, [r["prompt"] for r in rows], step_types=[r["step_type"] for r in rows],
                      ids=[r["id"] for r in rows])
    assert len(mem) == len(rows) and mem["row"].tolist() == list(range(len(rows)))
    plain = [i for i, r in enumerate(rows) if r["prompt"] and r["prompt"].strip() and i not in BAD]
    assert mem.loc[plain, "tier"].tolist() == got.loc[plain, "tier"].tolist()
    assert mem.loc[[i for i in BAD if i not in (40, 41, 77)], "error"].notna().all()
