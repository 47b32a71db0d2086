"""The main job end to end, on real outcomes: split → train → stack → export → batch-score held-out → report.

    python -m aco_bert.demo [--data-dir DIR] [--dataset swebench-verified] [--out checkpoints/demo]

Protocol (stated in the output and the model card): the prompts are split once by prompt (seeded K-fold, one
fold held out). Everything — the neural heads' out-of-fold predictions, the stacker, calibration, the cost model,
tau and the cascade threshold — is fitted on the training prompts only. The exported bundle then scores the
held-out prompts it has never seen, and the evaluator replays its decisions against their real outcomes next to
always-frontier, the zero router (best fixed model), the oracle and two peer routers (TF-IDF + LR on the texts,
kNN on the pooled embeddings) fitted and tuned on the same training prompts only
(:mod:`aco_bert.evaluation.heldout_peers`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DemoConfig:
    dataset: str = "swebench-verified"
    data_dir: str | None = None
    out: str = "checkpoints/demo"
    train_config: str = "configs/minilm-cpu.yaml"
    spec: str = "swebench-verified-5tier"  # tiers routed among (the heads cover the training config's spec)
    policy: str = "target-success"
    k: int = 5  # outer folds; fold `test_fold` is held out
    test_fold: int = 0
    seed: int = 0
    int8: bool = True
    max_prompts: int | None = None  # smoke runs: a seeded slice of the prompts
    train_overrides: str | None = None  # YAML mapping of extra TrainConfig overrides, e.g. "{num_epochs: 2}"
    peers: str = "tfidf-lr,knn"  # peer routers next to the router on the held-out table ("" = none)


def _config_path(p: str) -> Path:
    q = Path(p)
    return q if q.exists() else REPO / p


def split_outcomes(cfg: DemoConfig, out: Path) -> tuple[Path, Path, dict]:
    """Write the training and held-out prompts as canonical long tables (the bring-your-own-data format)."""

    from aco_bert.data import load_outcomes
    from aco_bert.data.splits import kfold, subsample

    table = load_outcomes(cfg.dataset, data_dir=cfg.data_dir)
    pids = list(dict.fromkeys(table.df["prompt_id"].tolist()))
    pids = [pids[i] for i in subsample(len(pids), cfg.max_prompts, cfg.seed)]  # the rule train/report use
    fold = kfold(pids, cfg.k, cfg.seed)[cfg.test_fold]
    test_ids = {pids[i] for i in fold.test}
    train_ids = {pids[i] for i in fold.train}
    df = table.df.copy()
    for col, values in table.extras.get("prompt_meta", {}).items():  # e.g. difficulty: an auxiliary target
        df[col] = df["prompt_id"].map(values)
    paths = {}
    for name, ids in (("train", train_ids), ("test", test_ids)):
        part = df[df["prompt_id"].isin(ids)]
        part = part.loc[:, [c for c in part.columns if part[c].notna().any()]]
        paths[name] = out / f"{name}.jsonl"
        part.to_json(paths[name], orient="records", lines=True, force_ascii=False)
    info = {"dataset": cfg.dataset, "prompts": len(pids), "train_prompts": len(train_ids),
            "test_prompts": len(test_ids), "models": len(table.models), "skipped": table.report_skipped()}
    return paths["train"], paths["test"], info


def run(cfg: DemoConfig, log=print) -> dict:
    import yaml

    from aco_bert.config import load_config
    from aco_bert.export.build import ExportConfig, export
    from aco_bert.export.model_card import write_card
    from aco_bert.score.scorer import ScoreConfig, score_dataset
    from aco_bert.decision.stage import StackStageConfig, run_stack
    from aco_bert.model.trainer import train
    from aco_bert.model.training_args import TrainConfig

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def lap(name: str, t: float) -> None:
        timings[name] = round(time.perf_counter() - t, 1)
        log(f"[demo] {name}: {timings[name]} s")

    t = time.perf_counter()
    train_file, test_file, info = split_outcomes(cfg, out)
    lap("split", t)

    t = time.perf_counter()
    # The training config's own head spec stays (e.g. heads for all 24 models: every head is a stacker input).
    overrides = {"dataset": str(train_file), "output_dir": str(out / "run"), "data_dir": cfg.data_dir,
                 "final_fit": True, "resume": True, "progress_bar": False}
    overrides.update(yaml.safe_load(cfg.train_overrides) if cfg.train_overrides else {})
    tcfg = load_config(TrainConfig, _config_path(cfg.train_config), overrides)
    if tcfg.kfold < 2:
        raise ValueError(f"{cfg.train_config}: the demo needs k-fold training (kfold >= 2) for out-of-fold stacking")
    protocol = (f"{info['dataset']}: {info['prompts']} prompts split by prompt with seeded {cfg.k}-fold "
                f"(seed {cfg.seed}); fold {cfg.test_fold} ({info['test_prompts']} prompts) held out. Neural heads "
                f"({tcfg.kfold}-fold out-of-fold), stacker, isotonic calibration, cost model, tau and the cascade "
                f"threshold were fitted on the {info['train_prompts']} training prompts only; the exported bundle "
                f"scored the held-out prompts.")
    peer_list = [p.strip() for p in cfg.peers.split(",") if p.strip()]
    if peer_list:
        protocol += (f" Peer routers ({', '.join(peer_list)}) were fitted on the same training prompts, their "
                     f"threshold tau chosen there (inner {tcfg.kfold}-fold, cross-calibrated, cheapest tau within "
                     "1 pt of the frontier's training success), and replayed on the held-out prompts.")
    log(f"[demo] {protocol}")
    result = train(tcfg)
    log(f"[demo] neural heads: out-of-fold mean AUC {result.mean_auc:.3f} on the training prompts")
    lap("train", t)

    t = time.perf_counter()
    stack = run_stack(StackStageConfig(run=str(out / "run"), dataset=str(train_file), spec=cfg.spec,
                                       data_dir=cfg.data_dir, policy=cfg.policy, seed=cfg.seed),
                      log=log)
    lap("stack", t)

    t = time.perf_counter()
    bundle = out / "bundle"
    # int8 ships only if it passes the parity gates; otherwise the bundle is fp32 and the manifest says why
    export(ExportConfig(checkpoint=str(out / "run"), out=str(bundle), int8=cfg.int8, int8_optional=True,
                        data_dir=cfg.data_dir, validation_slice=256, seed=cfg.seed, force=True))
    lap("export", t)

    t = time.perf_counter()
    scored = out / "test_scored.parquet"
    plot = bundle / "cost_quality.png"
    # --cascade: the held-out table gets the bundle's cascade row (every run billed) beside the ex-ante router
    summary = score_dataset(ScoreConfig(bundle=str(bundle), input=str(test_file), output=str(scored),
                                        evaluate=True, cascade=True, fresh=True, progress=False,
                                        plot=str(out / "cost_quality.png"), report_json=str(out / "test_eval.json")),
                            log=log)
    lap("score", t)

    report = summary.evaluation
    peers: dict = {}
    if peer_list:
        import pandas as pd

        from aco_bert.evaluation.heldout_peers import demo_peers
        from aco_bert.evaluation.plots import plot_cost_quality

        t = time.perf_counter()
        peers = demo_peers(str(out / "run"), str(bundle), str(train_file), str(test_file), pd.read_parquet(scored),
                           report, peers=peer_list, k_inner=tcfg.kfold, seed=cfg.seed, log=log)
        plot_cost_quality(report, out / "cost_quality.png")  # the scorer's plot and JSON, now with the peers
        report.save_json(out / "test_eval.json")
        lap("peers", t)
    # the card travels with the bundle, so its plot does too (write_card re-hashes what it adds)
    import shutil

    from aco_bert.artifacts import bundle as B

    shutil.copyfile(out / "cost_quality.png", plot)
    B.update_manifest_entry(bundle, plot.name)  # adds the plot to the manifest (or re-hashes it)
    write_card(bundle, evaluation=report.to_dict(), protocol=protocol, plots={"cost-quality (held-out)": plot.name},
               extra={"neural out-of-fold mean AUC (training prompts)": f"{result.mean_auc:.3f}",
                      **{f"peer {p['name']}: tau chosen on the training prompts": f"{p['tau']:g}"
                         for p in peers.get("peers", [])}})
    timings["total"] = round(time.perf_counter() - t0, 1)
    summary_json = {"config": asdict(cfg), "split": info, "protocol": protocol, "timings_s": timings,
                    "neural_oof_mean_auc": result.mean_auc, "routing": stack["routing"],
                    "bundle": str(bundle), "scored": str(scored), "plot": str(out / "cost_quality.png"),
                    "peers": peers, "evaluation": report.to_dict()}
    (out / "demo_summary.json").write_text(json.dumps(summary_json, indent=1, default=str))
    log("")
    log(report.markdown())
    log("")
    log(f"[demo] protocol: {protocol}")
    log(f"[demo] bundle: {bundle} (model card: {bundle / 'model_card.md'})")
    log(f"[demo] plot: {out / 'cost_quality.png'}")
    log(f"[demo] total wall time: {timings['total']} s  ({timings})")
    return summary_json


def main(argv: list[str] | None = None) -> int:
    from aco_bert.config import run_verb

    def job(cfg: DemoConfig) -> int:
        run(cfg, log=lambda s: print(s, flush=True))
        return 0

    return run_verb(job, DemoConfig, argv, prog="python -m aco_bert.demo", description=__doc__.splitlines()[0],
                    config_file=False)


if __name__ == "__main__":
    sys.exit(main())
