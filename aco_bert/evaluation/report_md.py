"""The markdown tables of the nested router report (``aco-bert report`` prints them; report.md holds them).

Rendering only: every number comes from the report dict :func:`aco_bert.evaluation.report.run_router_eval` returns
(the same dict written as report.json), so the printed tables and the JSON can never disagree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aco_bert.evaluation.metrics.cost_metric import cost_header, fmt_cost


def _pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)


def sources_table(out: dict[str, Any]) -> list[str]:
    """The router-vs-peers table: one row per (source, curve) with AUC, AIQ, APGR, CPT(80 %) and the selected
    policies' success / cost / savings, from ``out["per_source"]`` (see
    :mod:`aco_bert.evaluation.report_summary`). Ablation sources are left out (not routers)."""
    per = out.get("per_source") or {}
    if not per:
        return []
    cm = out.get("cost_metric", "usd")
    usd = lambda v: fmt_cost(v, cm)  # noqa: E731
    lines = ["", f"Routers and peer reference routers (zero-router hull AIQ {_num(out.get('hull_aiq'), '.4f')}, "
                 f"oracle AIQ {_num(out.get('oracle_aiq'), '.4f')}):", "",
             "| Source | Curve | mean AUC | AIQ | AIQ - hull [95 % CI] | APGR | CPT(80%) | "
             "[match] success / cost / savings | [savings] success / cost / savings |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, rep in per.items():
        if rep["kind"] == "ablation":
            continue
        label = f"{s} (peer)" if rep["kind"] == "peer" else s
        for fam, c in rep["curves"].items():
            cells = []
            for rule in ("match", "savings"):
                p = rep["selected"].get(f"{fam} [{rule}]")
                cells.append("-" if p is None else
                             f"{_pct(p['success'])} / {usd(p['cost_per_task'])} / {_pct(p['savings_vs_frontier'])}")
            cpt = ("-" if c["aiq"] is None else "never") if c["cpt80"] is None else \
                f"{usd(c['cpt80'])} ({_pct(c['cpt80_frac'])})"
            gap = c.get("aiq_vs_hull")
            gap_s = "-" if not gap else f"{gap['diff']:+.4f} [{gap['lo']:+.4f}, {gap['hi']:+.4f}]"
            lines.append(f"| {label} | {fam} | {_num(c['auc'], '.3f')} | {_num(c['aiq'], '.4f')} | {gap_s} | "
                         f"{_num(c['apgr'], '.3f')} | {cpt} | {cells[0]} | {cells[1]} |")
    if out.get("peer_notes"):
        lines += [""] + [f"Note: {n}" for n in out["peer_notes"]]
    return lines


def markdown(out: dict[str, Any]) -> str:
    """The report tables: policies, routers vs peers, curve metrics, AUC/calibration, cost model, conformal
    coverage."""
    ev = out["evaluator"]
    cm = out.get("cost_metric", "usd")
    usd = lambda v: fmt_cost(v, cm)  # noqa: E731
    lines = [f"## {out['dataset']} / {out['spec']}: {out['n_prompts']} prompts, {len(out['models'])} tiers, "
             f"nested CV ({out['n_folds']} outer folds)", ""]
    if cm != "usd":
        lines += ["Cost metric: strong-call share (RouteLLM's: 1 per call to the frontier tier, 0 otherwise).", ""]
    if out.get("zero_router_rule"):
        lines += [f"Prompts: {out['zero_router_rule']}.", ""]
    lines += [f"| Policy | Success | {cost_header(cm)} | Savings vs frontier | Zero-router hull at that cost | "
              "vs hull |", "|---|---:|---:|---:|---:|---:|"]
    for r in out["table"]:
        label = f"{r['name']} ({r['model']})" if r.get("model") else r["name"]
        sv = r.get("savings_vs_frontier")
        lines.append(f"| {label} | {100 * r['success']:.1f} % | {usd(r['cost_per_task'])} | "
                     f"{'-' if sv is None or not math.isfinite(sv) else f'{100 * sv:.1f} %'} | "
                     f"{100 * r['hull_success_at_cost']:.1f} % | {r['vs_hull_pts']:+.1f} pt |")
    lines += sources_table(out)
    mets = {k: v for k, v in ev["metrics"].items() if k != "range"}
    if mets:
        lines += ["", "| Curve | AIQ | APGR | CPT(50%) | CPT(80%) |", "|---|---:|---:|---:|---:|"]
        for k, v in mets.items():
            cpt = ["never" if v.get(f"cpt_{x}") is None else
                   f"{usd(v[f'cpt_{x}'])} ({_pct(v.get(f'cpt_{x}_frac'))})" for x in (50, 80)]
            lines.append(f"| {k} | {v['aiq']:.4f} | {v['apgr']:.3f} | {cpt[0]} | {cpt[1]} |")
    d = out["diagnostics"]
    lines += ["", "| Source | mean AUC (pooled outer test) | mean ECE | mean ECE (equal mass) | mean Brier |",
              "|---|---:|---:|---:|---:|"]
    for s, rep in d["calibration"].items():
        auc = d["auc"].get(s, {}).get("mean")
        f = lambda k: float(np.nanmean([r[k] for r in rep]))  # noqa: E731
        lines.append(f"| {s} | {'-' if auc is None else f'{auc:.3f}'} | {f('ece'):.3f} | {f('ece_mass'):.3f} | "
                     f"{f('brier'):.4f} |")
    lines += ["", f"| Expected cost | MAE ({'USD' if cm == 'usd' else 'share'}) | mean abs log error |",
              "|---|---:|---:|"]
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
    if d.get("cascade"):
        lines += cascade_table(out)
    return "\n".join(lines)


def cascade_table(out: dict[str, Any]) -> list[str]:
    """Per tier: the verifier's pooled outer-test AUC (run first; after every cheaper tier ran, i.e. with answer
    agreement) next to the ex-ante sources' AUC for the same tier, and the signals the verifier read."""
    d = out["diagnostics"]
    c = d["cascade"]
    ex = {s: d["auc"][s]["per_tier"] for s in ("neural-heads", "stacked") if s in d["auc"]}
    fmt = lambda a: "-" if a is None else f"{a:.3f}"  # noqa: E731
    lines = ["", f"Cascade verifier (signals: {', '.join(c['signals']) or 'none'}), pooled outer-test AUC per tier:", "",
             "| Tier | verifier, run first | verifier, after every cheaper tier | "
             + " | ".join(f"ex-ante {s}" for s in ex) + " |", "|---|---:|---:|" + "---:|" * len(ex)]
    first, below = c["verifier_auc_first"]["per_tier"], c["verifier_auc_after_cheaper"]["per_tier"]
    for t, name in enumerate(out["models"]):
        lines.append(f"| {name} | {fmt(first[t])} | {fmt(below[t])} | "
                     + " | ".join(fmt(v[t]) for v in ex.values()) + " |")
    lines.append(f"| mean | {fmt(c['verifier_auc_first']['mean'])} | {fmt(c['verifier_auc_after_cheaper']['mean'])} | "
                 + " | ".join(fmt(d["auc"][s]["mean"]) for s in ex) + " |")
    return lines
