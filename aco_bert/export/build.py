"""Export a trained router and its fitted decision layer to a torch-free bundle: ONNX (+ int8), tokenizer, manifest.

    python -m aco_bert.export --checkpoint checkpoints/<run> --out bundles/<name> [--int8] [--validation_slice N]
                              [--stack DIR] [--data_dir DIR] [--policy threshold --tau 0.6] [--cascade_accept 0.7]

The exporter fits nothing. Its inputs are typed stage contracts (:mod:`aco_bert.artifacts.layout`): the stack
stage's ``stack.json`` (:class:`StackInfo`: the whole spec, the dataset reference, the fitted routing, the head
order; default ``<run>/stack``, written by ``python -m aco_bert.stack --run R [--mode heads]``) with its decision
files, and the run's ``run.json`` (:class:`RunInfo`: the prompts the model trained on). Explicit knob overrides
(``--policy/--tau/--lam/--budget/--cascade_accept``) are applied to the stack's routing; *choosing* a knob
(``--target``) is fitting and belongs to ``stack``.

Steps: load the model with eager attention -> :mod:`aco_bert.export.onnx` (trace the training forward, fuse) ->
tokenizer and the stack's decision files -> ``router.yaml`` -> :mod:`aco_bert.export.parity` on a validation
slice of the stack's dataset (with :mod:`aco_bert.export.int8` schemes when ``--int8``) -> manifest and model card
(:mod:`aco_bert.export.model_card`). The bundle is assembled in a temporary sibling directory and renamed into
place only after every gate passed; a failed gate writes nothing at ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aco_bert.artifacts import bundle as B
from aco_bert.artifacts import layout as L
from aco_bert.artifacts.jsonio import json_safe
from aco_bert.export.errors import ExportError
from aco_bert.export.int8 import INT8_SCHEMES

logger = logging.getLogger("aco_bert.export.build")

__all__ = ["ExportConfig", "ExportError", "export", "main"]


@dataclass
class ExportConfig:
    checkpoint: str  # a training run (final/ or best/ inside) or its saved model folder
    out: str  # the bundle directory to create
    stack: str | None = None  # the stack stage's output (stack.json + decision files); default <run>/stack
    int8: bool = False  # also write model.int8.onnx (dynamic, per-channel), if it passes the int8 gates
    int8_scheme: str | None = None  # all | smooth | ffn_down_fp32; default: try them in that order, ship the first passing
    int8_optional: bool = False  # no int8 scheme passes -> ship fp32 only (recorded) instead of failing the export
    calibration_prompts: int = 64  # prompts (outside the parity slice) that calibrate the "smooth" int8 scheme
    # real prompts (with labels) for the parity/AUC gates; 0 = built-in prompts only (the only way to export
    # without the stack's dataset: an unloadable dataset is an error otherwise)
    validation_slice: int = 256
    data_dir: str | None = None  # overrides the data_dir stored in the stack's dataset reference
    policy: str | None = None  # override the stack's policy: any registered one (threshold, utility, ...)
    tau: float | None = None  # override tau (alone: policy threshold)
    lam: float | None = None  # override the utility policy's lambda
    budget: float | None = None  # default per-task budget of the budget policy
    cascade_accept: float | None = None  # override the cascade's accept threshold, in [0, 1]
    fp32_tol: float = 1e-4  # gate: fp32 vs torch max |dp| (and max |d cost|)
    int8_tol: float = 0.03  # gate: int8 vs torch max |dp|
    int8_auc_tol: float = 0.005  # gate: int8 per-tier AUC change (0.005 = 0.5 pt)
    min_agreement: float = 0.99  # gate: share of fp32 runtime decisions equal to the torch pipeline's
    opset: int = 17
    seed: int = 0
    threads: int | None = None  # torch/ORT threads during the parity checks
    card: str | None = None  # model card text file to ship (default: rendered from the bundle)
    force: bool = False  # replace an existing --out

    def __post_init__(self) -> None:
        if self.int8_scheme is not None and self.int8_scheme not in INT8_SCHEMES:
            raise ValueError(f"int8_scheme {self.int8_scheme!r} not in {INT8_SCHEMES}")
        if self.policy is not None:
            _policy_class(self.policy)  # an unknown name is refused here, naming the registered ones


def _policy_class(name: str) -> type:
    """The registered policy class of ``name`` (importing :mod:`aco_bert.policies` fills the registry)."""
    import aco_bert.policies  # noqa: F401
    from aco_bert.policies.registry import policy_class

    return policy_class(name)


# --- the typed inputs ------------------------------------------------------------------------------------------


def resolve_model_dir(checkpoint: str | Path) -> Path:
    """The saved model of a run (:func:`aco_bert.artifacts.layout.model_dir`), as an :class:`ExportError`."""
    try:
        return L.model_dir(checkpoint)
    except L.ContractError as e:
        raise ExportError(str(e)) from e


def load_stack(cfg: ExportConfig, run_dir: Path) -> tuple[Path, L.StackInfo]:
    """The stack stage's contract; a missing one names the command that writes it."""
    stack_dir = Path(cfg.stack) if cfg.stack else run_dir / L.STACK_DIR
    if not (stack_dir / L.STACK_INFO).is_file():
        raise ExportError(f"{stack_dir}: no {L.STACK_INFO}; fit the decision layer first: "
                          f"run python -m aco_bert.stack --run {run_dir} [--mode heads]"
                          + (f" --out {stack_dir}" if cfg.stack else ""))
    try:
        info = L.StackInfo.load(stack_dir)
    except L.ContractError as e:
        raise ExportError(str(e)) from e
    if Path(info.run).resolve() != run_dir.resolve():
        logger.warning("%s was fitted on the run %s, exporting the model of %s", stack_dir, info.run, run_dir)
    return stack_dir, info


