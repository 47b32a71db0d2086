"""Routing latency per decision, end to end, for torch eager vs ONNX Runtime fp32 vs ONNX Runtime int8.

    python scripts/bench_latency.py --bundle BUNDLE [--lengths 64 256 512] [--batches 1 32] [--threads 2]

Every backend runs the *same* trained model and the *same* pipeline on real SWE-bench Verified issue texts:
tokenise (head+tail) -> encoder + heads -> handcrafted features -> stacker (stacked bundles) -> calibration ->
expected cost -> floors + policy -> Decision. Only the encoder backend differs: the torch model loaded from the
bundle's source checkpoint (torch eager mode, transformers' default attention, ``torch.inference_mode``), the
bundle's ``model.onnx`` (fp32, fused attention) or ``model.int8.onnx``. Each length L uses texts with at least L
tokens, cut head+tail to exactly L (so tokenising and featurising the *full* text is part of the measured time).

Per-decision latency = wall time of one ``route_batch`` call / batch size; p50 and p99 over calls (batch 32 has
few calls, so its p99 is close to its max). The int8 model runs one prompt per ORT call (batch-invariant
results, see ``Router.infer``); ``ort-int8-batched`` shows batched int8 for comparison. Threads do not
busy-wait (ORT ``allow_spinning=0``, torch ``OMP_WAIT_POLICY=PASSIVE``) unless ``--spin``. The CPU is reported
with its load average: on a shared machine, rerun when it is quiet (``--wait-quiet 600``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def texts_of_length(router, pool: list[str], length: int, n: int) -> list[str]:
    """Real texts whose token count (special tokens included) is >= ``length``."""
    out = []
    for t in pool:
        e = router.tokenizer.encode(t)
        if len(e.ids) >= length:
            out.append(t)
        if len(out) >= n:
            break
    if len(out) < n:  # not enough long texts: repeat the longest ones
        out += [max(pool, key=len)] * (n - len(out))
    return out


class TorchRouter:
    """The runtime's pipeline with the torch model as the encoder backend."""

    def __init__(self, router, model_dir: str, threads: int):
        import torch

        from aco_bert.export.parity import torch_outputs
        from aco_bert.model.modeling import RouterModel

        torch.set_num_threads(threads)
        self.torch, self.router, self.torch_outputs = torch, router, torch_outputs
        self.model = RouterModel.from_pretrained(model_dir).eval()

    def route_batch(self, texts: list[str]):
        with self.torch.inference_mode():
            enc = self.router.encode(texts)
            out = self.torch_outputs(self.model, enc.feed)
            return self.router.decide_from_outputs(texts, out, enc)


def measure(backend, texts: list[str], batch: int, calls: int, warmup: int = 2) -> np.ndarray:
    pos = 0

    def nxt() -> list[str]:
        nonlocal pos
        b = [texts[(pos + i) % len(texts)] for i in range(batch)]
        pos += batch
        return b

    for _ in range(warmup):
        backend.route_batch(nxt())
    out = []
    for _ in range(calls):
        b = nxt()
        t = time.perf_counter()
        backend.route_batch(b)
        out.append((time.perf_counter() - t) * 1000.0 / batch)
    return np.asarray(out)


