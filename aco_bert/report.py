"""``aco-bert report`` / ``python -m aco_bert.report``: the nested cross-validated router report (see
:mod:`aco_bert.evaluation.report`).

    aco-bert report --dataset swebench-verified --spec swebench-verified-5tier \\
        --oof_run checkpoints/minilm-cpu --out_dir checkpoints/report-swebench-5tier
    aco-bert report --oof_run checkpoints/minilm-cpu --json report.json     # spec, dataset, prompts: the run's
    aco-bert report merge --kfold_run A --holdout_run B --out C   # one OOF file for a dataset's own split

Every :class:`~aco_bert.evaluation.report.RouterEvalConfig` field is a flag (nested configs as YAML mappings,
``--stacker "{n_rounds: 100}"``), ``--config FILE.yaml`` loads them from a file. Prints the markdown tables (logs
go to stderr); writes ``--json`` (default ``<out_dir>/report.json``), and report.md and PNGs to ``--out_dir``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

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


@dataclass
class MergeConfig:
    """``aco-bert report merge``: one OOF file for a dataset's own train/test split."""

    kfold_run: str  # neural k-fold run on the train split
    holdout_run: str  # holdout run: trained on the train split, scored on the test split
    out: str  # directory for the merged oof.safetensors + oof_meta.json
    max_overlap: int = 10  # refuse more test prompts than this that are also in the k-fold run


def merge(cfg: MergeConfig) -> int:
    """k-fold rows of the train prompts + the holdout run's test predictions (:mod:`aco_bert.evaluation.oof_merge`)."""
    from aco_bert.evaluation.oof_merge import merge_holdout_oof

    print(merge_holdout_oof(cfg.kfold_run, cfg.holdout_run, cfg.out, max_overlap=cfg.max_overlap))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return run_verb(merge, MergeConfig, argv[1:], prog=f"{PROG} merge", description=MergeConfig.__doc__,
                        config_file=False)
    return run_verb(report, RouterEvalConfig, argv, prog=PROG, description=DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
