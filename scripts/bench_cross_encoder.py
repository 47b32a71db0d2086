"""Does a (response, question) cross-encoder improve the cascade verifier's first-run AUC?

A first run is a run judged with no other tier's answer (no agreement block). Three scores per run, all held out:

* verifier   -- :func:`aco_bert.decision.verifier.cross_fit_verifier` (cheap response features + trace + prompt
                features; ``prior=None``: no router prior, the same for every score here), first-run column;
* cross-enc  -- the package's trainer on :func:`aco_bert.verify.pairs.pair_table` written as JSONL, frozen MiniLM
                (``configs/minilm-cpu.yaml``), one ``--holdout source=<fold>`` run per fold: the pair's logit is
                its own model's head;
* combined   -- [logit(verifier), cross-enc logit] combined by a per-tier logistic regression and by one XGBoost
                pooled over tiers (tier one-hot as input), cross-fitted by the same folds.

Folds are by ORIGINAL prompt (all pairs of a question in one fold). mmlu-pro: the 3,000 prompts of
``checkpoints/mmlu-oof`` and that run's ``fold``. RouterBench: train = meta split "train", test = "test"; the
combiner, which needs held-out scores to fit on, is cross-fitted by 5 folds of the test prompts (by prompt).

    nice -n 5 python scripts/bench_cross_encoder.py --dataset mmlu-pro --out checkpoints/h5-ce-mmlu
    nice -n 5 python scripts/bench_cross_encoder.py --dataset routerbench --out checkpoints/h5-ce-rb
    ... --probe 500   # only time the embedding of 500 pairs (pick --max_length)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEC = {"mmlu-pro": "mmlu-pro", "routerbench": "routerbench"}
ROUTER_RUN = {"mmlu-pro": "checkpoints/mmlu-oof", "routerbench": "checkpoints/rb-oof"}  # OOF router logits


def load(dataset: str, data_dir: str | None, oof_run: Path, max_prompts: int | None = None):
    """(matrix of the original prompts, their table, group label per prompt, models, folds over the prompts)."""
    from safetensors.numpy import load_file

    from aco_bert.data import OutcomeTable, load_outcomes
    from aco_bert.data.splits import Fold, kfold
    from aco_bert.spec import RouterSpec

    models = RouterSpec.load(SPEC[dataset]).models
    if dataset == "mmlu-pro":
        run = json.loads((oof_run / "run.json").read_text())
        meta = json.loads((oof_run / "oof_meta.json").read_text())
        fold_of = dict(zip(meta["prompt_ids"], load_file(str(oof_run / "oof.safetensors"))["fold"].tolist()))
        pids = list(run["prompt_ids"])[:max_prompts]
        t = load_outcomes("mmlu-pro", data_dir=data_dir, with_responses=True)
        t = OutcomeTable(t.df[t.df["prompt_id"].isin(set(pids))].reset_index(drop=True), t.name, extras=t.extras)
        m = t.matrix(models)
        m = m.subset([m.prompt_ids.index(p) for p in pids])
        label = np.array([f"f{fold_of[p]}" for p in m.prompt_ids], dtype=object)
        fold = np.array([fold_of[p] for p in m.prompt_ids])
        folds = [Fold(k, np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(int(fold.max()) + 1)]
        comb_folds = folds
    else:
        t = load_outcomes("routerbench", data_dir=data_dir)
        if max_prompts:
            keep = set(list(dict.fromkeys(t.df["prompt_id"]))[:max_prompts])
            t = OutcomeTable(t.df[t.df["prompt_id"].isin(keep)].reset_index(drop=True), t.name, extras=t.extras)
        m = t.matrix(models)
        label = m.meta["split"].astype(str).to_numpy(dtype=object)
        test = np.flatnonzero(label == "test")
        folds = [Fold(0, np.flatnonzero(label == "train"), test)]
        comb_folds = [Fold(f.index, test[f.train], test[f.test]) for f in kfold([m.prompt_ids[i] for i in test], 5, 0)]
    return m, t, label, models, folds, comb_folds


def write_pairs(t, m, label, models, path: Path, args) -> int:
    from aco_bert.verify.pairs import PAIR_OF, pair_table

    pt = pair_table(t, models=models, max_response_chars=args.max_response_chars,
                    max_prompt_chars=args.max_prompt_chars)
    df = pt.df.copy()
    lab = dict(zip(m.prompt_ids, label))
    of = pt.extras["prompt_meta"][PAIR_OF]
    df["source"] = [lab[of[i]] for i in df["prompt_id"]]  # the fold (mmlu-pro) or split (RouterBench) label
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = ["prompt_id", "prompt", "model", "success", "category", "source"]
        df[cols].to_json(path.with_suffix(".tmp"), orient="records", lines=True, force_ascii=False)
        path.with_suffix(".tmp").replace(path)
    return len(df)


def train_cmd(args, pairs: Path, holdout: str, out: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "aco_bert.train", "--config", "configs/minilm-cpu.yaml", "--dataset", str(pairs),
            "--spec", SPEC[args.dataset], "--holdout", f"source={holdout}", "--kfold", "0", "--final_fit", "false",
            "--cost_heads", "false", "--aux_targets", "[]", "--max_length", str(args.max_length),
            *(["--tail_tokens", str(args.tail_tokens)] if args.tail_tokens else []), "--num_threads", str(args.threads), "--progress_bar", "false", "--batch_size", str(args.batch_size),
            "--embedding_cache_dir", str(args.out / "emb-cache"), "--output_dir", str(out), *extra]


def run(cmd: list[str], log: Path) -> float:
    print("$", " ".join(c if re.fullmatch(r"[\w./=:,-]+", c) else repr(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"command failed ({rc}); see {log}")
    return time.perf_counter() - t0


def embed_seconds(log: Path) -> float | None:
    hit = re.search(r"embedded (\d+) prompts.* in ([\d.]+)s", log.read_text())
    return float(hit.group(2)) if hit else None


def cross_encoder_logits(args, pairs: Path, holdouts: list[str], m, models) -> tuple[np.ndarray, dict]:
    """(P, T) held-out cross-encoder logits of every run with a response (NaN elsewhere), and wall times."""
    from safetensors.numpy import load_file

    from aco_bert.verify.pairs import PAIR_SEP, original_prompt_id

    ce = np.full((m.n_prompts, len(models)), np.nan)
    row, times = {p: i for i, p in enumerate(m.prompt_ids)}, {}
    for h in holdouts:
        out = args.out / f"ce-{args.tag}-{h}"
        if not (out / "test_predictions.safetensors").exists():
            times[h] = run(train_cmd(args, pairs, h, out), out.with_suffix(".log"))
            times[f"{h}_embed"] = embed_seconds(out.with_suffix(".log"))
        pred = load_file(str(out / "test_predictions.safetensors"))
        meta = json.loads((out / "test_meta.json").read_text())
        assert meta["models"] == list(models)
        for pid, lg in zip(meta["prompt_ids"], pred["logits"]):
            model = max((x for x in models if pid.endswith(PAIR_SEP + x)), key=len)
            t = models.index(model)
            ce[row[original_prompt_id(pid, model)], t] = lg[t]
    return ce, times


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def combine(y, blocks: list[np.ndarray], runs, comb_folds, n_tiers, trees: bool = True):
    """Cross-fitted combinations of the (P, T) score blocks on the runs ``runs`` (mask (P, T)): a logistic
    regression per tier, and (``trees``) one XGBoost pooled over tiers with the tier one-hot as input."""
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    lr, xg = np.full(y.shape, np.nan), np.full(y.shape, np.nan)
    feats = lambda i, u: np.stack([b[i, u] for b in blocks], axis=1)  # noqa: E731
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.05, "subsample": 0.8,
              "min_child_weight": 5, "lambda": 5, "nthread": 1, "seed": 0}
    for f in comb_folds:
        tr, te = np.zeros(len(y), bool), np.zeros(len(y), bool)
        tr[f.train], te[f.test] = True, True
        for t in range(n_tiers):
            a, b = np.flatnonzero(tr & runs[:, t]), np.flatnonzero(te & runs[:, t])
            if len(b):
                lr[b, t] = LogisticRegression(C=1.0).fit(feats(a, t), y[a, t]).decision_function(feats(b, t))
        if trees:
            ii, tt = np.nonzero(runs & tr[:, None])
            jj, uu = np.nonzero(runs & te[:, None])
            onehot = np.eye(n_tiers)
            bst = xgb.train(params, xgb.DMatrix(np.c_[onehot[tt], feats(ii, tt)], label=y[ii, tt]),
                            num_boost_round=200)
            xg[jj, uu] = bst.predict(xgb.DMatrix(np.c_[onehot[uu], feats(jj, uu)]))
    return lr, xg


def router_logits(run_dir: Path, m, models) -> np.ndarray | None:
    """(P, T) out-of-fold ex-ante router logits of a k-fold run over these prompts (a control: does the
    cross-encoder add more than knowing the question?), or None when the run does not cover them."""
    from safetensors.numpy import load_file

    if not (run_dir / "oof.safetensors").exists():
        return None
    meta = json.loads((run_dir / "oof_meta.json").read_text())
    lg = load_file(str(run_dir / "oof.safetensors"))["logits"]
    row = {p: i for i, p in enumerate(meta["prompt_ids"])}
    if any(p not in row for p in m.prompt_ids) or meta["models"] != list(models):
        return None
    return lg[[row[p] for p in m.prompt_ids]].astype(float)


def tier_aucs(y, s, runs) -> list[float]:
    from sklearn.metrics import roc_auc_score

    out = []
    for t in range(y.shape[1]):
        k = runs[:, t] & np.isfinite(s[:, t])
        out.append(float(roc_auc_score(y[k, t], s[k, t])) if len(set(y[k, t])) == 2 else float("nan"))
    return out


def bootstrap_diff(y, a, b, runs, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean per-tier AUC(a) - AUC(b), resampling the evaluated prompts (paired)."""
    rows = np.flatnonzero(runs.any(1))
    rng, diffs = np.random.default_rng(seed), []
    for _ in range(n_boot):
        i = rng.choice(rows, size=len(rows), replace=True)
        diffs.append(np.nanmean(tier_aucs(y[i], a[i], runs[i])) - np.nanmean(tier_aucs(y[i], b[i], runs[i])))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=sorted(SPEC), required=True)
    ap.add_argument("--out", type=Path, required=True, help="checkpoints/h5-...: pairs, runs, embeddings, result")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--oof-run", type=Path, default=REPO / "checkpoints/mmlu-oof", help="mmlu-pro: prompts + folds")
    ap.add_argument("--router-run", type=Path, default=None, help="k-fold router run for the control rows")
    ap.add_argument("--max_length", type=int, default=256)
    ap.add_argument("--tail_tokens", type=int, default=None, help="tokens kept from the text's end (question)")
    ap.add_argument("--batch_size", type=int, default=32, help="head training batch (configs/minilm-cpu.yaml: 32)")
    ap.add_argument("--max_response_chars", type=int, default=2000)
    ap.add_argument("--max_prompt_chars", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max_prompts", type=int, default=None, help="smoke runs: only the first N original prompts")
    ap.add_argument("--probe", type=int, default=0, help="only time the embedding of this many pairs")
    args = ap.parse_args(argv)
    args.out = args.out if args.out.is_absolute() else REPO / args.out
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from aco_bert.decision.verifier import VerifierConfig, cross_fit_verifier, trace_arrays
    from aco_bert.signals.handcrafted import featurize

    t0 = time.perf_counter()
    args.tag = (f"L{args.max_length}-t{args.tail_tokens}-r{args.max_response_chars}-p{args.max_prompt_chars}"
                f"-b{args.batch_size}" + (f"-n{args.max_prompts}" if args.max_prompts else ""))
    m, t, label, models, folds, comb_folds = load(args.dataset, args.data_dir, args.oof_run, args.max_prompts)
    pairs = args.out / (f"pairs-r{args.max_response_chars}-p{args.max_prompt_chars}"
                        + (f"-n{args.max_prompts}" if args.max_prompts else "") + ".jsonl")
    n_pairs = write_pairs(t, m, label, models, pairs, args)
    holdouts = sorted(set(label)) if args.dataset == "mmlu-pro" else ["test"]
    print(f"{args.dataset}: {m.n_prompts} prompts, {n_pairs} pairs -> {pairs} ({time.perf_counter() - t0:.0f}s)")
    if args.probe:
        out = args.out / f"probe-{args.probe}-L{args.max_length}-t{args.tail_tokens}"
        log = out.with_suffix(".log")
        wall = run(train_cmd(args, pairs, holdouts[0], out, ["--max_prompts", str(args.probe), "--num_epochs", "1",
                                                             "--embedding_cache_dir", str(out / "cache")]), log)
        emb = embed_seconds(log)
        print(f"probe: {args.probe} pairs at max_length {args.max_length}: embed {emb}s "
              f"({args.probe / emb:.1f} pairs/s -> {n_pairs / (args.probe / emb) / 60:.1f} min for all), wall {wall:.0f}s")
        return 0
    ce, times = cross_encoder_logits(args, pairs, holdouts, m, models)
    y = np.asarray(m.success, float)
    t1 = time.perf_counter()
    v = cross_fit_verifier(y, trace_arrays(m), folds, featurize(m.prompts), prior=None, cfg=VerifierConfig(),
                           responses=m.responses)
    times["verifier"] = time.perf_counter() - t1
    evaluated = np.zeros(m.n_prompts, bool)
    evaluated[np.concatenate([f.test for f in folds])] = True
    present = np.vectorize(lambda r: r is not None, otypes=[bool])(m.responses)
    runs = evaluated[:, None] & ~np.isnan(y) & present & np.isfinite(ce) & np.isfinite(v)
    t2 = time.perf_counter()
    lr, xg = combine(y, [logit(v), ce], runs, comb_folds, len(models))
    rows = {"verifier first-run (prior=None)": v, "cross-encoder logit": ce,
            "verifier + cross-encoder: logistic per tier": lr, "verifier + cross-encoder: XGBoost pooled": xg}
    router = router_logits(args.router_run or REPO / ROUTER_RUN[args.dataset], m, models)
    if router is not None:  # control: the verifier has no router prior here, the cross-encoder reads the question
        rows["ex-ante router logit (control)"] = router
        rows["verifier + router: logistic per tier"] = combine(y, [logit(v), router], runs, comb_folds,
                                                               len(models), trees=False)[0]
        rows["verifier + router + cross-encoder: logistic per tier"] = combine(
            y, [logit(v), router, ce], runs, comb_folds, len(models), trees=False)[0]
    times["combine"] = time.perf_counter() - t2
    res = {name: tier_aucs(y, s, runs) for name, s in rows.items()}
    print(f"\n{args.dataset}: {int(runs.sum())} held-out runs, {int(evaluated.sum())} prompts; max_length "
          f"{args.max_length}; mean per-tier AUC (per-tier AUCs)")
    for name, a in res.items():
        print(f"| {name} | {np.nanmean(a):.3f} | {' '.join(f'{x:.3f}' for x in a)} |")
    base = rows["verifier first-run (prior=None)"]
    cis = {}
    for name in [k for k in rows if k.startswith("verifier +")]:
        lo, hi = bootstrap_diff(y, rows[name], base, runs)
        cis[name] = [lo, hi]
        print(f"{name} - verifier: {np.nanmean(res[name]) - np.nanmean(res['verifier first-run (prior=None)']):+.4f} "
              f"[95 % paired bootstrap over prompts, 200 resamples: {lo:+.4f}, {hi:+.4f}]")
    from safetensors.numpy import save_file

    save_file({"y": y, "runs": runs.astype(np.int8), **{f"score_{j}": np.asarray(s_, float)
                                                          for j, s_ in enumerate(rows.values())}},
              str(args.out / f"scores-{args.tag}.safetensors"), metadata={str(j): k for j, k in enumerate(rows)})
    print("times (s):", json.dumps({k: round(x, 1) for k, x in times.items() if x is not None}))
    (args.out / f"result-{args.tag}.json").write_text(json.dumps(
        {"dataset": args.dataset, "models": models, "n_runs": int(runs.sum()), "max_length": args.max_length,
         "per_tier_auc": res, "mean_auc": {k: float(np.nanmean(a)) for k, a in res.items()},
         "diff_vs_verifier_ci95": cis, "times_s": times},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