def routing_for(info: L.StackInfo, cfg: ExportConfig, where: str):
    """The stack's :class:`RoutingConfig` with the user's explicit knob overrides (nothing is re-fitted).

    An override of the policy or its knob drops what the stack recorded about *its* choice (``target``,
    ``guaranteed``, ``tau_source``, ``note``): the bundle no longer runs that choice, so its manifest must not
    claim a certified tau or a target it was not chosen for."""
    from aco_bert.policies.config import RoutingConfig

    try:
        routing = RoutingConfig.from_dict(info.routing, where=f"{where}:routing")
        policy = cfg.policy or ("threshold" if cfg.tau is not None else routing.policy)
        missing = [k for k in _policy_class(policy).requires if getattr(cfg, k) is None and getattr(routing, k) is None]
        if missing:
            raise ExportError(f"policy {policy!r} needs --{missing[0]} (the stack's routing has no {missing[0]})")
        routing = routing.with_overrides(policy=policy, tau=cfg.tau, lam=cfg.lam, budget=cfg.budget)
        flags = [f"--{k}" for k in ("policy", "tau", "lam", "budget") if getattr(cfg, k) is not None]
        if flags:
            routing = dataclasses.replace(
                routing, target=None, guaranteed=None, note=f"knob set by export {' '.join(flags)}",
                tau_source="set by `export --tau`" if cfg.tau is not None else None)
        if cfg.cascade_accept is not None:
            routing = dataclasses.replace(routing, cascade=dataclasses.replace(routing.cascade,
                                                                               accept=cfg.cascade_accept))
    except ValueError as e:
        raise ExportError(f"routing overrides: {e}") from e
    return routing


def trained_prompt_ids(run_dir: Path, model_dir: Path) -> set[str]:
    """Prompts the exported weights were fitted on: all of the run's for a k-fold ``final/`` fit (``best/`` saw
    a part of them; its validation slice is drawn at random)."""
    try:
        run = L.RunInfo.load(run_dir)
    except L.ContractError as e:
        raise ExportError(str(e)) from e
    return set(run.prompt_ids) if model_dir.name == L.FINAL_DIR else set()


