"""The router bundle: one directory holding everything a torch-free CPU process needs to route, and a manifest.

Why a manifest with a sha256 per file: a bundle is copied between machines and mounted into servers; a truncated
copy, a stale file left from an older export or a hand-edited threshold must be caught on load, not show up as
silently different routing. :func:`verify_bundle` checks every listed file and raises :class:`BundleError` naming
the file and what is wrong. Everything in a bundle is ONNX, JSON, YAML, XGBoost JSON/UBJ or tokenizer JSON/text:
no pickle anywhere.

Layout (``aco_bert.bundle/1``)::

    manifest.json          format, sha256 + size of every other file, package versions, parity + validation metrics
    router.yaml            spec (tiers, models, prices, floors, step-type minimums) + routing (mode, policy, tau, ...)
                           + model (max_length, truncation, ONNX inputs/outputs)
    model.onnx             encoder + pooling + heads, fp32, ORT transformer-optimised (fused attention)
    model.int8.onnx        optional: dynamic int8 quantisation with per-channel weights
    tokenizer/             tokenizer.json (+ vocab / config files)
    calibrators.json       per-tier isotonic maps (aco_bert.decision.calibration)
    cost_model/            per-tier expected cost (aco_bert.decision.cost_model: manifest.json + XGBoost JSON)
    stacker/               optional -> "stacked" mode (aco_bert.decision.stacker: manifest.json + XGBoost JSON per tier)
    signals/<name>/        the fitted signals the stacker reads (aco_bert.signals: manifest.json [+ arrays.safetensors])
    verifier/              optional: escalation verifier (aco_bert.decision.verifier)
    model_card.md          human-readable card (:mod:`aco_bert.export.model_card`)

This module imports only the standard library and yaml, so the runtime and the exporter share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from aco_bert.artifacts.jsonio import FormatError, read_record
from aco_bert.types import BundleError

FORMAT = "aco_bert.bundle/1"  # a file-format version, not a module path
MANIFEST = "manifest.json"
ROUTER_YAML = "router.yaml"
MODEL_FP32 = "model.onnx"
MODEL_INT8 = "model.int8.onnx"
TOKENIZER_DIR = "tokenizer"
CALIBRATORS = "calibrators.json"
COST_MODEL_DIR = "cost_model"
STACKER_DIR = "stacker"
VERIFIER_DIR = "verifier"
SIGNALS_DIR = "signals"
MODEL_CARD = "model_card.md"
REQUIRED = (ROUTER_YAML, MODEL_FP32, f"{TOKENIZER_DIR}/tokenizer.json", CALIBRATORS, f"{COST_MODEL_DIR}/manifest.json")
# Packages whose versions a bundle records (read from installed metadata; nothing is imported): name -> the
# distributions that provide it (xgboost ships as xgboost or xgboost-cpu, onnxruntime also as onnxruntime-gpu).
VERSIONED_PACKAGES = {"aco_bert": ("aco_bert", "aco-bert"), "numpy": ("numpy",), "onnx": ("onnx",),
                      "onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tokenizers": ("tokenizers",),
                      "xgboost": ("xgboost", "xgboost-cpu"), "torch": ("torch",), "transformers": ("transformers",),
                      "scikit-learn": ("scikit-learn",), "pyyaml": ("PyYAML", "pyyaml")}
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a bundle (None when not installed), plus Python."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, dists in VERSIONED_PACKAGES.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _git_commit() -> str | None:
    """The repository commit the exporter ran from (None outside a git checkout)."""
    import subprocess

    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                           timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def list_files(bundle_dir: str | Path) -> list[str]:
    """Every regular file under the bundle except the manifest, as sorted POSIX relative paths."""
    root = Path(bundle_dir)
    out = []
    for p in root.rglob("*"):
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST:
            out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _dump_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
    os.replace(tmp, path)


def write_manifest(bundle_dir: str | Path, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hash every file of the bundle and write ``manifest.json``; ``info`` (mode, parity, validation, ...) is
    stored alongside. Returns the manifest."""
    root = Path(bundle_dir)
    files = {rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in list_files(root)}
    missing = [r for r in REQUIRED if r not in files]
    if missing:
        raise BundleError(f"bundle {root}: cannot write a manifest, required file(s) missing: {missing}")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
        "git_commit": _git_commit(),
        **(info or {}),
        "files": files,
    }
    _dump_json(root / MANIFEST, manifest)
    return manifest


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"bundle {root}: not a directory")
    try:
        manifest = read_record(root / MANIFEST, FORMAT, "not a bundle, or an interrupted export")
    except FormatError as e:
        raise BundleError(f"bundle {e}") from e
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise BundleError(f"bundle {root}: {MANIFEST} lists no files")
    return manifest


