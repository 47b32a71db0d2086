"""Stacker input ablation: pooled out-of-fold AUC of the per-tier XGBoost stacker for each input set.

    python scripts/ablate_stacker.py --dataset swebench-verified --spec configs/specs/swebench-verified-hull3.yaml \
        --oof_run checkpoints/minilm-cpu-oof-decision2 --data_dir ../shared/data

Prompts, spec and dataset default to the neural run's own (its run.json), as in ``aco-bert report``.
Outer folds = the neural run's folds (every input is out-of-fold for the rows it scores); prints a table of mean
per-tier AUC / Brier next to the raw neural heads and the TF-IDF + LR baseline on the same folds.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc
    from aco_bert.evaluation.tfidf import oof_predict
    from aco_bert.evaluation.calibration import brier
    from aco_bert.evaluation.report_inputs import load_report_data
    from aco_bert.signals.handcrafted import featurize
    from aco_bert.data.splits import Fold
    from aco_bert.decision.stacker import StackerConfig, StackInputs, cross_fit, load_oof, standardize_by_fold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="default: the run's dataset")
    ap.add_argument("--spec", default=None, help="default: the run's spec")
    ap.add_argument("--oof_run", required=True)
    ap.add_argument("--data_dir", default=None)
    a = ap.parse_args(argv)
    data = load_report_data(a.dataset, a.spec, a.data_dir, a.oof_run, None, 0, log=lambda s: None)
    spec, m = data.spec, data.matrix
    inp, meta, _ = load_oof(a.oof_run, m.prompt_ids)
    logits = standardize_by_fold(inp.logits, inp.fold)
    cols = [list(meta["models"]).index(x) for x in spec.models] if all(x in meta["models"] for x in spec.models) else None
    feats = featurize(m.prompts).astype(float)
    folds = [Fold(i, np.flatnonzero(inp.fold != k), np.flatnonzero(inp.fold == k))
             for i, k in enumerate(sorted(set(inp.fold.tolist())))]
    y = m.success
    rows = []

    def add(name, p, secs):
        rows.append((name, mean_auc(per_tier_auc(y, p)), brier(p, y), secs))

    if cols is not None:
        add("neural heads (sigmoid of the tiers' own logits)", 1 / (1 + np.exp(-inp.logits[:, cols])), 0.0)
    t = time.time()
    add("TF-IDF + LR", oof_predict(m.prompts, y, folds), time.time() - t)
    base = StackerConfig(nthread=1)
    sets = {
        "stacked: all logits": dict(logits=logits),
        "stacked: all logits + PCA(emb)": dict(logits=logits, embeddings=inp.embeddings),
        "stacked: all logits + features": dict(logits=logits, features=feats),
        "stacked: all logits + PCA(emb) + features (default)": dict(logits=logits, embeddings=inp.embeddings,
                                                                      features=feats),
        "stacked: PCA(emb) + features (no neural logits)": dict(embeddings=inp.embeddings, features=feats),
        "stacked: features only": dict(features=feats),
    }
    for name, parts in sets.items():
        t = time.time()
        add(name, cross_fit(StackInputs(**parts), y, folds, base), time.time() - t)
    print(f"## stacker input ablation: {data.dataset} / {spec.name}, {m.n_prompts} prompts, {len(folds)} neural folds "
          f"(run {a.oof_run})\n")
    print("| Inputs | mean per-tier AUC | Brier | seconds |\n|---|---:|---:|---:|")
    for name, auc, b, s in rows:
        print(f"| {name} | {auc:.3f} | {b:.4f} | {s:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
