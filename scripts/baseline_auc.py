"""Per-tier AUC of the TF-IDF + logistic-regression baseline (aco_bert.evaluation.tfidf) on real outcome data.

* ``swebench-verified`` (24 models): K-fold out-of-fold AUC, folds by prompt from ``aco_bert.data.splits.kfold``.
* ``routerbench`` (RouterDC's re-cut, 11 models): train on its train split, AUC on its test split.

    python scripts/baseline_auc.py --data-dir ../shared/data [--dataset all|swebench-verified|routerbench]
        [--k 5] [--seed 0] [--json OUT] [--C 1.0 --min_df 2 ...]   (extra --key value: TfidfLRConfig fields)

Prints one table per dataset: model, base rate (success rate of the scored prompts), AUC; then the mean over tiers
with a defined AUC. A tier whose labels are one class prints "nan" (AUC undefined) and is left out of the mean.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc
from aco_bert.evaluation.tfidf import TfidfLR, TfidfLRConfig, oof_predict
from aco_bert.config import load_config, parse_overrides
from aco_bert.data.registry import DATASETS, load_outcomes
from aco_bert.data.splits import kfold


def swebench_oof(data_dir: str | None, cfg: TfidfLRConfig, k: int, seed: int) -> dict:
    m = load_outcomes("swebench-verified", data_dir=data_dir).matrix()
    probs = oof_predict(m.prompts, m.success, kfold(m.prompt_ids, k, seed), cfg)
    return _result("swebench-verified", f"{k}-fold OOF (seed {seed})", m.models, m.success, probs)


def _routerbench_split(data_dir: str | None):
    """(train matrix, test matrix) with one model order; by RouterDC's files."""
    tr = load_outcomes("routerbench", data_dir=data_dir, split="train").matrix()
    te = load_outcomes("routerbench", data_dir=data_dir, split="test")
    return tr, te.matrix(tr.models)


def routerbench_train_test(data_dir: str | None, cfg: TfidfLRConfig) -> dict:
    tr, te = _routerbench_split(data_dir)
    overlap = set(tr.prompt_ids) & set(te.prompt_ids)
    keep = [i for i, p in enumerate(te.prompt_ids) if p not in overlap]  # a prompt in both files is not "unseen"
    te = te.subset(keep)
    probs = TfidfLR(cfg).fit(tr.prompts, tr.success).predict_proba(te.prompts)
    res = _result("routerbench", f"train {tr.n_prompts} -> test {te.n_prompts}", te.models, te.success, probs)
    res["test_prompts_dropped_as_also_in_train"] = len(overlap)
    return res


def _result(name: str, protocol: str, models: list[str], success: np.ndarray, probs: np.ndarray) -> dict:
    aucs = per_tier_auc(success, probs)
    known = ~np.isnan(success)
    return {
        "dataset": name,
        "protocol": protocol,
        "n_prompts": int(success.shape[0]),
        "tiers": [
            {"model": mdl, "n": int(known[:, t].sum()),
             "base_rate": float(np.nanmean(success[:, t] >= 0.5) if known[:, t].any() else np.nan),
             "auc": None if np.isnan(aucs[t]) else float(aucs[t])}
            for t, mdl in enumerate(models)
        ],
        "mean_auc": mean_auc(aucs),
    }


def print_table(res: dict) -> None:
    print(f"\n## {res['dataset']}: TF-IDF + LR, {res['protocol']}, {res['n_prompts']} prompts\n")
    width = max(len(t["model"]) for t in res["tiers"])
    print(f"| {'model':<{width}} | n | base rate | AUC |")
    print(f"|{'-' * (width + 2)}|---|---|---|")
    for t in res["tiers"]:
        auc = "nan" if t["auc"] is None else f"{t['auc']:.3f}"
        print(f"| {t['model']:<{width}} | {t['n']} | {t['base_rate']:.3f} | {auc} |")
    print(f"| **mean** | | | **{res['mean_auc']:.3f}** |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None,
                    help="shared data dir (default: $ACO_BERT_DATA_DIR, else the public sources)")
    ap.add_argument("--dataset", default="all", choices=["all", "swebench-verified", "routerbench"])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="YAML with TfidfLRConfig fields")
    ap.add_argument("--json", default=None, help="write the results here")
    args, rest = ap.parse_known_args(argv)
    cfg = load_config(TfidfLRConfig, args.config, parse_overrides(rest))
    results = []
    todo = ["swebench-verified", "routerbench"] if args.dataset == "all" else [args.dataset]
    for name in todo:
        t0 = time.perf_counter()
        if name == "swebench-verified":
            res = swebench_oof(args.data_dir, cfg, args.k, args.seed)
        elif "routerbench" not in DATASETS:
            print("\nrouterbench: not registered in aco_bert.data.registry.DATASETS; skipped", file=sys.stderr)
            continue
        else:
            res = routerbench_train_test(args.data_dir, cfg)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        print_table(res)
        results.append(res)
    if args.json:
        write_json(args.json, {"config": asdict(cfg), "results": results})  # strict JSON: an undefined AUC is null
    return 0


if __name__ == "__main__":
    sys.exit(main())
