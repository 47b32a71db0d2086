"""Per-tier AUC of the TF-IDF + logistic-regression baseline (aco_bert.evaluation.tfidf) on real outcome data.

* any registered dataset or outcome file (``--dataset``): K-fold out-of-fold AUC, folds by prompt from
  ``aco_bert.data.splits.kfold``, over every model of the table (or the tiers of ``--spec``).
* ``routerbench`` (RouterDC's re-cut, 11 models): train on its train split, AUC on its test split.
* ``all`` (default): ``swebench-verified`` and ``routerbench``, the two reference numbers of the README.

    python scripts/baseline_auc.py --data-dir ../shared/data [--dataset all|NAME|PATH] [--spec SPEC]
        [--name LABEL] [--dataset_options "{with_responses: true}"] [--k 5] [--seed 0] [--json OUT]
        [--C 1.0 --min_df 2 ...]   (extra --key value: TfidfLRConfig fields)

Prints one table per dataset: model, base rate (success rate of the scored prompts), AUC; then the mean over tiers
with a defined AUC. A tier whose labels are one class prints "nan" (AUC undefined) and is left out of the mean.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from aco_bert.artifacts.jsonio import write_json
from aco_bert.evaluation.metrics.core import mean_auc, per_tier_auc
from aco_bert.evaluation.tfidf import TfidfLR, TfidfLRConfig, oof_predict
from aco_bert.config import load_config, parse_overrides
from aco_bert.data.registry import DATASETS, load_outcomes
from aco_bert.data.splits import kfold

BUILTIN = ("swebench-verified", "routerbench")


def load_table(dataset: str, data_dir: str | None, options: dict[str, Any], name: str | None = None):
    """A registered dataset or a file, named ``name`` when given (a file: through the generic loader's ``name``)."""
    kw = dict(options)
    if name and dataset not in DATASETS:
        kw["name"] = name
    table = load_outcomes(dataset, data_dir=data_dir, **kw)
    if name:
        table.name = name
    return table


def tier_models(table, spec: str | None) -> list[str]:
    """The spec's tiers (checked to be in the table), else every model of the table."""
    if spec is None:
        return table.models
    from aco_bert.spec import RouterSpec

    models = RouterSpec.load(spec).models
    missing = [m for m in models if m not in table.models]
    if missing:
        raise ValueError(f"spec {spec!r} tiers not in {table.name!r}: {missing}; it has {table.models}")
    return models


def kfold_oof(dataset: str, data_dir: str | None, cfg: TfidfLRConfig, k: int, seed: int, *, spec: str | None = None,
              options: dict[str, Any] | None = None, name: str | None = None) -> dict:
    table = load_table(dataset, data_dir, options or {}, name)
    m = table.matrix(tier_models(table, spec))
    probs = oof_predict(m.prompts, m.success, kfold(m.prompt_ids, k, seed), cfg)
    label = name or (dataset if dataset in DATASETS else table.name)
    return _result(label, f"{k}-fold OOF (seed {seed})", m.models, m.success, probs)


def swebench_oof(data_dir: str | None, cfg: TfidfLRConfig, k: int, seed: int) -> dict:
    return kfold_oof("swebench-verified", data_dir, cfg, k, seed)


def _routerbench_split(data_dir: str | None, options: dict[str, Any] | None = None):
    """(train matrix, test matrix) with one model order; by RouterDC's files."""
    tr = load_outcomes("routerbench", data_dir=data_dir, split="train", **(options or {})).matrix()
    te = load_outcomes("routerbench", data_dir=data_dir, split="test", **(options or {}))
    return tr, te.matrix(tr.models)


def routerbench_train_test(data_dir: str | None, cfg: TfidfLRConfig, options: dict[str, Any] | None = None,
                           name: str | None = None) -> dict:
    tr, te = _routerbench_split(data_dir, options)
    overlap = set(tr.prompt_ids) & set(te.prompt_ids)
    keep = [i for i, p in enumerate(te.prompt_ids) if p not in overlap]  # a prompt in both files is not "unseen"
    te = te.subset(keep)
    probs = TfidfLR(cfg).fit(tr.prompts, tr.success).predict_proba(te.prompts)
    res = _result(name or "routerbench", f"train {tr.n_prompts} -> test {te.n_prompts}", te.models, te.success,
                  probs)
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
             "base_rate": float(np.mean(success[known[:, t], t] >= 0.5) if known[:, t].any() else np.nan),
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


def parse_options(text: str | None) -> dict[str, Any]:
    """``--dataset_options``: a YAML/JSON mapping of loader options, e.g. ``"{with_responses: true}"``."""
    import yaml

    if not text:
        return {}
    opts = yaml.safe_load(text)
    if not isinstance(opts, dict):
        raise ValueError(f"--dataset_options must be a mapping like '{{with_responses: true}}', got {text!r}")
    return opts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None,
                    help="shared data dir (default: $ACO_BERT_DATA_DIR, else the public sources)")
    ap.add_argument("--dataset", default="all",
                    help=f"'all' ({', '.join(BUILTIN)}), a registered dataset ({', '.join(sorted(DATASETS))}) "
                         "or an outcome file (CSV/JSONL/Parquet, long or wide)")
    ap.add_argument("--spec", default=None, help="router spec name or YAML: score its tiers (default: every model)")
    ap.add_argument("--name", default=None, help="dataset name shown in the table and the JSON (default: the "
                                                 "registry name or the file's stem)")
    ap.add_argument("--dataset_options", "--dataset-options", default=None,
                    help="loader options as a YAML mapping, e.g. \"{with_responses: true}\"")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="YAML with TfidfLRConfig fields")
    ap.add_argument("--json", default=None, help="write the results here")
    args, rest = ap.parse_known_args(argv)
    cfg = load_config(TfidfLRConfig, args.config, parse_overrides(rest))
    try:
        options = parse_options(args.dataset_options)
    except ValueError as e:
        print(f"baseline_auc: {e}", file=sys.stderr)
        return 2
    if args.name and args.dataset == "all":
        print("baseline_auc: --name names one dataset; give --dataset too", file=sys.stderr)
        return 2
    results = []
    for name in (BUILTIN if args.dataset == "all" else [args.dataset]):
        t0 = time.perf_counter()
        try:
            if name == "routerbench" and args.spec is None:
                if "routerbench" not in DATASETS:
                    print("\nrouterbench: not registered in aco_bert.data.registry.DATASETS; skipped", file=sys.stderr)
                    continue
                res = routerbench_train_test(args.data_dir, cfg, options, args.name)
            else:
                res = kfold_oof(name, args.data_dir, cfg, args.k, args.seed, spec=args.spec, options=options,
                                name=args.name)
        except (ValueError, KeyError, OSError, TypeError) as e:  # unknown dataset, bad file, bad option
            print(f"baseline_auc: {name}: {e}", file=sys.stderr)
            return 2
        res["seconds"] = round(time.perf_counter() - t0, 1)
        print_table(res)
        results.append(res)
    if args.json:
        write_json(args.json, {"config": asdict(cfg), "results": results})  # strict JSON: an undefined AUC is null
    return 0


if __name__ == "__main__":
    sys.exit(main())
