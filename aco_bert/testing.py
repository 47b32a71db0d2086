"""Build a real, tiny router bundle for tests: train -> stack -> export, on a real SWE-bench slice, in ~30 s.

Every test that needs a bundle (runtime, server, batch scorer) should use the same real artifact rather than a
fake: ``build_test_bundle(out_dir, data_dir)`` or the session fixture ``tiny_bundle`` in tests/conftest.py.

The model is ``configs/tiny-test.yaml`` (a 2-layer, 32-wide random DistilBERT on the MiniLM tokenizer) trained in
3-fold mode + final fit on 64 SWE-bench Verified prompts; the stack stage is :func:`aco_bert.decision.stage.run_stack`
(``python -m aco_bert.stack``, ``stacked`` or ``heads`` mode) with small XGBoost settings, writing the stack dir
(``stack.json`` + decision files) the exporter reads.
The numbers it produces are meaningless as routing quality (64 prompts, a random encoder); they are real as
artifacts: every file, format and code path is the one a production bundle uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aco_bert.artifacts.layout import FINAL_DIR, MODEL_WEIGHTS, RESULT, RUN_INFO, STACK_DIR, STACK_INFO

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny-test.yaml"


def train_test_run(run_dir: str | Path, data_dir: str | Path, config: str | Path = TINY_CONFIG, kfold: int = 3,
                   **overrides: Any) -> Path:
    """Tiny k-fold run with a final fit (reused when ``run_dir`` already holds a finished run)."""
    from aco_bert.config import load_config
    from aco_bert.model.trainer import train
    from aco_bert.model.training_args import TrainConfig

    run_dir = Path(run_dir)
    opts = {"output_dir": str(run_dir), "data_dir": str(data_dir), "kfold": kfold, "final_fit": True,
            "resume": True, "progress_bar": False, "num_threads": 1} | overrides
    cfg = load_config(TrainConfig, config, opts)
    train(cfg)
    return run_dir


def stack_test_run(run_dir: str | Path, data_dir: str | Path, out: str | Path | None = None, seed: int = 0,
                   mode: str = "stacked", signals: list[str] | None = None) -> Path:
    """The real stack stage (:func:`aco_bert.decision.stage.run_stack`) with small XGBoost settings -> ``out``
    (default ``<run>/stack``): ``stack.json``, ``calibrators.json``, ``cost_model/``, and in ``stacked`` mode
    ``stacker/`` and ``verifier/``. ``signals``: the stacker's inputs with the base margin and the guarantee on
    (e.g. ``["heads", "pca", "features", "tfidf", "knn"]``, fitted into ``signals/``); None: the stacker as it was
    before signals existed (heads, PCA, features; no base margin, no guarantee)."""
    from aco_bert.decision.stacker import LEGACY_SIGNALS
    from aco_bert.decision.verifier import VerifierConfig
    from aco_bert.decision.cost_model import CostModelConfig
    from aco_bert.decision.stage import StackStageConfig, run_stack
    from aco_bert.decision.stacker import StackerConfig

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / STACK_DIR
    # heads mode: the stage's defaults (the knobs heads bundles were always built with); stacked: looser, faster
    knobs = dict(within=0.05, delta=0.2, k=3) if mode == "stacked" else {}
    cfg = StackStageConfig(
        run=str(run_dir), mode=mode, data_dir=str(data_dir), out=str(out), seed=seed, **knobs,
        stacker=StackerConfig(pca_dim=4, n_rounds=30, inner_k=3, min_labels=10, nthread=1, seed=seed,
                              **(dict(signals=list(LEGACY_SIGNALS), base_margin=False, guarantee=False)
                                 if signals is None else dict(signals=list(signals)))),
        cost=CostModelConfig(pca_dim=4, n_rounds=30, min_rows=10, nthread=1, seed=seed),
        verifier=VerifierConfig(n_rounds=30, nthread=1, seed=seed))
    run_stack(cfg, log=lambda *_: None)
    return out


def build_test_bundle(out_dir: str | Path, data_dir: str | Path, *, mode: str = "stacked", int8: bool = True,
                      work_dir: str | Path | None = None, validation_slice: int = 256, force: bool = True,
                      signals: list[str] | None = None) -> Path:
    """A real bundle at ``out_dir`` (``mode`` "stacked" or "heads": the stack stage's mode); the training run and
    the stack dirs (``<run>/stack``, ``<run>/stack-heads``, ``<run>/stack-<signals>``) live in ``work_dir``
    (default ``<out_dir>.work``) and are reused by later calls with the same ``work_dir``. ``signals``: see
    :func:`stack_test_run` (stacked mode only)."""
    from aco_bert.export.build import ExportConfig, export

    if mode not in ("stacked", "heads"):
        raise ValueError(f"mode must be 'stacked' or 'heads', got {mode!r}")
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir.with_name(out_dir.name + ".work")
    run = work / "run"
    if not all((run / f).exists() for f in (RESULT, RUN_INFO, f"{FINAL_DIR}/{MODEL_WEIGHTS}")):
        train_test_run(run, data_dir)
    stack = run / (STACK_DIR if mode == "stacked" else f"{STACK_DIR}-heads")
    if signals is not None:
        stack = run / f"{STACK_DIR}-{'-'.join(signals)}"
    if not (stack / STACK_INFO).exists():
        stack_test_run(run, data_dir, stack, mode=mode, signals=signals)
    export(ExportConfig(checkpoint=str(run), out=str(out_dir), stack=str(stack), int8=int8, data_dir=str(data_dir),
                        validation_slice=validation_slice, force=force, threads=1))
    return out_dir