def load_labelled(info: L.StackInfo, models: list[str], data_dir: str | None, required: bool = True):
    """The stack's dataset as a matrix over ``models`` for the labelled parity slice. Unloadable -> ExportError
    when ``required`` (the built-in prompts alone would let the gates pass on 4 texts; ``--validation_slice 0``
    asks for that explicitly), else None (the int8 smoothing then calibrates on the built-in prompts)."""
    try:
        return info.dataset.load(data_dir).matrix(models)
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
        if not required:
            logger.warning("dataset %r not loadable (%s): int8 calibration on built-in prompts", info.dataset.label, e)
            return None
        raise ExportError(f"the stack's dataset {info.dataset.label} is not loadable ({e}): no labelled "
                          "validation slice for the parity gates; pass --data_dir DIR, or --validation_slice 0 "
                          "to gate on the built-in prompts only") from e


def copy_decision_layer(stack_dir: Path, info: L.StackInfo, spec, model, out: Path) -> None:
    """Copy the stack's decision files into the bundle, checked to load and to fit the spec and the model."""
    from aco_bert.decision.calibration import IsotonicCalibrator
    from aco_bert.decision.cost_model import CostModel

    need = [L.CALIBRATORS, f"{L.COST_MODEL_DIR}/manifest.json"]
    if info.mode == "stacked":
        need.append(f"{L.STACKER_DIR}/manifest.json")
    missing = [n for n in need if not (stack_dir / n).is_file()]
    if missing:
        raise ExportError(f"{stack_dir}: {info.mode} stack without {missing}; re-run python -m aco_bert.stack")
    if info.mode == "stacked":
        from aco_bert.decision.stacker import Stacker

        st = Stacker.load(stack_dir / L.STACKER_DIR)
        if list(st.tiers) != spec.models:
            raise ExportError(f"{stack_dir / L.STACKER_DIR}: stacker tiers {st.tiers} are not the spec's {spec.models}")
        shutil.copytree(stack_dir / L.STACKER_DIR, out / B.STACKER_DIR)
        copy_signals(stack_dir, st, spec, out)
    elif spec.models != list(model.config.models):
        raise ExportError(f"{stack_dir}: heads mode routes among the heads' tiers {model.config.models}, the "
                          f"spec has {spec.models}; a different tier set needs a stacked stack")
    cal = IsotonicCalibrator.load(stack_dir / L.CALIBRATORS)
    if cal.n_tiers != spec.n_tiers:
        raise ExportError(f"{stack_dir / L.CALIBRATORS}: {cal.n_tiers} tiers, the spec has {spec.n_tiers}")
    shutil.copyfile(stack_dir / L.CALIBRATORS, out / B.CALIBRATORS)
    cm = CostModel.load(stack_dir / L.COST_MODEL_DIR)
    no_head = [m for m in spec.models if m not in model.config.models]
    if (cm.layout or {}).get("heads") and (model.cost_head is None or no_head):
        raise ExportError(f"{stack_dir / L.COST_MODEL_DIR} reads the neural cost heads, but "
                          f"{'the model has none' if model.cost_head is None else f'tiers {no_head} have none'}")
    shutil.copytree(stack_dir / L.COST_MODEL_DIR, out / B.COST_MODEL_DIR)
    if (stack_dir / L.VERIFIER_DIR / "manifest.json").is_file():
        shutil.copytree(stack_dir / L.VERIFIER_DIR, out / B.VERIFIER_DIR)


def copy_signals(stack_dir: Path, stacker, spec, out: Path) -> list[str]:
    """Copy the fitted signals the stacker reads (``signals/<name>/``), each checked to load and to give the
    columns the stacker was fitted on; returns their names (listed in the manifest)."""
    from aco_bert.signals.registry import get_signal

    names = list(stacker.layout.get("signals") or {})
    for name in names:
        src = stack_dir / L.SIGNALS_DIR / name
        try:
            sig = get_signal(name).load(src)
        except (OSError, ValueError, KeyError) as e:
            raise ExportError(f"{src}: the stacker reads signal {name!r} but it does not load ({e}); re-run "
                              f"python -m aco_bert.stack") from e
        width = stacker.layout["signals"][name]
        if sig.width != width or sig.tiers != spec.models:
            raise ExportError(f"{src}: {sig.width} columns for tiers {sig.tiers}; the stacker expects {width} for "
                              f"{spec.models}; re-run python -m aco_bert.stack")
        shutil.copytree(src, out / B.SIGNALS_DIR / name)
    return names


