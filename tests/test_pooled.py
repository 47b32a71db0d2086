"""Multi-dataset training data: the ``pooled`` table (union of prompts and models, NaN where a model did not run,
prefixed names, ``source_table``), its errors, one member taken back out, and the nested report's view of a pooled
run on one member (prompts, folds, heads) -- on small real slices of SWE-bench Verified and DC-router."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aco_bert.data import DataError, OutcomeTable, load_outcomes
from aco_bert.data.pooled import (align_member_folds, member_spec, member_table, pool_tables, prefixed_spec,
                                  resolve_member)
from aco_bert.data.splits import subsample
from aco_bert.spec import RouterSpec

TABLES = [{"dataset": "swebench-verified", "prefix": "swe", "max_prompts": 40},
          {"dataset": "dcrouter", "max_prompts": 30, "options": {"split": "train"}}]


@pytest.fixture(scope="module")
def pool(data_dir):
    return load_outcomes("pooled", data_dir=data_dir, tables=TABLES)


@pytest.fixture(scope="module")
def parts(data_dir):
    """The members on their own: the very prompts ``train --max_prompts N`` takes from each table alone."""
    out = {}
    for name, prefix, n, kw in (("swebench-verified", "swe", 40, {}), ("dcrouter", "dcrouter", 30, {"split": "train"})):
        t = load_outcomes(name, data_dir=data_dir, **kw)
        ids = t.matrix().prompt_ids
        out[prefix] = (t, [ids[i] for i in subsample(len(ids), n, 0)])
    return out


def test_pooled_table_is_the_union_with_nan_where_a_model_did_not_run(pool, parts):
    m = pool.matrix()
    sw, sw_ids = parts["swe"]
    dc, dc_ids = parts["dcrouter"]
    assert m.n_prompts == 70 and len(m.models) == len(sw.models) + len(dc.models) == 33
    assert m.prompt_ids == [f"swe/{p}" for p in sw_ids] + [f"dcrouter/{p}" for p in dc_ids]
    assert {x.split("/", 1)[0] for x in m.models} == {"swe", "dcrouter"}
    is_sw = np.array([x.startswith("swe/") for x in m.models])
    assert np.isnan(m.success[:40][:, ~is_sw]).all() and np.isnan(m.success[40:][:, is_sw]).all()
    # every outcome of a member is there, unchanged, under the prefixed names
    rm = sw.matrix().subset([sw.matrix().prompt_ids.index(p) for p in sw_ids])
    for j, model in enumerate(rm.models):
        assert np.array_equal(m.success[:40, m.models.index(f"swe/{model}")], rm.success[:, j], equal_nan=True)
        assert np.array_equal(m.cost[:40, m.models.index(f"swe/{model}")], rm.cost[:, j], equal_nan=True)
    assert m.meta["source_table"].tolist() == ["swe"] * 40 + ["dcrouter"] * 30
    # members' prompt meta keep their prompts: SWE-bench's difficulty, DC-router's split
    assert m.meta["difficulty"].tolist()[:40] == rm.meta["difficulty"].tolist() and m.meta["difficulty"][40:].isna().all()
    assert set(m.meta["split"][40:]) == {"train"} and m.meta["split"][:40].isna().all()
    assert pool.extras["pool"]["members"]["dcrouter"] == {"name": dc.name, "dataset": "dcrouter", "max_prompts": 30,
                                                          "options": {"split": "train"}, "seed": 0}
    assert all(k.startswith(("swe: ", "dcrouter: ")) for k in pool.skipped)


def test_one_member_back_out_of_the_pool(pool, parts, data_dir):
    dc, dc_ids = parts["dcrouter"]
    back = member_table(pool, "dcrouter")
    want = dc.df[dc.df["prompt_id"].isin(dc_ids)].reset_index(drop=True)
    assert back.name == dc.name and back.df.equals(want)
    assert back.skipped == dc.skipped and "source_table" not in back.extras["prompt_meta"]
    assert back.extras["cost_estimate"] == dc.extras["cost_estimate"]
    assert resolve_member(pool, "swebench-verified") == resolve_member(pool, "swe") == "swe"
    with pytest.raises(ValueError, match="not a member of the pool"):
        resolve_member(pool, "mmlu-pro")
    # shared prompt ids (swebench-pooled): ids unprefixed, the bash-only member is the swebench-verified table
    sp = load_outcomes("swebench-pooled", data_dir=data_dir)
    sw = load_outcomes("swebench-verified", data_dir=data_dir)
    assert resolve_member(sp, "swebench-verified") == "bash-only"
    assert member_table(sp, "bash-only").df.equals(sw.df)
    assert set(sp.matrix().meta["source_table"]) == {"bash-only+openhands-index"}


def test_malformed_pools_fail_clearly(data_dir):
    for bad in (None, [], "routerbench", {"dataset": "routerbench"}):
        with pytest.raises(ValueError, match="pooled needs tables"):
            load_outcomes("pooled", data_dir=data_dir, tables=bad)
    with pytest.raises(ValueError, match=r"pooled member 1 \('no-such-table'\): unknown dataset"):
        load_outcomes("pooled", data_dir=data_dir, tables=["dcrouter", "no-such-table"])
    with pytest.raises(ValueError, match="name more than one member"):
        load_outcomes("pooled", data_dir=data_dir, tables=["dcrouter", "dcrouter"])
    with pytest.raises(ValueError, match="unknown key"):
        load_outcomes("pooled", data_dir=data_dir, tables=[{"dataset": "dcrouter", "max_prompt": 3}])
    with pytest.raises(ValueError, match="without '/'"):
        load_outcomes("pooled", data_dir=data_dir, tables=[{"dataset": "dcrouter", "prefix": "a/b"}])
    with pytest.raises(ValueError, match="positive integer"):
        load_outcomes("pooled", data_dir=data_dir, tables=[{"dataset": "dcrouter", "max_prompts": 0}])
    with pytest.raises(TypeError, match=r"pooled member 0 \('dcrouter'\)"):
        load_outcomes("pooled", data_dir=data_dir, tables=[{"dataset": "dcrouter", "options": {"no_such": 1}}])
    # shared prompt ids must name one text in every member
    a = OutcomeTable(load_outcomes("dcrouter", data_dir=data_dir).df.head(3).copy(), "a")
    b = OutcomeTable(a.df.assign(prompt="another text"), "b")
    with pytest.raises(DataError, match="more than one prompt text"):
        pool_tables({"a": a, "b": b}, shared_prompts=True)


def test_member_folds_give_each_member_its_own_runs_folds(pool, data_dir):
    """``member_folds``: the trainer's k-fold over the reordered pool = each member's k-fold over its own prompts."""
    from aco_bert.data.splits import kfold

    def folds(ids, k):
        out = np.zeros(len(ids), dtype=int)
        for f in kfold(ids, k, 0):
            out[f.test] = f.index
        return dict(zip(ids, out))

    plain = pool.matrix().prompt_ids
    for k in (3, 5):
        ids = align_member_folds(pool, k, 0).matrix().prompt_ids
        assert sorted(ids) == sorted(plain) and ids != plain
        got = folds(ids, k)
        for prefix in ("swe", "dcrouter"):
            mine = [p for p in plain if p.startswith(prefix + "/")]  # the member's own order
            assert {p: got[p] for p in mine} == folds(mine, k)
    with pytest.raises(ValueError, match="do not add up"):  # 40 + 30 prompts in 7 folds: 6,6,6,6,6,5,5 + 5,5,4,...
        align_member_folds(pool, 7, 0)
    with pytest.raises(ValueError, match="member_folds must be a mapping"):
        load_outcomes("pooled", data_dir=data_dir, tables=TABLES, member_folds=5)


def test_member_spec_undoes_prefixed_spec():
    rb = RouterSpec.load("routerbench")
    p = prefixed_spec(rb, "routerbench")
    assert p.models == [f"routerbench/{m}" for m in rb.models] and p.frontier == f"routerbench/{rb.frontier}"
    back = member_spec(p, "routerbench")
    assert back.models == rb.models and back.frontier == rb.frontier and back.floors == rb.floors
    # restricted to a member, a floor keeps its tier (renumbered) or is dropped with it
    both = RouterSpec.from_dict({"name": "u", "tiers": [{"model": "x/a"}, {"model": "y/b"}, {"model": "x/c"}],
                                 "floors": {"legal": 3, "medical": 2}})
    xs = member_spec(both, "x")
    assert xs.models == ["a", "c"] and xs.floors == {"legal": 2} and xs.frontier is None
    with pytest.raises(ValueError, match="no tier of member 'z'"):
        member_spec(both, "z")


@pytest.fixture
def reuse_pool(pool, monkeypatch):
    """The report reloads the run's dataset (run.json's reference, options = TABLES): hand it the module's pool, which
    ``load_outcomes`` made from the very same reference (loading it again is what the tests above check)."""
    from aco_bert.artifacts.layout import DatasetRef

    load = DatasetRef.load
    monkeypatch.setattr(DatasetRef, "load", lambda self, data_dir=None, **extra: pool
                        if self.options == {"tables": TABLES} else load(self, data_dir, **extra))


def _fake_pooled_run(run_dir, pool, data_dir):
    """A k-fold run record on the pool: run.json + OOF rows whose values encode (row, head) so a mapping can be read
    back; the run's prompt order is shuffled (the report must follow the run's order, not the table's)."""
    from safetensors.numpy import save_file

    from aco_bert.artifacts.layout import DatasetRef, RunInfo
    from aco_bert.data.splits import kfold
    from aco_bert.spec import Tier

    m = pool.matrix()
    order = np.random.default_rng(0).permutation(m.n_prompts)
    ids = [m.prompt_ids[i] for i in order]
    spec = RouterSpec(name="every-model", tiers=[Tier(model=x) for x in m.models], dataset="pooled")
    fold = np.zeros(len(ids), dtype=np.int64)
    for f in kfold(ids, 3, 0):
        fold[f.test] = f.index
    rows, heads = np.arange(len(ids))[:, None], np.arange(len(m.models))[None, :]
    run_dir.mkdir()
    save_file({"logits": (rows * 100 + heads).astype(np.float32),
               "embeddings": np.random.default_rng(1).normal(size=(len(ids), 8)).astype(np.float32), "fold": fold},
              str(run_dir / "oof.safetensors"))
    (run_dir / "oof_meta.json").write_text(json.dumps({"prompt_ids": ids, "models": m.models, "mean_auc": 0.5}))
    RunInfo(dataset=DatasetRef.make("pooled", data_dir, {"tables": TABLES}), spec=spec.to_dict(), models=m.models,
            prompt_ids=ids, mode="kfold", kfold=3).save(run_dir)
    return ids, fold, m.models


