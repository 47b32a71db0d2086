"""Batch-scoring benchmark: prompts/s of a bundle on this CPU, and peak memory as the input grows 10x.

Prompts are real SWE-bench Verified issue texts (from ``$ACO_BERT_DATA_DIR``) cut to random lengths of at most
``--max-tokens`` tokens (the bundle's own tokenizer counts them), repeated to the row counts asked for.

1. **Throughput** (in this process): ``Router.route_batch`` alone at ``--batch-size``, and the whole scorer
   (jsonl in -> chunks -> parquet out) on the same prompts.
2. **Memory**: ``aco_bert.score.scorer.main`` in a fresh subprocess on N and growth*N rows; peak RSS (VmHWM) of each
   child. Chunked streaming should keep it flat.

    python scripts/bench_score.py --bundle BUNDLE [--rows 1000] [--growth 10] [--batch-size 32] [--chunk-size 256]

Targets (issue 7): >= 300 prompts/s for int8 at batch 32 with prompts <= 128 tokens; peak RSS flat (within ~10 %)
as the input grows 10x.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_texts(data_dir: Path) -> list[str]:
    path = data_dir / "swebench-verified" / "tasks.jsonl"
    if not path.exists():
        sys.exit(f"no {path}: set ACO_BERT_DATA_DIR or pass --data-dir")
    with open(path) as f:
        return [json.loads(line)["problem_statement"] for line in f if line.strip()]


def cut_prompts(texts: list[str], tokenizer, n: int, max_tokens: int, seed: int = 0) -> list[str]:
    """``n`` prompts: random windows of real texts, each at most ``max_tokens`` tokens (counted by the bundle's
    tokenizer, special tokens included)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        words = rng.choice(texts).split()
        if not words:
            continue
        k = rng.randint(8, max(8, int(max_tokens * 0.7)))
        start = rng.randint(0, max(0, len(words) - k))
        p = " ".join(words[start:start + k])
        while p and len(tokenizer.encode(p).ids) > max_tokens:
            p = " ".join(p.split()[:-4])
        if p.strip():
            out.append(p)
    return out


def write_jsonl(path: Path, prompts: list[str], n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"p{i}", "prompt": prompts[i % len(prompts)]}) + "\n")


_CHILD = """
import sys
from aco_bert.score.scorer import main
rc = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("VmHWM_KB", int(hwm.split()[1]), file=sys.stderr)
sys.exit(rc)
"""


