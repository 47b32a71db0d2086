"""The per-source summary of the nested report: for every probability source and every curve it was swept on,
the pooled outer-test AUC and the curve's AIQ / APGR / CPT(50 %) / CPT(80 %), next to the zero-router hull's and
the oracle's AIQ, plus the selected policies' realised point.

Why a summary of its own: the full report.json holds every curve point and every policy row; a reader comparing
the neural router with its peers (kNN, MLP, MF, TF-IDF) wants one line per source and curve, all numbers taken
from the same pooled outer-test replay (nothing recomputed here, only picked out of the report dict).

Curves per source: ``threshold`` and ``utility`` (the sweeps ``"<source> <family>"``), and ``cascade`` for the
source the cascade runs on (``"stacked + cascade"``). Selected policies: ``"<family> [<rule>]"`` (rules ``match``
and ``savings``), ``cascade [<rule>]``, and ``target-success (LTT)`` for the stacked source.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

FAMILIES = ("threshold", "utility")
CASCADE_SOURCE = "stacked"  # the source the cascade's first tier and the Learn-then-Test policy run on
METRIC_KEYS = {"aiq": "aiq", "apgr": "apgr", "cpt50": "cpt_50", "cpt80": "cpt_80", "cpt50_frac": "cpt_50_frac",
               "cpt80_frac": "cpt_80_frac"}
POINT_KEYS = ("success", "cost_per_task", "savings_vs_frontier", "vs_hull_pts")


def source_kind(name: str, peers: Sequence[str]) -> str:
    """``peer`` (a reference router), ``ablation`` (outcome+noise, not a router) or ``router`` (neural/stacked)."""
    if name in peers:
        return "peer"
    return "ablation" if name.startswith("ablation") else "router"


def _curve_names(source: str) -> dict[str, str]:
    names = {fam: f"{source} {fam}" for fam in FAMILIES}
    if source == CASCADE_SOURCE:
        names["cascade"] = f"{source} + cascade"
    return names


def _policy_names(source: str, rules: Sequence[str]) -> dict[str, str]:
    names = {f"{fam} [{r}]": f"{source} {fam} [{r}]" for fam in FAMILIES for r in rules}
    if source == CASCADE_SOURCE:
        names |= {f"cascade [{r}]": f"{source} + cascade [{r}]" for r in rules}
        names["target-success (LTT)"] = f"{source} target-success (LTT)"
    return names


def summarize_sources(sources: Sequence[str], peers: Sequence[str], metrics: Mapping[str, Any],
                      table: Sequence[Mapping[str, Any]], auc: Mapping[str, Mapping[str, Any]],
                      rules: Sequence[str] = ("match", "savings"), aiq_ci: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
    """``{"hull_aiq", "oracle_aiq", "per_source": {source: {"kind", "auc", "curves": {curve: {"auc", "aiq",
    "apgr", "cpt50", "cpt80", "cpt50_frac", "cpt80_frac"}}, "selected": {policy: {success, cost_per_task,
    savings_vs_frontier, vs_hull_pts}}}}}`` from the evaluator's ``metrics`` (curve name -> curve metrics), the
    report ``table`` rows and the per-source ``auc`` diagnostics. A number that does not exist (curve metrics
    skipped, CPT never reached) is None. ``aiq_ci`` (:func:`aco_bert.evaluation.bootstrap.aiq_bootstrap`) adds
    each curve's ``aiq_vs_hull`` {diff, lo, hi, p_le_0}."""
    rows = {r["name"]: r for r in table}

    def aiq_of(curve: str) -> float | None:
        return (metrics.get(curve) or {}).get("aiq")

    per: dict[str, Any] = {}
    for s in sources:
        a = (auc.get(s) or {}).get("mean")
        curves = {}
        for fam, cname in _curve_names(s).items():
            if fam == "cascade" and cname not in metrics:
                continue  # no cascade in this report
            m = metrics.get(cname) or {}
            curves[fam] = {"auc": a, **{k: m.get(v) for k, v in METRIC_KEYS.items()}}
            if aiq_ci and f"{cname} - zero-router" in aiq_ci:
                curves[fam]["aiq_vs_hull"] = aiq_ci[f"{cname} - zero-router"]
        selected = {label: {k: rows[name].get(k) for k in POINT_KEYS}
                    for label, name in _policy_names(s, rules).items() if name in rows}
        per[s] = {"kind": source_kind(s, peers), "auc": a, "curves": curves, "selected": selected}
    return {"hull_aiq": aiq_of("zero-router"), "oracle_aiq": aiq_of("oracle"), "per_source": per}
