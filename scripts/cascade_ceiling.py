"""The ceiling of agreement cascades on a table's real answers, with no learning at all.

Rule family: run k cheap tiers (k = 2, 3); keep the last one's answer when all k extracted answers agree
(:mod:`aco_bert.verify.extractors`), else run the frontier. Every k-subset of the tiers below the frontier is
tried *on the evaluated prompts themselves* (selection on test: an optimistic upper bound of the family), and the
table prints the best success at each savings level. If even this bound cannot reach the frontier's success at
a savings level, no verifier built on answer agreement can, which is what the cascade's must-show asks.

    python scripts/cascade_ceiling.py --dataset routerbench --split test
    python scripts/cascade_ceiling.py --dataset mmlu-pro --run checkpoints/mmlu-oof
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from aco_bert.data import load_outcomes
    from aco_bert.data.registry import default_spec_name
    from aco_bert.spec import RouterSpec
    from aco_bert.verify.features import ResponseReader

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="routerbench")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default=None, help="evaluate only prompts of this split (RouterBench: test)")
    ap.add_argument("--run", default=None, help="evaluate only the prompts of this neural run (run.json)")
    ap.add_argument("--savings", default="0.2,0.3,0.4,0.5")
    args = ap.parse_args(argv)

    opts = {"with_responses": True} if args.dataset == "mmlu-pro" else {}
    spec = RouterSpec.load(default_spec_name(args.dataset))
    m = load_outcomes(args.dataset, args.data_dir, **opts).matrix(spec.models)
    if args.split:
        m = m.subset(np.flatnonzero(m.meta["split"].astype(str).to_numpy() == args.split))
    if args.run:
        ids = json.loads((Path(args.run) / "run.json").read_text())["prompt_ids"]
        pos = {p: i for i, p in enumerate(m.prompt_ids)}
        m = m.subset([pos[p] for p in ids if p in pos])
    if m.responses is None:
        raise SystemExit(f"{args.dataset}: no responses to agree on")
    reader = ResponseReader()
    parsed = reader.parse(m.responses)
    y, c = m.success, m.cost
    fc = len(spec.models) - 1 if spec.frontier is None else spec.models.index(spec.frontier)
    f_s, f_c = float(np.nanmean(y[:, fc])), float(np.nanmean(c[:, fc]))
    n = m.n_prompts

    def agree(a: int, b: int) -> np.ndarray:
        ans = parsed.answers
        return np.array([ans[i, a] is not None and ans[i, b] is not None
                         and reader.extractor.agree(ans[i, a], ans[i, b]) >= 0.99 for i in range(n)])

    pair = {(a, b): agree(a, b) for a, b in itertools.combinations(range(fc), 2)}
    rows = []
    for k in (2, 3):
        for sub in itertools.combinations(range(fc), k):
            ok = np.all([pair[(sub[0], s)] for s in sub[1:]], axis=0)
            s = np.where(ok, y[:, sub[-1]], y[:, fc])
            cost = np.nansum(c[:, list(sub)], axis=1) + np.where(ok, 0.0, c[:, fc])
            rows.append((k, float(np.nanmean(s)), 1 - float(np.nanmean(cost)) / f_c, sub, float(ok.mean())))
    print(f"{args.dataset}: {n} prompts; frontier {spec.models[fc]} {100 * f_s:.1f} % at ${f_c:.4g}/task\n")
    print("| cheap tiers run | savings >= | best success (selected on these prompts) | tiers | agree rate |")
    print("|---:|---:|---:|---|---:|")
    for k in (2, 3):
        for sv in [float(x) for x in args.savings.split(",")]:
            ok = [r for r in rows if r[0] == k and r[2] >= sv]
            if not ok:
                print(f"| {k} | {100 * sv:.0f} % | - | - | - |")
                continue
            b = max(ok, key=lambda r: r[1])
            print(f"| {k} | {100 * sv:.0f} % | {100 * b[1]:.1f} % (savings {100 * b[2]:.0f} %) | "
                  f"{' + '.join(spec.models[t] for t in b[3])} | {100 * b[4]:.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
