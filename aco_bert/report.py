"""``aco-bert report`` / ``python -m aco_bert.report``: the nested cross-validated router report (see
:mod:`aco_bert.evaluation.report`).

    aco-bert report --dataset swebench-verified --spec swebench-verified-5tier \\
        --oof_run checkpoints/minilm-cpu --out_dir checkpoints/report-swebench-5tier
    aco-bert report --oof_run checkpoints/minilm-cpu --json report.json     # spec, dataset, prompts: the run's
    aco-bert report merge KFOLD_RUN HOLDOUT_RUN OUT    # one OOF file for a dataset's own train/test split

Every :class:`~aco_bert.evaluation.report.RouterEvalConfig` field is a flag (nested configs as YAML mappings,
``--stacker "{n_rounds: 100}"``), ``--config FILE.yaml`` loads them from a file. Prints the markdown tables (logs
go to stderr); writes ``--json`` (default ``<out_dir>/report.json``), and report.md and PNGs to ``--out_dir``.
"""

from __future__ import annotations

import sys

from aco_bert.config import run_verb
from aco_bert.evaluation.report import RouterEvalConfig, report_json_path, run_router_eval

PROG = "aco-bert report"
DESCRIPTION = ("nested cross-validated report of the decision layer against the zero router, on real outcomes "
               f"(merging a k-fold and a holdout run: `{PROG} merge -h`)")


def report(cfg: RouterEvalConfig) -> int:
    """Run the report, print its markdown, say which files were written."""
    out = run_router_eval(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(out["markdown"])
    json_path = report_json_path(cfg)
    if json_path is not None:
        print(f"\nwrote {json_path}")
    if cfg.out_dir:
        print(f"wrote {cfg.out_dir}/report.md, cost_quality.png, reliability_stacked*.png")
    return 0


def merge(argv: list[str]) -> int:
    """``merge KFOLD_RUN HOLDOUT_RUN OUT [--max_overlap N]`` (see :mod:`aco_bert.evaluation.oof_merge`)."""
    import argparse

    from aco_bert.evaluation.oof_merge import merge_holdout_oof

    ap = argparse.ArgumentParser(prog=f"{PROG} merge", description="one OOF file for a dataset's own train/test split: "
                                 "k-fold rows of the train prompts + the holdout run's test predictions")
    ap.add_argument("kfold_run", help="neural k-fold run on the train split")
    ap.add_argument("holdout_run", help="holdout run: trained on the train split, scored on the test split")
    ap.add_argument("out", help="directory for the merged oof.safetensors + oof_meta.json")
    ap.add_argument("--max_overlap", "--max-overlap", type=int, default=10,
                    help="refuse more test prompts than this that are also in the k-fold run")
    a = ap.parse_args(argv)
    print(merge_holdout_oof(a.kfold_run, a.holdout_run, a.out, max_overlap=a.max_overlap))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return merge(argv[1:])
    return run_verb(report, RouterEvalConfig, argv, prog=PROG, description=DESCRIPTION)

if __name__ == "__main__":
    sys.exit(main())
