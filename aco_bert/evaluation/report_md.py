"""The markdown tables of the nested router report (``aco-bert report`` prints them; report.md holds them).

Rendering only: every number comes from the report dict :func:`aco_bert.evaluation.report.run_router_eval` returns
(the same dict written as report.json), so the printed tables and the JSON can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aco_bert.evaluation.replay import usd


def markdown(out: dict[str, Any]) -> str:
    """The report tables: policies, curve metrics, AUC/calibration, cost model, conformal coverage."""
    ev = out["evaluator"]
    lines = [f"## {out['dataset']} / {out['spec']}: {out['n_prompts']} prompts, {len(out['models'])} tiers, "
             f"nested CV ({out['n_folds']} outer folds)", "",
             "| Policy | Success | Cost/Task | Savings vs frontier | Zero-router hull at that cost | vs hull |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in out["table"]:
        label = f"{r['name']} ({r['model']})" if r.get("model") else r["name"]
        sv = r.get("savings_vs_frontier")
        lines.append(f"| {label} | {100 * r['success']:.1f} % | {usd(r['cost_per_task'])} | "
                     f"{'-' if sv is None or not math.isfinite(sv) else f'{100 * sv:.1f} %'} | "
                     f"{100 * r['hull_success_at_cost']:.1f} % | {r['vs_hull_pts']:+.1f} pt |")
    mets = {k: v for k, v in ev["metrics"].items() if k != "range"}
    if mets:
        lines += ["", "| Curve | AIQ | APGR |", "|---|---:|---:|"]
        for k, v in mets.items():
            lines.append(f"| {k} | {v['aiq']:.4f} | {v['apgr']:.3f} |")
    d = out["diagnostics"]
    lines += ["", "| Source | mean AUC (pooled outer test) | mean ECE | mean ECE (equal mass) | mean Brier |",
              "|---|---:|---:|---:|---:|"]
    for s, rep in d["calibration"].items():
        auc = d["auc"].get(s, {}).get("mean")
        f = lambda k: float(np.nanmean([r[k] for r in rep]))  # noqa: E731
        lines.append(f"| {s} | {'-' if auc is None else f'{auc:.3f}'} | {f('ece'):.3f} | {f('ece_mass'):.3f} | "
                     f"{f('brier'):.4f} |")
    lines += ["", "| Expected cost | MAE (USD) | mean abs log error |", "|---|---:|---:|"]
    for k, v in d["cost_model"].items():
        lines.append(f"| {k} | {usd(v['mae'])} | {v['log_error']:.3f} |")
    if d.get("conformal_coverage"):
        lines += ["", "| LTT target | delta | cal size | population coverage | realised coverage | "
                      "mean test success | mean test cost | certified |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in d["conformal_coverage"]:
            lines.append(f"| {100 * c['target']:.1f} % | {c['delta']} | {c['cal_size']} | "
                         f"{100 * c['population_coverage']:.1f} % | {100 * c['realised_coverage']:.1f} % | "
                         f"{100 * c['mean_test_success']:.1f} % | {usd(c['mean_test_cost'])} | "
                         f"{100 * c['frac_certified']:.0f} % |")
    if d.get("verifier_auc"):
        v = [a for a in d["verifier_auc"] if a is not None]
        lines += ["", f"Cascade verifier (real traces), pooled outer-test AUC per tier: "
                      f"{', '.join(f'{a:.3f}' for a in v)} (mean {np.mean(v):.3f})"]
    return "\n".join(lines)
