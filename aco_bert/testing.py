"""Build a real, tiny router bundle for tests: train -> stack -> export, on a real SWE-bench slice, in ~30 s.

Every test that needs a bundle (runtime, server, batch scorer) should use the same real artifact rather than a
fake: ``build_test_bundle(out_dir, data_dir)`` or the session fixture ``tiny_bundle`` in tests/conftest.py.

The model is ``configs/tiny-test.yaml`` (a 2-layer, 32-wide random DistilBERT on the MiniLM tokenizer) trained in
3-fold mode + final fit on 64 SWE-bench Verified prompts; the stacking stage below is the library calls of
:mod:`aco_bert.stacking`, :mod:`aco_bert.calibration`, :mod:`aco_bert.cost_model`, :mod:`aco_bert.cascade` and
:mod:`aco_bert.routing` with small settings, writing the layout :mod:`aco_bert.export` reads from ``--stack``.
The numbers it produces are meaningless as routing quality (64 prompts, a random encoder); they are real as
artifacts: every file, format and code path is the one a production bundle uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny-test.yaml"


def train_test_run(run_dir: str | Path, data_dir: str | Path, config: str | Path = TINY_CONFIG, kfold: int = 3,
                   **overrides: Any) -> Path:
    """Tiny k-fold run with a final fit (reused when ``run_dir`` already holds a finished run)."""
    from aco_bert.config import load_config
    from aco_bert.train import train
    from aco_bert.training_args import TrainConfig

    run_dir = Path(run_dir)
    opts = {"output_dir": str(run_dir), "data_dir": str(data_dir), "kfold": kfold, "final_fit": True,
            "resume": True, "progress_bar": False, "num_threads": 1} | overrides
    cfg = load_config(TrainConfig, config, opts)
    train(cfg)
    return run_dir


def stack_test_run(run_dir: str | Path, data_dir: str | Path, out: str | Path | None = None, seed: int = 0) -> Path:
    """Fit the decision layer on the run's out-of-fold outputs -> ``<run>/stack`` (the exporter's --stack layout):
    ``stacker/``, ``calibrator.json``, ``cost_model/``, ``verifier/``, ``routing.json``."""
    from aco_bert.cascade import Verifier, VerifierConfig, trace_arrays
    from aco_bert.cost_model import CostModel, CostModelConfig
    from aco_bert.data.registry import load_outcomes
    from aco_bert.features import featurize
    from aco_bert.policies import RoutingContext
    from aco_bert.routing import TargetSuccess
    from aco_bert.spec import RouterSpec
    from aco_bert.stacking import StackerConfig, StackInputs, fit_stack, load_oof

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "stack"
    meta = json.loads((run_dir / "oof_meta.json").read_text())
    models, pids = list(meta["models"]), list(meta["prompt_ids"])
    oof, _, _ = load_oof(run_dir, prompt_ids=pids, models=models)
    m = load_outcomes(meta["dataset"], data_dir=data_dir).matrix(models)
    pos = {p: i for i, p in enumerate(m.prompt_ids)}
    m = m.subset([pos[p] for p in pids])
    feats = featurize(m.prompts)
    inputs = StackInputs(logits=oof.logits, embeddings=oof.embeddings, features=feats, fold=oof.fold)
    labels = np.asarray(m.success, float)
    scfg = StackerConfig(pca_dim=4, n_rounds=30, inner_k=3, min_labels=10, nthread=1, seed=seed)
    fs = fit_stack(inputs, labels, scfg, tiers=models, prompt_ids=pids)
    out.mkdir(parents=True, exist_ok=True)
    fs.stacker.save(out / "stacker")
    fs.calibrator.save(out / "calibrator.json")
    held = fs.calibrator.transform(fs.inner_oof)
    cm = CostModel.fit(m.cost, features=feats, embeddings=oof.embeddings,
                       cfg=CostModelConfig(pca_dim=4, n_rounds=30, min_rows=10, nthread=1, seed=seed), tiers=models)
    cm.save(out / "cost_model")
    ver = Verifier.fit(labels, trace_arrays(m), features=feats, prior=held,
                       cfg=VerifierConfig(n_rounds=30, nthread=1, seed=seed), tiers=models)
    ver.save(out / "verifier")
    spec = RouterSpec.load(meta["spec"]) if meta.get("spec") else None
    frontier = spec.models.index(spec.frontier) if spec and spec.frontier in spec.models else len(models) - 1
    target = float(np.nanmean(labels[:, frontier]) - 0.05)
    ctx = RoutingContext(held, cm.predict(n=len(pids), features=feats, embeddings=oof.embeddings))
    ts = TargetSuccess(target, delta=0.2).fit(ctx, labels, np.asarray(m.cost, float))
    routing = {"policy": "target-success", "tau": float(ts.tau), "target": target, "delta": 0.2,
               "guaranteed": bool(ts.guaranteed), "tau_source": "learn-then-test on the stacker's inner cross-fit",
               "cascade": {"accept": 0.5}}
    (out / "routing.json").write_text(json.dumps(routing, indent=2))
    return out


def build_test_bundle(out_dir: str | Path, data_dir: str | Path, *, mode: str = "stacked", int8: bool = True,
                      work_dir: str | Path | None = None, validation_slice: int = 256, force: bool = True) -> Path:
    """A real bundle at ``out_dir`` (``mode`` "stacked" or "heads"); the training run and stacking artifacts live
    in ``work_dir`` (default ``<out_dir>.work``) and are reused by later calls with the same ``work_dir``."""
    from aco_bert.export import ExportConfig, export

    if mode not in ("stacked", "heads"):
        raise ValueError(f"mode must be 'stacked' or 'heads', got {mode!r}")
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir.with_name(out_dir.name + ".work")
    run = work / "run"
    if not (run / "result.json").exists() or not (run / "final" / "model.safetensors").exists():
        train_test_run(run, data_dir)
    stack = run / "stack"
    if mode == "stacked" and not (stack / "routing.json").exists():
        stack_test_run(run, data_dir, stack)
    export(ExportConfig(checkpoint=str(run), out=str(out_dir), int8=int8, data_dir=str(data_dir),
                        stack=str(stack) if mode == "stacked" else None, heads_only=mode == "heads",
                        validation_slice=validation_slice, force=force, threads=1))
    return out_dir