def child_peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of ``python -m aco_bert.score ARGS`` in a fresh process.

    Peak RSS is the child's own VmHWM (high-water mark of its address space, reset at exec); the rusage maxrss of
    a forked child would also count the pages it briefly shared with this (large) parent before exec."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"aco_bert.score.scorer {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    kb = next(int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("VmHWM_KB"))
    return kb / 1024, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data-dir", default=os.environ.get("ACO_BERT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--rows", type=int, default=1000, help="throughput rows and the smaller memory run")
    ap.add_argument("--growth", type=int, default=10, help="the larger memory run has rows * growth rows")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk-size", type=int, default=256, help="small, so even the smaller memory run spans chunks")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--fp32", action="store_true", help="benchmark the fp32 model instead of int8")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="also time the scorer with this many worker processes (0: skip)")
    a = ap.parse_args(argv)

    from aco_bert.runtime import Router
    from aco_bert.score.scorer import ScoreConfig, score_dataset, score_texts

    int8 = not a.fp32
    router = Router.load(a.bundle, int8=int8)
    variant = "fp32" if a.fp32 else "int8"
    prompts = cut_prompts(real_texts(Path(a.data_dir)), router.tokenizer, a.rows, a.max_tokens)
    rows = []

    load_before = os.getloadavg()[0]
    # warm-up, then route_batch alone on batches in input order
    router.route_batch(prompts[: a.batch_size])
    t0, c0 = time.perf_counter(), time.process_time()
    toks = []
    for i in range(0, len(prompts), a.batch_size):
        toks += [d.n_tokens for d in router.route_batch(prompts[i:i + a.batch_size])]
    rows.append(("route_batch, input order (in memory)", len(prompts), time.perf_counter() - t0,
                 time.process_time() - c0))
    t0, c0 = time.perf_counter(), time.process_time()
    score_texts(router, prompts, batch_size=a.batch_size)
    rows.append(("score_texts, length-sorted batches (in memory)", len(prompts), time.perf_counter() - t0,
                 time.process_time() - c0))

    with tempfile.TemporaryDirectory() as td:
        tdp = Path(td)
        src = tdp / "in.jsonl"
        write_jsonl(src, prompts, len(prompts))
        cfg = ScoreConfig(bundle=a.bundle, input=str(src), output=str(tdp / "out.parquet"), int8=int8,
                          batch_size=a.batch_size, chunk_size=a.chunk_size, progress=False)
        c0 = time.process_time()
        s = score_dataset(cfg, router=router, log=lambda _m: None)
        rows.append(("score_dataset, jsonl file -> parquet file", s.n_rows, s.seconds, time.process_time() - c0))
        if a.workers > 0:  # worker processes, 1 ORT thread each (start-up included; CPU s of this process only)
            cfg_w = dataclasses.replace(cfg, output=str(tdp / "out_w.parquet"), workers=a.workers)
            s = score_dataset(cfg_w, log=lambda _m: None)
            rows.append((f"score_dataset, {a.workers} worker processes x 1 thread (incl. start-up)", s.n_rows,
                         s.seconds, float("nan")))

        mem = []
        if not a.skip_memory:
            for n in (a.rows, a.rows * a.growth):
                inp = tdp / f"in_{n}.jsonl"
                write_jsonl(inp, prompts, n)
                args = ["--bundle", a.bundle, "--input", str(inp), "--output", str(tdp / f"out_{n}.parquet"),
                        "--chunk-size", str(a.chunk_size), "--batch-size", str(a.batch_size), "--no-progress",
                        "--fp32" if a.fp32 else "--int8"]
                rss, wall = child_peak_rss(args)
                mem.append((n, inp.stat().st_size / 2**20, rss, wall))

    load_after = os.getloadavg()[0]
    print(f"\nbundle {a.bundle} ({variant}), batch {a.batch_size}, chunk {a.chunk_size}, prompts <= {a.max_tokens} "
          f"tokens (mean {sum(toks) / len(toks):.0f}, max {max(toks)}), {os.cpu_count()} CPUs, "
          f"1-min load average {load_before:.1f} before / {load_after:.1f} after\n")
    print("| Path | Prompts | Wall s | Prompts/s | CPU s | Prompts per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, wall, cpu in rows:
        cpu_cols = f"{cpu:.2f} | {n / cpu:.0f}" if cpu == cpu else "- | -"  # NaN: the work ran in other processes
        print(f"| {name} | {n} | {wall:.2f} | {n / wall:.0f} | {cpu_cols} |")
    if mem:
        print("\n| `python -m aco_bert.score` rows | Input MiB | Peak RSS MiB | Wall s | Prompts/s (incl. start-up) |")
        print("|---:|---:|---:|---:|---:|")
        for n, mib, rss, wall in mem:
            print(f"| {n} | {mib:.1f} | {rss:.0f} | {wall:.1f} | {n / wall:.0f} |")
        ratio = mem[-1][2] / mem[0][2]
        print(f"\npeak RSS x{ratio:.2f} for x{a.growth} rows "
              f"({'flat' if ratio <= 1.10 else 'NOT flat'}: target <= 1.10)")
    best = max(n / wall for _name, n, wall, _cpu in rows)
    busy = max(load_before, load_after) > (os.cpu_count() or 1)
    print(f"best {best:.0f} prompts/s ({'meets' if best >= 300 else 'BELOW'} the 300 prompts/s target"
          f"{'; the machine was busy (load > CPUs): rerun idle' if busy else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