def test_report_inputs_judge_a_pooled_run_on_one_member(pool, parts, data_dir, tmp_path, reuse_pool):
    from aco_bert.evaluation.report_inputs import load_report_data

    run = tmp_path / "run"
    ids, fold, heads = _fake_pooled_run(run, pool, data_dir)
    quiet = lambda s: None  # noqa: E731
    data = load_report_data("dcrouter", "dcrouter", str(data_dir), str(run), None, 0, quiet)
    dc, dc_ids = parts["dcrouter"]
    want = [p.split("/", 1)[1] for p in ids if p.startswith("dcrouter/")]  # the run's order, member's ids
    assert data.dataset == "dcrouter" and data.member == "dcrouter" and data.spec.name == "dcrouter"
    assert data.matrix.prompt_ids == want and sorted(want) == sorted(dc_ids)
    own = dc.matrix(data.spec.models)
    own = own.subset([own.prompt_ids.index(p) for p in want])
    assert np.array_equal(data.matrix.success, own.success, equal_nan=True)
    inputs, meta, _ = data.load_oof(data.matrix.prompt_ids)
    run_rows = [ids.index(f"dcrouter/{p}") for p in want]
    head_cols = [heads.index(f"dcrouter/{t}") for t in data.spec.models]
    assert meta["models"] == data.spec.models and meta["pool_member"] == "dcrouter"  # member heads only
    assert np.array_equal(inputs.logits, np.array(run_rows)[:, None] * 100 + np.array(head_cols)[None, :])
    assert inputs.fold.tolist() == fold[run_rows].tolist()  # the run's folds, restricted to the member
    assert meta["pooled_mean_auc"] == 0.5 and 0 <= meta["mean_auc"] <= 1
    # default spec: the run's spec restricted to the member; a sub-slice keeps to the run's member prompts
    sw = load_report_data("swebench-verified", None, str(data_dir), str(run), 10, 0, quiet)
    assert sw.member == "swe" and sw.spec.models == [h[4:] for h in heads if h.startswith("swe/")]
    assert sw.matrix.n_prompts == 10 and set(sw.matrix.prompt_ids) <= {p[4:] for p in ids if p.startswith("swe/")}
    whole = load_report_data("pooled", None, str(data_dir), str(run), None, 0, quiet)  # the pool as a whole
    assert whole.member is None and whole.matrix.prompt_ids == ids
    with pytest.raises(ValueError, match="not a member of the pool"):
        load_report_data("mmlu-pro", None, str(data_dir), str(run), None, 0, quiet)


