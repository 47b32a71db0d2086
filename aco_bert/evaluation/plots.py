"""Cost-quality plots of an evaluation report: fixed models, the zero-router hull, the oracle, learned curves
(:func:`plot_cost_quality` for ``aco-bert evaluate`` / ``score``, :func:`plot_nested_curves` for ``aco-bert report``).

Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it works headless and inside
servers and tests without touching the caller's matplotlib state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from aco_bert.evaluation.replay import EvalReport


def plot_cost_quality(report: EvalReport, path: str | Path, *, log_x: bool = False, title: str | None = None,
                      label_models: bool = True) -> Path:
    """Write a PNG: success (%) vs cost per task (USD); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fixed = [p for p in report.policies if p.kind == "fixed"]
    ax.scatter([p.cost_per_task for p in fixed], [100 * p.success for p in fixed], s=22, color="0.45",
               zorder=3, label="fixed models")
    if label_models:
        for p in fixed:
            ax.annotate(p.model, (p.cost_per_task, 100 * p.success), fontsize=6, color="0.35",
                        xytext=(3, 2), textcoords="offset points")
    hx, hy = report.curves["zero-router"].hull()
    ax.plot(hx, 100 * hy, color="0.2", lw=1.5, label="zero-router hull (mix two fixed models)", zorder=2)
    if "oracle" in report.curves:
        ox, oy = report.curves["oracle"].hull()
        ax.plot(ox, 100 * oy, color="tab:green", lw=1, ls="--", label="oracle curve (actual outcomes)")
    marks = {"oracle": ("*", "tab:green", 160), "random": ("x", "tab:red", 50),
             "always-frontier": ("D", "tab:purple", 50), "zero-router": ("s", "tab:blue", 50)}
    for name, (marker, color, size) in marks.items():
        p = report.get(name)
        lab = f"{name} ({p.model})" if p.model else name
        ax.scatter([p.cost_per_task], [100 * p.success], marker=marker, color=color, s=size, zorder=4, label=lab)
    for name, c in report.curves.items():
        if c.kind != "learned":
            continue
        (line,) = ax.plot(c.cost, 100 * c.success, lw=0, marker=".", ms=4, alpha=0.6)
        cx, cy = c.hull()
        ax.plot(cx, 100 * cy, lw=1.8, color=line.get_color(), label=f"{name} (hull)")
    for p in report.policies:
        if p.kind == "learned":
            ax.scatter([p.cost_per_task], [100 * p.success], marker="^", s=60, zorder=5, label=p.name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("cost per task (USD" + (", log scale)" if log_x else ")"))
    ax.set_ylabel("success (%)")
    ax.set_title(title or f"{report.dataset}: cost vs success ({report.n_prompts} prompts, "
                          f"{len(report.models)} models)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_nested_curves(report: EvalReport, path: str | Path, title: str = "", peers: Sequence[str] = ()) -> Path:
    """The nested router report's cost-quality PNG: full range and a zoom on the frontier region (linear cost
    axis, so hulls are straight).

    Fixed models, the zero-router hull, each learned family's hull (its pooled nested-CV test points), the nested
    selected operating points, and the oracle. Curves of the ``peers`` sources (reference routers) are dashed and
    their selected points left out (they are in the report's tables), so the neural router stays readable.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 6), dpi=110)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    fixed = [p for p in report.policies if p.kind == "fixed"]
    front = report.get("always-frontier")
    learned_curves = {k: c for k, c in report.curves.items() if c.kind == "learned" and not k.startswith("ablation")}
    colors = {}
    cmap = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan"]
    for i, k in enumerate(learned_curves):
        colors[k] = cmap[i % len(cmap)]

    def is_peer(name: str) -> bool:
        return any(name.startswith(f"{p} ") for p in peers)
    for ai, ax in enumerate(axes):
        ax.scatter([p.cost_per_task for p in fixed], [100 * p.success for p in fixed], s=16, color="0.5", zorder=3,
                   label="fixed models" if ai == 0 else None)
        hx, hy = report.curves["zero-router"].hull()
        ax.plot(hx, 100 * hy, color="black", lw=2.2, label="zero-router hull" if ai == 0 else None, zorder=2)
        for k, c in learned_curves.items():
            cx, cy = c.hull()
            ax.plot(cx, 100 * cy, color=colors[k], lw=0.9 if is_peer(k) else 1.2, ls="--" if is_peer(k) else "-",
                    alpha=0.9, label=f"{k} (hull)" if ai == 0 else None)
        if ai == 0:
            o = report.get("oracle")
            ax.scatter([o.cost_per_task], [100 * o.success], marker="*", s=150, color="tab:green", label="oracle")
        for p in report.policies:
            if (p.kind != "learned" or not math.isfinite(p.cost_per_task) or p.name.startswith("ablation")
                    or is_peer(p.name)):
                continue
            ax.scatter([p.cost_per_task], [100 * p.success], marker="^" if "[match]" in p.name else "v", s=36,
                       edgecolor="black", linewidth=0.5, zorder=5, label=p.name if ai == 1 else None)
        ax.scatter([front.cost_per_task], [100 * front.success], marker="D", s=50, color="tab:purple", zorder=6,
                   label=f"always-frontier ({front.model})" if ai == 0 else None)
        ax.axvline(0.63 * front.cost_per_task, color="0.6", ls=":", lw=1)
        ax.axhline(100 * (front.success - 0.01), color="0.6", ls=":", lw=1)
        ax.set_xlabel("cost per task (USD)")
        ax.set_ylabel("success (%)")
        ax.grid(True, alpha=0.3)
    axes[0].set_title(title or report.dataset, fontsize=9)
    axes[1].set_xlim(0.3 * front.cost_per_task, 1.15 * front.cost_per_task)
    axes[1].set_ylim(100 * front.success - 7, 100 * front.success + 2.5)
    axes[1].set_title("zoom: frontier region (dotted: 37 % savings, frontier - 1 pt)", fontsize=9)
    axes[0].legend(fontsize=6, loc="lower right")
    axes[1].legend(fontsize=5.5, loc="lower right", ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