def verify_bundle(bundle_dir: str | Path, check_hashes: bool = True) -> dict[str, Any]:
    """Check the manifest against the files on disk; return the manifest or raise :class:`BundleError`.

    Every listed file must exist, stay inside the bundle, and (``check_hashes``) match its size and sha256; the
    files the runtime cannot do without must be listed. Files present but not listed are reported too: a bundle
    is written whole by the exporter, so a stray file means someone changed it by hand.
    """
    root = Path(bundle_dir)
    manifest = read_manifest(root)
    files: dict[str, Any] = manifest["files"]
    problems: list[str] = []
    for rel in REQUIRED:
        if rel not in files:
            problems.append(f"required file {rel} is not in the manifest")
    for rel, entry in files.items():
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            problems.append(f"{rel}: path escapes the bundle")
            continue
        f = root / p
        if not f.is_file():
            problems.append(f"{rel}: missing")
            continue
        if not isinstance(entry, dict) or "sha256" not in entry:
            problems.append(f"{rel}: manifest entry has no sha256")
            continue
        if not check_hashes:
            continue
        size = f.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            problems.append(f"{rel}: size {size} != {entry['bytes']} in the manifest (modified or truncated)")
            continue
        if sha256_file(f) != entry["sha256"]:
            problems.append(f"{rel}: sha256 mismatch (modified since export)")
    extra = [rel for rel in list_files(root) if rel not in files]
    if extra:
        problems.append(f"file(s) not in the manifest: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    if problems:
        raise BundleError(f"bundle {root} failed verification: " + "; ".join(problems))
    return manifest


def update_manifest_entry(bundle_dir: str | Path, rel: str) -> dict[str, Any]:
    """Re-hash one file (e.g. a regenerated model card) in an otherwise verified bundle."""
    root = Path(bundle_dir)
    manifest = read_manifest(root)
    f = root / rel
    if not f.is_file():
        raise BundleError(f"bundle {root}: {rel} does not exist")
    manifest["files"][rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    _dump_json(root / MANIFEST, manifest)
    return manifest


def write_model_card(bundle_dir: str | Path, text: str) -> Path:
    """Write ``model_card.md`` (rendered by :func:`aco_bert.export.model_card.render_model_card`, or a user's
    file) and, when the bundle already has a manifest, re-hash the card so the bundle still verifies."""
    root = Path(bundle_dir)
    card = root / MODEL_CARD
    card.write_text(text)
    if (root / MANIFEST).exists():
        update_manifest_entry(root, MODEL_CARD)
    return card


def load_router_yaml(bundle_dir: str | Path) -> dict[str, Any]:
    import yaml

    f = Path(bundle_dir) / ROUTER_YAML
    if not f.is_file():
        raise BundleError(f"bundle {bundle_dir}: missing {ROUTER_YAML}")
    try:
        data = yaml.safe_load(f.read_text())
    except yaml.YAMLError as e:
        raise BundleError(f"bundle {bundle_dir}: {ROUTER_YAML} is not valid YAML: {e}") from e
    if not isinstance(data, dict) or not {"spec", "routing", "model"} <= set(data):
        raise BundleError(f"bundle {bundle_dir}: {ROUTER_YAML} needs top-level keys spec, routing, model")
    return data
