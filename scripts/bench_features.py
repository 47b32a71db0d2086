"""Speed of aco_bert.signals.handcrafted on real texts: featurize() and detect_domains() over N texts (best of R runs).

    python scripts/bench_features.py [--data-dir ../shared/data] [--n 10000] [--repeat 3]

Texts: SWE-bench Verified issues (long, ~1.7k chars) and LLMRouter's queries (short, mixed tasks), each repeated to
N. Target: 10k SWE-bench-sized texts in well under 2 s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from aco_bert.signals.handcrafted import detect_domains, featurize


def load_texts(data_dir: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    p = data_dir / "swebench-verified" / "tasks.jsonl"
    if p.exists():
        out["swebench-verified issues"] = [json.loads(x)["problem_statement"] for x in p.open() if x.strip()]
    q = data_dir / "dcrouter" / "default_query_train.jsonl"
    if q.exists():
        out["llmrouter queries"] = [str(json.loads(x)["query"]) for x in q.open() if x.strip()]
    if not out:
        sys.exit(f"no texts under {data_dir}: set ACO_BERT_DATA_DIR or pass --data-dir")
    return out


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(wall s, CPU s of this process), best of ``repeat``; CPU time is the steadier one on a shared machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("ACO_BERT_DATA_DIR", "../shared/data"))
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| texts | n | mean chars | featurize wall s | featurize CPU s | texts/s (CPU) | detect_domains CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, base in load_texts(Path(args.data_dir)).items():
        texts = (base * (args.n // len(base) + 1))[: args.n]
        mean_chars = sum(map(len, texts)) / len(texts)
        wall, cpu = best_of(lambda: featurize(texts), args.repeat)
        _, dom = best_of(lambda: [detect_domains(t) for t in texts], args.repeat)
        print(f"| {name} | {len(texts)} | {mean_chars:.0f} | {wall:.3f} | {cpu:.3f} | {len(texts) / cpu:,.0f} "
              f"| {dom:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
