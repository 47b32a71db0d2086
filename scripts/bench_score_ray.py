"""Batch scoring, local vs Ray Data: prompts/s of ``score_dataset`` on the same real prompts, same bundle.

Prompts are real SWE-bench Verified issue texts cut to at most ``--max-tokens`` tokens (as ``bench_score.py``),
repeated to ``--rows`` and written as one jsonl file. Each engine scores it to parquet; every output must be
byte-identical to the first (the benchmark fails otherwise). Wall time includes each run's worker/actor start-up
and bundle load (the cost a real run pays once per worker); the Ray instance itself is started once, before.

    nice -n 5 python scripts/bench_score_ray.py --bundle checkpoints/demo/bundle [--rows 4000]
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_score import cut_prompts, real_texts, write_jsonl  # the sibling script's prompt cutting


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data-dir", default=os.environ.get("ACO_BERT_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--unique", type=int, default=1000, help="distinct prompts, repeated to --rows")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--block-chunks", type=int, default=2, help="--ray-block-chunks")
    ap.add_argument("--max-tokens", type=int, default=128)
    a = ap.parse_args(argv)

    import ray

    from aco_bert.runtime import Router
    from aco_bert.score.scorer import ScoreConfig, score_dataset

    cpus = os.cpu_count() or 1
    router = Router.load(a.bundle)
    prompts = cut_prompts(real_texts(Path(a.data_dir)), router.tokenizer, a.unique, a.max_tokens)
    del router
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    runs = [("local, in process (ORT default threads)", {}),
            (f"local, --workers {cpus} (1 thread each)", {"workers": cpus}),
            (f"ray, 1 actor x {cpus} threads", {"engine": "ray", "ray_actors": 1, "threads": cpus}),
            (f"ray, {cpus} actors x 1 thread", {"engine": "ray", "ray_actors": cpus, "threads": 1})]
    rows, first = [], None
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "in.jsonl"
        write_jsonl(src, prompts, a.rows)
        base = ScoreConfig(bundle=a.bundle, input=str(src), output="x.parquet", batch_size=a.batch_size,
                           chunk_size=a.chunk_size, progress=False, ray_block_chunks=a.block_chunks)
        for k, (name, kw) in enumerate(runs):
            out = Path(td) / f"out{k}.parquet"
            s = score_dataset(dataclasses.replace(base, output=str(out), **kw), log=lambda _m: None)
            same = first is None or filecmp.cmp(first, out, shallow=False)
            first = first or out
            rows.append((name, s.n_rows, s.seconds, same))
    ray.shutdown()
    load_after = os.getloadavg()[0]
    print(f"\nbundle {a.bundle} (int8), {a.rows} prompts ({a.unique} distinct, <= {a.max_tokens} tokens), batch "
          f"{a.batch_size}, chunk {a.chunk_size}, {a.block_chunks} chunks per Ray task, {cpus} CPUs, 1-min load "
          f"{load_before:.1f} before / {load_after:.1f} after; Ray instance start {ray_start:.1f} s (not counted)\n")
    print("| Engine | Prompts | Wall s (incl. worker start + bundle load) | Prompts/s | Output = first run's bytes |")
    print("|---|---:|---:|---:|---|")
    for name, n, wall, same in rows:
        print(f"| {name} | {n} | {wall:.1f} | {n / wall:.0f} | {'yes' if same else 'NO'} |")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
