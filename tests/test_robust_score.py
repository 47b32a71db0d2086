"""Issue 14 for `score`: a damaged part is re-scored on resume (never trusted by existence), the output always has
the input's row count, and bad text (lone surrogates, invalid UTF-8, invisible-only prompts) is a marked row.

Real runs of the real tiny bundle on real SWE-bench issue texts; each damage is done to real part files between
an interrupted run and its resume, and the resumed output must equal a fresh run's byte for byte.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pandas as pd
import pytest

from aco_bert.score import ScoreConfig, load_router, main, score_dataset
from aco_bert.score.parts import PartsError, assemble

N_ROWS = 100
CHUNK = 25  # 4 chunks


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def router(bundle):
    return load_router(bundle)


@pytest.fixture(scope="module")
def inp(data_dir, tmp_path_factory) -> Path:
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()][:N_ROWS]
    p = tmp_path_factory.mktemp("robust_score") / "in.jsonl"
    with open(p, "w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"t{i}", "prompt": " ".join(r["problem_statement"].split()[:40])}) + "\n")
    return p


def _cfg(bundle: str, inp: Path, out: Path, **kw) -> ScoreConfig:
    return ScoreConfig(bundle=bundle, input=str(inp), output=str(out), chunk_size=CHUNK, progress=False, **kw)


@pytest.fixture(scope="module")
def fresh(bundle, router, inp, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fresh")
    out = {}
    for fmt in ("jsonl", "parquet"):
        out[fmt] = d / f"fresh.{fmt}"
        score_dataset(_cfg(bundle, inp, out[fmt]), router=router, log=lambda _m: None)
    return out


def _partial(bundle, router, inp, out: Path, n_chunks: int = 3) -> Path:
    """Interrupt a run after ``n_chunks`` saved parts; returns the parts folder."""
    seen = []

    def stop(res):
        seen.append(res.index)
        if len(seen) == n_chunks:
            raise _Stop

    with pytest.raises(_Stop):
        score_dataset(_cfg(bundle, inp, out), router=router, on_chunk=stop, log=lambda _m: None)
    parts = out.with_name(out.name + ".parts")
    assert sorted(json.loads((parts / "progress.json").read_text())["done"]) == ["0", "1", "2"][:n_chunks]
    return parts


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _edit_value(p: Path) -> None:
    lines = p.read_text().splitlines(keepends=True)
    rec = json.loads(lines[3])
    rec["tier"] = (rec["tier"] or 0) + 1
    lines[3] = json.dumps(rec, separators=(",", ":")) + "\n"
    p.write_text("".join(lines))


def _swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


DAMAGE = {
    "truncated": lambda parts, ext: _truncate(parts / f"part-000001.{ext}"),
    "emptied": lambda parts, ext: (parts / f"part-000000.{ext}").write_bytes(b""),
    "swapped": lambda parts, ext: _swap(parts / f"part-000000.{ext}", parts / f"part-000002.{ext}"),
    "garbage": lambda parts, ext: (parts / f"part-000002.{ext}").write_bytes(b"\x00\xffnot a part\n" * 50),
    "deleted": lambda parts, ext: (parts / f"part-000001.{ext}").unlink(),
}


@pytest.mark.parametrize("damage,fmt", [(d, f) for d in sorted(DAMAGE) for f in ("jsonl", "parquet")]
                         + [("edited", "jsonl")])  # a value edit is a text edit; parquet: truncated/garbage/swap
def test_damaged_part_is_rescored_on_resume(damage, fmt, bundle, router, inp, fresh, tmp_path):
    out = tmp_path / f"out.{fmt}"
    parts = _partial(bundle, router, inp, out)
    if damage == "edited":
        _edit_value(parts / "part-000001.jsonl")
    else:
        DAMAGE[damage](parts, fmt)
    logs: list[str] = []
    redone: list[int] = []
    s = score_dataset(_cfg(bundle, inp, out), router=router, log=logs.append,
                      on_chunk=lambda r: redone.append(r.index))
    bad = {"truncated": [1], "emptied": [0], "swapped": [0, 2], "garbage": [2], "deleted": [1], "edited": [1]}[damage]
    assert sorted(redone) == sorted(bad + [3])  # the damaged part(s) and the never-scored chunk, nothing else
    for k in bad:
        assert any(f"part part-{k:06d}.{fmt} (chunk {k})" in m and "re-scoring" in m for m in logs), logs
    assert s.n_rows == N_ROWS and s.chunks_resumed == 3 - len(bad)
    assert filecmp.cmp(out, fresh[fmt], shallow=False)  # complete and correct: a fresh run's bytes


def test_truncated_parquet_part_does_not_block_every_rerun(bundle, router, inp, fresh, tmp_path):
    out = tmp_path / "out.parquet"
    parts = _partial(bundle, router, inp, out, n_chunks=2)
    _truncate(parts / "part-000000.parquet")
    for _ in range(2):  # the first rerun repairs it; the second starts from a clean slate and still succeeds
        s = score_dataset(_cfg(bundle, inp, out, keep_parts=True), router=router, log=lambda _m: None)
        assert s.n_rows == N_ROWS
        assert filecmp.cmp(out, fresh["parquet"], shallow=False)


def test_progress_records_checksum_and_row_range(bundle, router, inp, tmp_path):
    out = tmp_path / "out.jsonl"
    parts = _partial(bundle, router, inp, out, n_chunks=2)
    done = json.loads((parts / "progress.json").read_text())["done"]
    import hashlib

    for k, e in done.items():
        data = (parts / e["file"]).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data)
        assert (e["start"], e["end"], e["rows"]) == (int(k) * CHUNK, (int(k) + 1) * CHUNK, CHUNK)
        assert data.count(b"\n") == e["rows"]


def test_edited_progress_entry_is_not_trusted(bundle, router, inp, fresh, tmp_path):
    """A progress.json entry pointing chunk 1 at chunk 0's part (rows would repeat) is refused and re-scored."""
    out = tmp_path / "out.jsonl"
    parts = _partial(bundle, router, inp, out, n_chunks=2)
    prog = json.loads((parts / "progress.json").read_text())
    prog["done"]["1"] = dict(prog["done"]["0"])
    (parts / "progress.json").write_text(json.dumps(prog))
    logs: list[str] = []
    score_dataset(_cfg(bundle, inp, out), router=router, log=logs.append)
    assert any("(chunk 1)" in m and "re-scoring" in m for m in logs)
    assert filecmp.cmp(out, fresh["jsonl"], shallow=False)


