"""One out-of-fold file for a dataset's own train/test split, so the nested report can run with ``split: given``.

A neural k-fold run covers the train split only, and a holdout run (trained on every train prompt) scores the test
split; the report needs one OOF table with a fold per row. This merge is the only place the two are joined, and it
refuses (or drops, counted) any prompt that would be scored by a model that trained on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.artifacts.layout import OOF, OOF_META, RUN_INFO, RunInfo


def merge_holdout_oof(kfold_run: str | Path, holdout_run: str | Path, out: str | Path, max_overlap: int = 10
                      ) -> Path:
    """One OOF file for a dataset's own train/test split: k-fold OOF rows of the *train* prompts (run A: neural
    k-fold on the train split only) + the test prompts scored by the model trained on all train prompts (run B:
    holdout mode), marked fold = K. No test label ever reaches a model: the stacker trains on A's rows only.
    """
    from safetensors.numpy import load_file, save_file

    a, b, out = Path(kfold_run), Path(holdout_run), Path(out)
    ta, ma = load_file(str(a / OOF)), json.loads((a / OOF_META).read_text())
    tb, mb = load_file(str(b / "test_predictions.safetensors")), json.loads((b / "test_meta.json").read_text())
    if list(ma["models"]) != list(mb["models"]):
        raise ValueError(f"{a} and {b} have different tiers")
    test_ids = list(mb["prompt_ids"])  # in the order of the saved rows (train.py saves rows [index], in order)
    if len(test_ids) != tb["logits"].shape[0]:
        raise ValueError(f"{b}: {len(test_ids)} prompt ids for {tb['logits'].shape[0]} predictions")
    n_te = len(test_ids)
    overlap = set(ma["prompt_ids"]) & set(test_ids)
    if len(overlap) > max_overlap:
        raise ValueError(f"{len(overlap)} test prompts are in the k-fold (train) run, e.g. {sorted(overlap)[:3]}")
    # A prompt merged across the two split files (RouterBench has a few) belongs to the test side: drop its
    # k-fold row (counted in the meta), so it is scored by the model trained without it and never trained on.
    keep = np.array([p not in overlap for p in ma["prompt_ids"]])
    ta = {k: v[keep] for k, v in ta.items()}
    ma = {**ma, "prompt_ids": [p for p, kk in zip(ma["prompt_ids"], keep) if kk]}
    k = int(ta["fold"].max()) + 1
    arrays = {"logits": np.concatenate([ta["logits"], tb["logits"]]).astype(np.float32),
              "embeddings": np.concatenate([ta["embeddings"], tb["embeddings"]]).astype(np.float32),
              "fold": np.concatenate([ta["fold"], np.full(n_te, k)]).astype(np.int64)}
    if "cost" in ta and "cost" in tb:
        arrays["cost"] = np.concatenate([ta["cost"], tb["cost"]]).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out / OOF))
    meta = {**ma, "prompt_ids": list(ma["prompt_ids"]) + test_ids, "merged_from": [str(a), str(b)],
            "test_fold": k, "holdout_mean_auc": mb.get("mean_auc"),
            "dropped_from_kfold": sorted(overlap)}
    write_json(out / OOF_META, meta)
    # the merged run's contract: the holdout run's dataset reference and spec (it saw both splits), these prompts
    if (b / RUN_INFO).exists():  # (runs trained before run.json existed: the report falls back to oof_meta.json)
        hold = RunInfo.load(b)
        RunInfo(dataset=hold.dataset, spec=hold.spec, models=list(hold.models), prompt_ids=meta["prompt_ids"],
                mode="kfold", kfold=k + 1, seed=hold.seed).save(out)
    return out