def test_nested_report_of_a_pooled_run_on_one_member(pool, data_dir, tmp_path, reuse_pool, monkeypatch):
    from aco_bert.decision import conformal

    # the conformal-coverage diagnostic's 200 random splits are most of a small report's time and read nothing of
    # the member mapping this test is about: 2 splits
    real = conformal.coverage_over_splits
    monkeypatch.setattr(conformal, "coverage_over_splits", lambda *a, **k: real(*a, **{**k, "n_splits": 2}))
    from aco_bert.decision.cost_model import CostModelConfig
    from aco_bert.decision.stacker import StackerConfig
    from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval

    run = tmp_path / "run"
    ids, fold, _ = _fake_pooled_run(run, pool, data_dir)
    cfg = RouterEvalConfig(dataset="dcrouter", spec="dcrouter", data_dir=str(data_dir), oof_run=str(run),
                           k_inner=2, tfidf=False, peers=[], floors=False, cascade=False,
                           stacker=StackerConfig(n_rounds=5, margin_rounds=3, nthread=1, inner_k=2, pca_dim=2,
                                                 signals=["heads", "pca", "features"]),
                           cost=CostModelConfig(n_rounds=5, nthread=1))
    out = run_router_eval(cfg, log=lambda s: None)
    assert out["dataset"] == "dcrouter" and out["n_prompts"] == 30 and out["n_folds"] == 3
    assert "neural-heads" in out["sources"] and out["models"] == RouterSpec.load("dcrouter").models
    assert out["neural_run"]["dir"] == str(run)