def stages(router, texts: list[str], reps: int = 50) -> dict[str, float]:
    """p50 ms of each stage for one prompt: tokenise, encoder, features, decision layer (stacker..policy)."""
    from aco_bert.signals.handcrafted import featurize

    t_tok, t_enc, t_feat, t_dec = [], [], [], []
    for i in range(reps):
        txt = [texts[i % len(texts)]]
        a = time.perf_counter()
        enc = router.encode(txt)
        b = time.perf_counter()
        out = router.forward(enc.feed)  # one prompt: no padding, the same call route() makes
        c = time.perf_counter()
        featurize(txt)
        d = time.perf_counter()
        router.decide_from_outputs(txt, out, enc)
        e = time.perf_counter()
        t_tok.append(b - a)
        t_enc.append(c - b)
        t_feat.append(d - c)
        t_dec.append(e - d)
    return {k: float(np.median(v) * 1000) for k, v in
            (("tokenise", t_tok), ("encoder", t_enc), ("features", t_feat), ("decision_layer_incl_features", t_dec))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a bundle exported with --int8 (MiniLM-size for the target)")
    p.add_argument("--model-dir", default=None, help="torch model (default: the bundle manifest's source)")
    p.add_argument("--data-dir", default=os.environ.get("ACO_BERT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--calls", type=int, default=60, help="timed calls at batch 1 (batch 32: calls // 6, >= 5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spin", action="store_true", help="let ORT threads busy-wait (faster only on an idle CPU)")
    p.add_argument("--backends", nargs="+", default=["torch", "ort-fp32", "ort-int8", "ort-int8-batched"])
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--wait-quiet", type=float, default=0.0,
                   help="first wait up to this many seconds for the 1-minute load average to drop below 0.5")
    args = p.parse_args(argv)
    if not args.spin:  # same waiting policy for torch's OpenMP threads as for ORT's (must precede importing torch)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    deadline = time.time() + args.wait_quiet
    while os.getloadavg()[0] >= 0.5 and time.time() < deadline:
        time.sleep(10)

    from aco_bert.runtime import Router

    bundle = Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    model_dir = args.model_dir or manifest["source"]["model_dir"]
    with open(Path(args.data_dir) / "swebench-verified" / "tasks.jsonl") as f:
        pool = [json.loads(line)["problem_statement"] for line in f if line.strip()]
    routers = {
        "ort-fp32": Router.load(bundle, int8=False, threads=args.threads, spin=args.spin),
        "ort-int8": Router.load(bundle, int8=True, threads=args.threads, spin=args.spin),
        "ort-int8-batched": Router.load(bundle, int8=True, threads=args.threads, int8_batching=True, spin=args.spin),
    }
    backends = {k: v for k, v in routers.items() if k in args.backends}
    if "torch" in args.backends:
        backends = {"torch": TorchRouter(Router.load(bundle, int8=False, threads=args.threads), model_dir,
                                         args.threads)} | backends
    load0 = os.getloadavg()
    enc = manifest.get("encoder", {})
    print(f"# bundle {bundle} ({manifest.get('mode')} mode, {enc.get('model_type')} {enc.get('layers')} layers x "
          f"{enc.get('hidden_size')}, {len(manifest.get('models', []))} tiers, int8 scheme "
          f"{(manifest.get('int8') or {}).get('scheme')}); threads {args.threads}, spin {args.spin}; {platform.processor() or platform.machine()}"
          f", {os.cpu_count()} cpus; load average {load0[0]:.2f}")
    rows = []
    for length in args.lengths:
        texts = texts_of_length(routers["ort-fp32"], pool, length, 64)
        for r in list(routers.values()) + ([backends["torch"].router] if "torch" in backends else []):
            r.max_length = length  # the ONNX graph has a dynamic sequence axis; MiniLM allows up to 512
        for batch in args.batches:
            calls = args.calls if batch == 1 else max(5, args.calls // 6)
            base = None
            for name, be in backends.items():
                if name == "ort-int8-batched" and batch == 1:
                    continue
                ms = measure(be, texts, batch, calls)
                row = {"backend": name, "tokens": length, "batch": batch, "calls": calls,
                       "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
                if name == "torch":
                    base = row["p50_ms"]
                row["speedup_vs_torch"] = (base / row["p50_ms"]) if base else None
                rows.append(row)
                print(f"  {name:17s} L={length:4d} B={batch:3d}  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms"
                      + (f"  x{row['speedup_vs_torch']:.1f} vs torch" if base and name != "torch" else ""), flush=True)
    load1 = os.getloadavg()
    fp = {(r["tokens"], r["batch"]): r["p50_ms"] for r in rows if r["backend"] == "ort-fp32"}
    print()
    print("| backend | tokens | batch | p50 ms/decision | p99 ms/decision | speed-up vs torch (p50) | vs ORT fp32 (p50) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        su = f"{r['speedup_vs_torch']:.1f}x" if r["speedup_vs_torch"] and r["backend"] != "torch" else "1.0x" \
            if r["backend"] == "torch" else "-"
        vf = fp.get((r["tokens"], r["batch"]))
        vs_fp = f"{vf / r['p50_ms']:.2f}x" if vf else "-"
        print(f"| {r['backend']} | {r['tokens']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {su} | {vs_fp} |")
    routers["ort-int8"].max_length = 256 if 256 in args.lengths else args.lengths[0]
    st = stages(routers["ort-int8"], texts_of_length(routers["ort-int8"], pool, routers["ort-int8"].max_length, 64))
    print(f"\nint8 stages at {routers['ort-int8'].max_length} tokens, batch 1 (p50 ms): "
          + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (2 cores: above ~1 the numbers are inflated)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "stages_int8": st, "load": [load0, load1],
                                               "bundle": str(bundle), "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
