"""`python -m aco_bert.score --engine ray` on a local Ray instance (2 CPUs) with the real tiny bundle.

What must hold: on real SWE-bench texts the Ray engine writes exactly the local scorer's output (same rows, columns,
values, bad-row marks -- the output files are byte-identical), for jsonl and parquet inputs; an interrupted Ray run
resumes without re-scoring finished chunks and still writes the same bytes; bad settings are refused up front.
"""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from aco_bert.score import ScoreConfig, load_router, main, score_dataset

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

N_ROWS = 90
CHUNK = 16  # 6 chunks: 3 Ray blocks of 2 chunks on 2 actors
# planted bad rows -> the reason expected in `error` (index 50 is an unparseable line in the jsonl input)
BAD = {4: ({"prompt": ""}, "empty text"), 21: ({"prompt": None, "messages": "[{no"}, "not valid JSON"),
       33: ({"step_type": "dance"}, "unknown step_type"), 50: (None, "unparseable JSON|no text")}


class _Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (the engine uses it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def router(bundle):
    return load_router(bundle)


@pytest.fixture(scope="module")
def rows(data_dir) -> list[dict]:
    """Real issue texts (first 60 words), every 7th in chat form, with the :data:`BAD` rows planted."""
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        tasks = [json.loads(line) for line in f if line.strip()][:N_ROWS]
    steps = ["search", "read", "edit", "test", None]
    out = []
    for i, t in enumerate(tasks):
        text = " ".join(t["problem_statement"].split()[:60])
        r = {"id": t["instance_id"], "prompt": text, "messages": None, "step_type": steps[i % 5]}
        if i % 7 == 3:
            r["prompt"], r["messages"] = None, json.dumps([{"role": "user", "content": text}])
        if i in BAD and BAD[i][0] is not None:
            r.update(BAD[i][0])
        out.append(r)
    out[50]["prompt"] = None  # parquet form of row 50: no text at all
    return out


def _write(fmt: str, rows: list[dict], path: Path, first: int = 0) -> Path:
    """``rows`` (input rows ``first...``) as jsonl (input row 50 an unparseable line) or parquet."""
    if fmt == "jsonl":
        with open(path, "w") as f:
            for i, r in enumerate(rows, first):
                f.write("{broken json\n" if i == 50 else json.dumps(r) + "\n")
                if i == 10:
                    f.write("\n")  # a blank line is not a record
    else:
        pd.DataFrame(rows).to_parquet(path, row_group_size=25)  # row groups that do not line up with chunks
    return path


def _cfg(bundle: str, inp: Path, out: Path, **kw) -> ScoreConfig:
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("progress", False)
    if kw.get("engine") == "ray":
        kw.setdefault("ray_actors", 2)
        kw.setdefault("ray_block_chunks", 2)
    return ScoreConfig(bundle=bundle, input=str(inp), output=str(out), **kw)


def _quiet(_msg: str) -> None:
    pass


def _assert_same_table(a_path: Path, b_path: Path) -> None:
    a, b = pq.read_table(a_path), pq.read_table(b_path)
    assert a.schema.equals(b.schema, check_metadata=True)
    assert a.num_rows == b.num_rows
    for name in a.column_names:  # exact, column by column (floats compared bit for bit via equality of arrays)
        assert a.column(name).equals(b.column(name)), name


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ray_engine_writes_the_local_scorers_bytes(fmt, ray_local, bundle, router, rows, tmp_path):
    inp = _write(fmt, rows, tmp_path / f"in.{fmt}")
    loc = score_dataset(_cfg(bundle, inp, tmp_path / "local.parquet"), router=router, log=_quiet)
    logs: list[str] = []
    got = score_dataset(_cfg(bundle, inp, tmp_path / "ray.parquet", engine="ray"), log=logs.append)
    assert any("3 block(s) on 2 actor(s)" in m for m in logs), logs
    _assert_same_table(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    assert filecmp.cmp(tmp_path / "local.parquet", tmp_path / "ray.parquet", shallow=False)
    out = pd.read_parquet(tmp_path / "ray.parquet")
    assert got.n_rows == loc.n_rows == len(out) == N_ROWS and out["row"].tolist() == list(range(N_ROWS))
    want_ids = [None if fmt == "jsonl" and i == 50 else r["id"] for i, r in enumerate(rows)]  # 50: unparseable
    assert pq.read_table(tmp_path / "ray.parquet").column("id").to_pylist() == want_ids
    assert sorted(out.index[out["error"].notna()]) == sorted(BAD) and got.errors == loc.errors
    for i, (_patch, why) in BAD.items():
        assert pd.Series([out.loc[i, "error"]]).str.contains(why).all(), (i, out.loc[i, "error"])
    assert out.loc[out["error"].isna(), "tier"].notna().all()
    assert (got.n_errors, got.n_chunks, got.blank_lines) == (loc.n_errors, loc.n_chunks, loc.blank_lines)


def test_ray_jsonl_output_matches_local(ray_local, bundle, router, rows, tmp_path):
    inp = _write("parquet", rows, tmp_path / "in.parquet")
    score_dataset(_cfg(bundle, inp, tmp_path / "local.jsonl"), router=router, log=_quiet)
    score_dataset(_cfg(bundle, inp, tmp_path / "ray.jsonl", engine="ray", ray_actors=1, ray_block_chunks=6),
                  log=_quiet)
    assert filecmp.cmp(tmp_path / "local.jsonl", tmp_path / "ray.jsonl", shallow=False)


def test_ray_resume_skips_finished_chunks(ray_local, bundle, router, rows, tmp_path):
    """A Ray run interrupted after 2 saved chunks resumes with the other 4 only; a local run's parts resume on
    Ray too (the engine is not part of the run's identity: both write the same parts)."""
    inp = _write("jsonl", rows, tmp_path / "in.jsonl")
    score_dataset(_cfg(bundle, inp, tmp_path / "local.parquet"), router=router, log=_quiet)
    out = tmp_path / "ray.parquet"
    saved: list[int] = []

    def crash_after_two(res) -> None:
        saved.append(res.index)
        if len(saved) == 2:
            raise _Crash()

    with pytest.raises(_Crash):
        score_dataset(_cfg(bundle, inp, out, engine="ray"), on_chunk=crash_after_two, log=_quiet)
    assert not out.exists() and len(saved) == 2
    redone: list[int] = []
    s = score_dataset(_cfg(bundle, inp, out, engine="ray"), on_chunk=lambda r: redone.append(r.index),
                      log=_quiet)
    assert sorted(redone) == sorted(set(range(6)) - set(saved)) and s.chunks_resumed == 2
    assert filecmp.cmp(tmp_path / "local.parquet", out, shallow=False)

    # local run interrupted after chunk 0 -> the Ray run scores chunks 1..5 only
    out2, redone2 = tmp_path / "mixed.parquet", []
    with pytest.raises(_Crash):
        score_dataset(_cfg(bundle, inp, out2), router=router, on_chunk=lambda r: (_ for _ in ()).throw(_Crash()),
                      log=_quiet)
    s2 = score_dataset(_cfg(bundle, inp, out2, engine="ray", ray_block_chunks=5),
                       on_chunk=lambda r: redone2.append(r.index), log=_quiet)
    assert sorted(redone2) == [1, 2, 3, 4, 5] and s2.chunks_resumed == 1
    assert filecmp.cmp(tmp_path / "local.parquet", out2, shallow=False)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_block_reader_seeks_to_the_streaming_readers_chunks(fmt, rows, tmp_path):
    """A worker's chunks, read by seeking (jsonl byte offsets, parquet row groups), equal the local reader's --
    values, bad-row marks and line numbers -- across the files of a folder input (no Ray needed)."""
    from aco_bert.score.engines.reading import BlockReader, jsonl_seeks
    from aco_bert.score.sources import open_table

    folder = tmp_path / "in"
    folder.mkdir()
    _write(fmt, rows[:37], folder / f"a.{fmt}")
    _write(fmt, rows[37:], folder / f"b.{fmt}", first=37)  # b's record 13 (line 14) = input row 50
    src = open_table(folder)
    wanted = ["prompt", "messages", "step_type", "id"]
    local = {ch.index: ch for ch in src.iter_chunks(CHUNK, wanted)}
    want = {k: (local[k].start, local[k].n) for k in (1, 2, 3, 5)}  # 2 spans both files, 5 is short
    seeks = jsonl_seeks(src, CHUNK, set(want)) if fmt == "jsonl" else None
    got = list(BlockReader(src, CHUNK, wanted).chunks(want, seeks))
    assert [c.index for c in got] == [1, 2, 3, 5]
    for c in got:
        assert (c.start, c.n, c.columns, c.bad) == (local[c.index].start, local[c.index].n, local[c.index].columns,
                                                   local[c.index].bad)
    if fmt == "jsonl":
        assert "b.jsonl line 14" in got[2].bad[50 - 3 * CHUNK]  # the blank line of a.jsonl is not in b's count


def test_ray_settings_are_checked(monkeypatch, tmp_path, capsys):
    base = {"bundle": "b", "input": "i.jsonl", "output": "o.parquet"}
    for kw, why in [({"engine": "spark"}, "engine must be one of"),
                    ({"engine": "ray", "evaluate": True}, "use --engine local for --evaluate"),
                    ({"engine": "ray", "workers": 2}, "--ray-actors"),
                    ({"ray_address": "auto"}, "only with --engine ray"),
                    ({"engine": "ray", "ray_actors": 0}, "ray_actors must be an integer >= 1"),
                    ({"engine": "ray", "ray_block_chunks": 0}, "ray_block_chunks")]:
        with pytest.raises(ValueError, match=why):
            ScoreConfig(**base, **kw)
    import aco_bert.score.scorer as scorer

    seen: list[ScoreConfig] = []
    monkeypatch.setattr(scorer, "run", lambda cfg: seen.append(cfg) or 0)
    assert main(["--bundle", "b", "--input", "i", "--output", "o.parquet", "--engine", "ray", "--ray-address",
                 "ray://head:10001", "--ray-actors", "8", "--ray-block-chunks", "3"]) == 0
    assert (seen[0].engine, seen[0].ray_address, seen[0].ray_actors, seen[0].ray_block_chunks) == \
        ("ray", "ray://head:10001", 8, 3)
    assert main(["--bundle", "b", "--input", "i", "--output", "o.parquet", "--engine", "ray", "--evaluate"]) == 2
    assert "--evaluate" in capsys.readouterr().err


def test_missing_ray_names_the_extra(monkeypatch):
    from aco_bert.score.engines import EngineUnavailable
    from aco_bert.score.engines.ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when the extra is not installed
    with pytest.raises(EngineUnavailable, match=r"aco-bert\[ray\]"):
        import_ray()
