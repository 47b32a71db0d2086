"""Model cards: a markdown page per bundle saying what it was trained on, how it was split, and how it did.

Generated from what the bundle already records (manifest, router.yaml) plus, when given, the held-out evaluation
report, so the card can never claim a number the artifacts do not back. The one card writer: the exporter renders
it into every bundle (after the manifest, so parity is on it), and the demo re-renders it with its evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from aco_bert.artifacts import bundle as B


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def render_model_card(bundle_dir: str | Path, *, evaluation: dict[str, Any] | None = None,
                      protocol: str | None = None, plots: dict[str, str] | None = None,
                      extra: dict[str, Any] | None = None) -> str:
    """Markdown card for ``bundle_dir``. ``evaluation`` is an :class:`EvalReport` dict (``to_dict()``),
    ``protocol`` a sentence on the split, ``plots`` name -> path relative to the card."""
    root = Path(bundle_dir)
    man = json.loads((root / B.MANIFEST).read_text()) if (root / B.MANIFEST).exists() else {}
    ry = yaml.safe_load((root / B.ROUTER_YAML).read_text())
    spec, routing, model = ry.get("spec", {}), ry.get("routing", {}), ry.get("model", {})
    info = man
    lines = [f"# Router card: {spec.get('name', root.name)}", ""]
    lines += ["Routes each prompt to the cheapest tier whose calibrated P(success) clears the policy's threshold, "
              "with the spec's safety floors enforced.", ""]
    lines += ["## Data", "", f"- dataset: `{spec.get('dataset') or info.get('dataset', '?')}`",
              f"- encoder: `{model.get('encoder')}`, max_length {model.get('max_length')} "
              f"({model.get('truncation')} truncation"
              + (f", up to {model.get('max_chunks')} windows" if model.get("truncation") == "chunked" else "")
              + f"), pooling {model.get('pooling')}",
              f"- decision layer: {routing.get('mode', '?')} (policy `{routing.get('policy')}`, "
              f"tau {_fmt(routing.get('tau'))}, target {_fmt(routing.get('target'))}, delta {_fmt(routing.get('delta'))})"]
    if routing.get("cascade") and (root / B.VERIFIER_DIR).is_dir():  # a cascade the stack stage fitted
        lines.append(f"- cascade: escalation verifier on the run's trace, accept threshold "
                     f"{_fmt(routing['cascade'].get('accept'))}")
    elif routing.get("cascade"):
        lines.append(f"- escalation (`/v1/escalate`): no verifier in this bundle; the router's prior P(success) of "
                     f"the tier that ran is compared with accept {_fmt(routing['cascade'].get('accept'))}")
    lines += ["", "## Tiers", "", "| tier | model | input $/1M | output $/1M |", "|---:|---|---:|---:|"]
    for i, t in enumerate(spec.get("tiers", []), 1):
        lines.append(f"| {i} | {t.get('model')} | {_fmt(t.get('input_price'))} | {_fmt(t.get('output_price'))} |")
    if spec.get("floors") or spec.get("step_type_min"):
        lines += ["", f"Safety floors (domain → minimum tier): {spec.get('floors') or {}}; "
                      f"step-type minimums: {spec.get('step_type_min') or {}}."]
    fitted = ("Stacker, calibrators" if routing.get("mode") == "stacked" else "Isotonic calibrators of the heads")
    lines += ["", "## Split protocol", "",
              protocol or (f"{fitted}, cost model and thresholds were fitted by the stack stage on out-of-fold "
                           "predictions of the training prompts only; no threshold saw an evaluation prompt.")]
    oof = (info.get("validation") or {}).get("oof") or {}
    if oof.get("mean_auc") is not None:
        lines += ["", f"Out-of-fold mean AUC of the neural heads ({oof.get('n_folds')} folds): {_fmt(oof['mean_auc'])}."]
    if evaluation:
        lines += ["", "## Held-out results", "", "| Policy | Success | Cost/Task | Savings vs frontier |",
                  "|---|---:|---:|---:|"]
        for p in evaluation.get("policies", []):
            if p.get("kind") == "fixed" and not p["name"].startswith(("always-frontier", "zero-router", "cheapest")):
                continue
            lines.append(f"| {p['name']} | {_pct(p.get('success'))} | ${float(p['cost_per_task']):.4f} | "
                         f"{_pct(p.get('savings_vs_frontier'))} |")
    parity = man.get("parity") or {}
    if parity:
        lines += ["", "## Export parity", "", f"On {parity.get('source', '?')}:", "",
                  "| model | max abs dP vs torch | decision agreement | max abs AUC change |", "|---|---:|---:|---:|"]
        scheme = (man.get("int8") or {}).get("scheme")
        for tag in ("fp32", "int8"):
            r = parity.get(tag)
            if isinstance(r, dict):
                label = f"int8 (`{scheme}` scheme)" if tag == "int8" and scheme else tag
                lines.append(f"| {label} | {_fmt(r.get('max_abs_dp'))} | {_pct(r.get('decision_agreement'))} | "
                             f"{_fmt(r.get('max_abs_auc_change'))} |")
        for a in parity.get("int8_attempts") or []:
            if not a.get("passed"):
                lines.append(f"\nint8 scheme `{a.get('scheme')}` rejected: {'; '.join(a.get('failures') or [])}.")
    for name, path in (plots or {}).items():
        lines += ["", f"![{name}]({path})"]
    for k, v in (extra or {}).items():
        lines += ["", f"- {k}: {v}"]
    lines += ["", f"Bundle format `{man.get('format', B.FORMAT)}`; every file's sha256 is in `manifest.json`."]
    return "\n".join(lines) + "\n"


def write_card(bundle_dir: str | Path, **kw: Any) -> Path:
    """Render and write ``model_card.md`` into the bundle, re-hashing it so the bundle still verifies."""
    return B.write_model_card(bundle_dir, text=render_model_card(bundle_dir, **kw))
