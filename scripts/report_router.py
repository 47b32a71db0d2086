"""Nested-CV report of the decision layer (stacker, calibration, cost model, policies, cascade) vs the zero router.

    python scripts/report_router.py --dataset swebench-verified --spec swebench-verified-5tier \
        --oof_run checkpoints/minilm-cpu --out_dir checkpoints/report-swebench-5tier
    python scripts/report_router.py --config configs/report.yaml --stacker '{n_rounds: 100}'

For a dataset's own train/test split with neural inputs, first merge a k-fold run on the train split with a
holdout run (trained on train, scored on test), then report with ``--split given``:

    python scripts/report_router.py merge checkpoints/rb-trainkfold checkpoints/rb-holdout checkpoints/rb-merged

Every RouterEvalConfig field is a ``--key value`` override (nested configs as YAML mappings). Prints the markdown
tables; writes report.json, report.md, cost_quality.png and reliability PNGs to ``--out_dir``.
"""

from __future__ import annotations

import sys

from aco_bert.config import load_config, parse_overrides
from aco_bert.evaluation.report import RouterEvalConfig, run_router_eval


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    if argv and argv[0] == "merge":  # merge KFOLD_RUN HOLDOUT_RUN OUT (a dataset's own train/test split)
        from aco_bert.evaluation.report import merge_holdout_oof

        print(merge_holdout_oof(*argv[1:4]))
        return 0
    ov = parse_overrides(argv)
    path = ov.pop("config", None)
    cfg = load_config(RouterEvalConfig, path, ov)
    out = run_router_eval(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(out["markdown"])
    if cfg.out_dir:
        print(f"\nwrote {cfg.out_dir}/report.json, report.md, cost_quality.png, reliability_stacked*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