def test_assemble_refuses_a_part_changed_during_the_run_and_a_short_total(bundle, router, inp, tmp_path):
    out = tmp_path / "out.jsonl"
    parts = _partial(bundle, router, inp, out, n_chunks=2)
    entries = [e for _, e in sorted(json.loads((parts / "progress.json").read_text())["done"].items())]
    from aco_bert.score.rows import output_schema

    schema = output_schema([t.model for t in router.spec.tiers], "id")
    with pytest.raises(PartsError, match="2 chunk|50 rows but the input has 100"):
        assemble(parts, entries, out, "jsonl", schema, n_rows=100)
    _truncate(parts / entries[1]["file"])
    with pytest.raises(PartsError, match="part-000001.jsonl changed"):
        assemble(parts, entries, out, "jsonl", schema, n_rows=50)
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()


def test_old_progress_format_starts_afresh(bundle, router, inp, fresh, tmp_path):
    out = tmp_path / "out.jsonl"
    parts = _partial(bundle, router, inp, out, n_chunks=2)
    prog = json.loads((parts / "progress.json").read_text())
    prog["version"] = 1
    (parts / "progress.json").write_text(json.dumps(prog))
    logs: list[str] = []
    s = score_dataset(_cfg(bundle, inp, out), router=router, log=logs.append)
    assert s.chunks_resumed == 0 and any("format version 1" in m for m in logs)
    assert filecmp.cmp(out, fresh["jsonl"], shallow=False)


# --- bad text in the scorer ------------------------------------------------------------------------------------


def test_bad_text_rows_are_marked_not_fatal(bundle, router, inp, tmp_path):
    good = [json.loads(x) for x in inp.read_text().splitlines()[:6]]
    bad = {1: "\ud800 lone surrogate", 2: "\u200b\ufeff\u2060", 3: "\x00\x00 \t", 4: "\ufeff"}
    path = tmp_path / "bad.jsonl"
    with open(path, "w") as f:  # json.dumps escapes the surrogate as \ud800: valid JSON, invalid Unicode
        for i, r in enumerate(good):
            f.write(json.dumps({"id": "\udfff" if i == 5 else r["id"], "prompt": bad.get(i, r["prompt"])}) + "\n")
    out = tmp_path / "out.jsonl"
    s = score_dataset(_cfg(bundle, path, out), router=router, log=lambda _m: None)
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and s.n_errors == 5
    assert "surrogate" in rows[1]["error"] and rows[1]["tier"] is None
    for i in (2, 3, 4):
        assert "empty text" in rows[i]["error"], rows[i]
    assert "surrogate" in rows[5]["error"] and rows[5]["id"] == "\\udfff"  # an id is reported, escaped
    assert rows[0]["error"] is None and rows[0]["tier"] is not None
    # the same rows through parquet output too (arrow refuses lone surrogates outright)
    s2 = score_dataset(_cfg(bundle, path, tmp_path / "out.parquet"), router=router, log=lambda _m: None)
    assert s2.n_errors == 5


def test_csv_with_invalid_utf8_is_refused_naming_file_and_row(bundle, inp, tmp_path, capsys):
    good = [json.loads(x)["prompt"] for x in inp.read_text().splitlines()[:4]]
    path = tmp_path / "bad.csv"
    pd.DataFrame({"prompt": good}).to_csv(path, index=False)
    raw = path.read_bytes().splitlines(keepends=True)
    raw[3] = b"caf\xe9 " + raw[3]  # latin-1 byte in data row 2
    path.write_bytes(b"".join(raw))
    rc = main(["--bundle", bundle, "--input", str(path), "--output", str(tmp_path / "o.jsonl"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.csv" in err and "row 2" in err and "UTF-8" in err, err
    assert "\ufffd" not in err and not (tmp_path / "o.jsonl").exists()