def _oof_summary(run_dir: Path) -> dict[str, Any] | None:
    f = run_dir / L.OOF_META
    if not f.exists():
        return None
    m = json.loads(f.read_text())
    return {k: m.get(k) for k in ("per_tier_auc", "mean_auc", "n_folds")}


# --- the export ------------------------------------------------------------------------------------------------


def export(cfg: ExportConfig) -> dict[str, Any]:
    """Run the export; returns the manifest. Raises :class:`ExportError` (and writes nothing at ``cfg.out``) when
    an input is missing or a parity gate fails."""
    import torch
    import yaml

    from aco_bert.export import parity as P
    from aco_bert.export.model_card import render_model_card
    from aco_bert.export.onnx import export_onnx, onnx_output_names, optimize_onnx
    from aco_bert.model.modeling import RouterModel
    from aco_bert.model.tokenization import TOKENIZER_FILES

    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    if cfg.card and not Path(cfg.card).is_file():
        raise ExportError(f"--card {cfg.card}: no such file")
    model_dir = resolve_model_dir(cfg.checkpoint)
    run_dir = L.run_dir_of(model_dir)
    stack_dir, info = load_stack(cfg, run_dir)
    spec = info.router_spec()
    routing = routing_for(info, cfg, str(stack_dir / L.STACK_INFO))
    trained = trained_prompt_ids(run_dir, model_dir)
    model = RouterModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    mc = model.config
    if list(info.head_models) != list(mc.models):
        raise ExportError(f"{stack_dir}: fitted for heads {info.head_models}, the model at {model_dir} has "
                          f"{list(mc.models)}; re-run python -m aco_bert.stack --run {run_dir}")
    # loaded before the ONNX export, so a missing dataset fails fast
    matrix = (load_labelled(info, list(dict.fromkeys(list(mc.models) + spec.models)), cfg.data_dir,
                            required=cfg.validation_slice > 0)
              if cfg.validation_slice > 0 or cfg.int8 else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix=".export-work.", dir=out.parent))
    try:
        logger.info("exporting %s (%s) to ONNX", model_dir, getattr(model.encoder.config, "model_type", "?"))
        t = time.perf_counter()
        export_onnx(model, work / "raw.onnx", cfg.opset)
        fused = optimize_onnx(work / "raw.onnx", tmp / B.MODEL_FP32, model.encoder.config)
        timings = {"onnx_export_s": round(time.perf_counter() - t, 2)}
        n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
        if n_layers and fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0) < n_layers:
            logger.warning("attention fused in %s of %d layers (%s)", fused.get("Attention", 0), n_layers, fused)
        (tmp / B.TOKENIZER_DIR).mkdir()
        for name in TOKENIZER_FILES:
            if (model_dir / name).exists():
                shutil.copyfile(model_dir / name, tmp / B.TOKENIZER_DIR / name)
        if not (tmp / B.TOKENIZER_DIR / "tokenizer.json").exists():
            raise ExportError(f"{model_dir}: no tokenizer.json next to the model")
        copy_decision_layer(stack_dir, info, spec, model, tmp)
        router_yaml = {
            "format": B.FORMAT,
            "spec": spec.to_dict(),
            "routing": json_safe(routing.to_dict()),
            "model": {"max_length": int(mc.max_length), "truncation": mc.truncation, "tail_tokens": mc.tail_tokens,
                      # chunked: the windows the runtime cuts (non-chunked bundles stay byte-identical)
                      **({"max_chunks": int(mc.max_chunks), "chunk_overlap": int(mc.chunk_overlap)}
                         if mc.chunked else {}),
                      "pooling": mc.pooling, "encoder": mc.encoder, "n_tiers": mc.n_tiers,
                      "hidden_size": int(model.hidden_size), "head_models": list(mc.models),
                      "inputs": ["input_ids", "attention_mask"], "outputs": onnx_output_names(model),
                      "opset": cfg.opset},
        }
        (tmp / B.ROUTER_YAML).write_text(yaml.safe_dump(router_yaml, sort_keys=False, allow_unicode=True))
        # parity on a validation slice of the stack's (labelled) dataset
        label = info.dataset.label
        if matrix is not None and cfg.validation_slice > 0:
            vs = P.validation_slice(matrix, min(cfg.validation_slice, matrix.n_prompts), cfg.seed, trained or None,
                                    spec.models, list(mc.models))
            vs.source = f"{label}: {len(vs.texts)} seeded random prompts (untrained first)"
        else:
            vs = P.ValidationSlice(list(P.FALLBACK_PROMPTS), None, source="built-in prompts (no labelled data)")
        B.write_manifest(tmp, {"mode": info.mode})  # provisional, so the parity Router loads a well-formed bundle
        calib_texts = P.calibration_texts(matrix, set(vs.prompt_ids), cfg.calibration_prompts, cfg.seed)
        logger.info("parity on %d prompts (%s)", len(vs.texts), vs.source)
        t = time.perf_counter()
        rep = P.parity_report(model, tmp, vs, cfg, calib_texts)
        if "quantization" in rep and "smoothing" in rep["quantization"]:
            rep["quantization"]["calibration"] = (f"{len(calib_texts)} {label} prompts outside the parity slice"
                                                  if calib_texts else "built-in prompts")
        timings["parity_s"] = round(time.perf_counter() - t, 2)
        if rep["failures"]:
            raise ExportError("export rejected, parity gate(s) failed: " + "; ".join(rep["failures"]), json_safe(rep))
        manifest_info = {
            "mode": info.mode,
            "signals": sorted(p.name for p in (tmp / B.SIGNALS_DIR).glob("*")),  # the stacker's fitted signals
            "spec": spec.name,
            "dataset": label,
            "models": list(spec.models),
            "head_models": list(mc.models),
            "encoder": {"name": mc.encoder, "model_type": getattr(model.encoder.config, "model_type", None),
                        "hidden_size": int(model.hidden_size), "layers": n_layers, "max_length": int(mc.max_length),
                        "attn_implementation": "eager", "fused_ops": fused, "opset": cfg.opset},
            "int8": rep.get("quantization"),
            "routing": json_safe(routing.to_dict()),
            "parity": json_safe(rep),
            "validation": json_safe({"oof": _oof_summary(run_dir),
                                     "slice": {k: rep[k] for k in ("n_prompts", "source", "prompts_in_training")}}),
            "source": {"checkpoint": str(Path(cfg.checkpoint)), "model_dir": str(model_dir), "stack": str(stack_dir)},
            "timings": timings | {"total_s": round(time.perf_counter() - t_start, 2)},
        }
        B.write_manifest(tmp, manifest_info)
        B.write_model_card(tmp, Path(cfg.card).read_text() if cfg.card else render_model_card(tmp))
        manifest = B.verify_bundle(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- CLI -------------------------------------------------------------------------------------------------------


def _run(cfg: ExportConfig) -> int:
    try:
        manifest = export(cfg)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        if e.report:
            print(json.dumps(e.report, indent=2), file=sys.stderr)
        return 1
    par = manifest["parity"]
    summary = {"bundle": cfg.out, "mode": manifest["mode"], "fp32_max_abs_dp": par["fp32"]["max_abs_dp"],
               "fp32_decision_agreement": par["fp32"]["decision_agreement"],
               "fused_ops": manifest["encoder"]["fused_ops"], "timings": manifest["timings"]}
    if "int8" in par:
        summary |= {"int8_scheme": manifest["int8"]["scheme"], "int8_max_abs_dp": par["int8"]["max_abs_dp"],
                    "int8_max_auc_change": par["int8"].get("max_abs_auc_change")}
    if "int8_rejected" in par:
        summary["int8_rejected"] = par["int8_rejected"]
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from aco_bert.config import run_verb

    # WARNING at the root: onnxruntime's optimizer and quantizer log every node at INFO through the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aco_bert.export").setLevel(logging.INFO)
    return run_verb(_run, ExportConfig, argv, prog="python -m aco_bert.export",
                    description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
