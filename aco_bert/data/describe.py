"""What a routing dataset offers before any router is trained: ``python -m aco_bert.data.describe --dataset NAME``.

For each model: outcomes, success rate and mean cost, tiers ordered by mean cost (or by a router spec). Then the
headroom analysis: for every prompt, the cheapest tier that succeeds on it, so "k = 1: 60 %" means 60 % of prompts
need nothing more than the cheapest tier, and "none" is the share no tier solves. A router can at best reach the
oracle (1 - none) at the cost of always picking that cheapest succeeding tier; always-frontier is the usual
baseline. Skipped rows and unknown costs are reported, since a silent gap would bias every number here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from aco_bert.data.schema import OutcomeMatrix, OutcomeTable


@dataclass
class TierShares:
    """Cheapest-succeeding-tier analysis over ``models`` (tier order)."""

    models: list[str]
    n_prompts: int
    first_success: np.ndarray  # (P,) 0-based tier of the cheapest success, -1 when no tier succeeds
    threshold: float

    @property
    def shares(self) -> np.ndarray:
        """(T,) share of prompts whose cheapest succeeding tier is k (0-based)."""
        return np.bincount(self.first_success[self.first_success >= 0], minlength=len(self.models)) / self.n_prompts

    @property
    def none_share(self) -> float:
        return float(np.mean(self.first_success < 0))

    @property
    def oracle_success(self) -> float:
        return 1.0 - self.none_share


def tier_order(matrix: OutcomeMatrix) -> list[str]:
    """Models by mean cost per prompt, cheapest first; equal cost: higher success first; no known cost: last."""
    mean = np.array([np.nanmean(c) if np.isfinite(c).any() else np.inf for c in matrix.cost.T])
    succ = np.array([np.nanmean(s) if np.isfinite(s).any() else -np.inf for s in matrix.success.T])
    order = np.lexsort((np.arange(len(mean)), -succ, np.round(mean, 12)))
    return [matrix.models[i] for i in order]


def tier_shares(matrix: OutcomeMatrix, models: Sequence[str], threshold: float = 0.5) -> TierShares:
    """For each prompt, the first tier in ``models`` whose success is >= ``threshold`` (graded scores) .

    A missing outcome (NaN) never counts as a success.
    """
    idx = [matrix.models.index(m) for m in models]
    s = matrix.success[:, idx]
    ok = np.nan_to_num(s, nan=-1.0) >= threshold
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), -1)
    return TierShares(list(models), matrix.n_prompts, first, threshold)


def response_counts(matrix: OutcomeMatrix) -> dict[str, int]:
    """Model -> how many of its outcomes carry a response text (all zero when the table has none)."""
    if matrix.responses is None:
        return {mod: 0 for mod in matrix.models}
    has = matrix.responses != None  # noqa: E711 - elementwise on an object array
    return {mod: int(n) for mod, n in zip(matrix.models, has.sum(axis=0))}


def describe_responses(matrix: OutcomeMatrix) -> str:
    """One line: whether the cascade's verifier can read model outputs here (responses are post-run traces)."""
    counts = response_counts(matrix)
    total = sum(counts.values())
    if not total:
        return ("responses: none (no model output texts; a cascade can use trace counters only; mmlu-pro has "
                "them with --with-responses)")
    n_out = int(np.isfinite(matrix.success).sum())
    line = (f"responses (model output texts, read by the cascade's verifier only): {total} of {n_out} outcomes, "
            f"{sum(1 for v in counts.values() if v)} of {len(counts)} models")
    if len(set(counts.values())) > 1:
        line += "; per model: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    return line


def input_lines(table: OutcomeTable, m: OutcomeMatrix) -> list[str]:
    """What the loader derived (cost from tokens / turns) and what it read but did not use (ignored columns,
    turns without a per-turn rule, models without any cost), so no gap in the numbers below is silent."""
    from aco_bert.data.costs import HOW_TO, cost_lines

    out = cost_lines(table)
    ign = table.extras.get("ignored_columns")
    if ign:
        out.append(f"columns ignored (not canonical, varying within a prompt): {list(ign)}")
    df = table.df
    idle = df["turns"].notna() & df["cost_usd"].isna() if "turns" in df.columns else None
    if idle is not None and idle.any():
        out.append(f"turns: {int(idle.sum())} outcomes have turns but no cost; turns are not used for cost without "
                   "a stated per-turn rule: --dataset_options \"{cost: {input_tokens_per_turn: N, "
                   "output_tokens_per_turn: M}}\"")
    none = [mod for j, mod in enumerate(m.models) if not np.isfinite(m.cost[:, j]).any()]
    if none:
        out.append(f"no cost at all for {len(none)} models {none[:8]}{' ...' if len(none) > 8 else ''}: {HOW_TO}")
    return out


def _fmt_usd(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"${x:.6f}" if x < 0.01 else f"${x:.4f}"


def describe(table: OutcomeTable, models: Sequence[str] | None = None, threshold: float = 0.5) -> str:
    """A plain-text report of ``table``; ``models`` fixes the tiers and their order (default: all, by mean cost)."""
    m = table.matrix()
    tiers = list(models) if models is not None else tier_order(m)
    unknown = [t for t in tiers if t not in m.models]
    if unknown:
        raise ValueError(f"models not in {table.name!r}: {unknown}")
    n_out = int(np.isfinite(m.success).sum())
    lines = [f"{table.name}: {m.n_prompts} prompts x {len(m.models)} models ({n_out} outcomes, "
             f"{m.n_prompts * len(m.models) - n_out} prompt x model cells missing)"]
    lines.append(table.report_skipped())
    lines += input_lines(table, m)
    cu = table.extras.get("cost_unknown") or {}
    if cu:
        why = table.extras.get("cost_unknown_reason", {})
        lines.append(f"cost unknown (kept, cost NaN) for {sum(cu.values())} outcomes of {len(cu)} models:")
        for k in sorted(cu):
            lines.append(f"  {k}: {cu[k]}" + (f" ({why[k]})" if k in why else ""))
    est = table.extras.get("cost_estimate")
    if est:
        lines.append(f"cost is ESTIMATED: input tokens = len(text)/{est['chars_per_token']:g}, output tokens = "
                     f"{est['assumed_output_tokens']:g} per prompt")
    der = table.extras.get("cost_derivation")
    if der and der.get("estimated"):
        lines.append(f"cost is ESTIMATED: input = {der['input']}; output = {der['output']}; "
                     f"{der['formula']} ({der['chars_per_token']:g} chars per token)")
    for key in ("merged_rows", "disambiguated_sample_ids", "duplicate_prompt_texts", "cross_split_merges",
                "category_unmatched", "category_ambiguous", "test_train_repeats_with_different_scores"):
        if table.extras.get(key):
            lines.append(f"{key.replace('_', ' ')}: {table.extras[key]}")
    if "category" in m.meta and m.meta["category"].notna().any():
        lines.append(f"categories: {int(m.meta['category'].nunique())}")
    lines.append(describe_responses(m))

    sh = tier_shares(m, tiers, threshold)
    cols = [m.models.index(t) for t in tiers]
    lines.append("")
    lines.append(f"{'tier':>4}  {'model':<44} {'outcomes':>8} {'success':>8} {'mean cost':>11} {'cheapest ok':>11}"
                 f" {'cum.':>7}")
    cum = 0.0
    for k, (t, j) in enumerate(zip(tiers, cols)):
        s = m.success[:, j]
        c = m.cost[:, j]
        mc = float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")
        cum += sh.shares[k]
        lines.append(f"{k + 1:>4}  {t[:44]:<44} {int(np.isfinite(s).sum()):>8} {np.nanmean(s):>8.1%} "
                     f"{_fmt_usd(mc):>11} {sh.shares[k]:>11.1%} {cum:>7.1%}")
    lines.append(f"{'':>4}  {'none (no tier succeeds)':<44} {'':>8} {'':>8} {'':>11} {sh.none_share:>11.1%}")
    lines.append("")
    lines.append(f"oracle success (some tier succeeds, score >= {threshold:g}): {sh.oracle_success:.1%}; "
                 f"cheapest tier alone solves {sh.shares[0]:.1%} of prompts "
                 f"({sh.shares[0] / max(sh.oracle_success, 1e-12):.1%} of the solvable ones)")
    return "\n".join(lines)


@dataclass
class DescribeConfig:
    """The flags of ``aco-bert data describe`` (generated from these fields, see :func:`aco_bert.config.run_verb`)."""

    dataset: str  # a registry name or a path to a generic outcomes file
    data_dir: str | None = None  # folder holding the shared data (default $ACO_BERT_DATA_DIR)
    spec: str | None = None  # router spec name/path fixing tiers and order; 'default' = the dataset's shipped spec
    split: str | None = None  # train / test / all, for datasets with a published split
    threshold: float = 0.5  # graded scores >= this count as success
    with_responses: bool = False  # load the model output texts where the loader makes them optional (mmlu-pro)
    clip_success: bool = False  # generic files: clip success outside [0, 1] (counted as skipped) instead of refusing
    dataset_options: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {cost: {prices: litellm}}
    price_provider: str | None = None  # cost from tokens: LiteLLM provider choosing between keys of different prices
    name: str | None = None  # the dataset name printed (default: the registry name, or a file's stem)


PROG = "aco-bert data describe"


def run(cfg: DescribeConfig) -> int:
    """Print the report of ``cfg.dataset``; a dataset or spec that cannot be loaded is one line and exit code 2."""
    from aco_bert.data.registry import default_spec_name, load_outcomes
    from aco_bert.spec import RouterSpec

    from aco_bert.data.costs import with_price_provider

    kw: dict[str, Any] = with_price_provider(cfg.dataset_options, cfg.price_provider)
    if cfg.split:
        kw["split"] = cfg.split
    if cfg.with_responses:
        kw["with_responses"] = True
    if cfg.clip_success:
        kw["clip_success"] = True
    spec = None
    if cfg.spec:
        try:
            spec = RouterSpec.load(default_spec_name(cfg.dataset) if cfg.spec == "default" else cfg.spec)
        except (ValueError, KeyError, OSError) as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
    try:
        table = load_outcomes(cfg.dataset, data_dir=cfg.data_dir, spec=spec, **kw)
    except TypeError as e:  # e.g. --split for a dataset without a published split
        print(f"{PROG}: {cfg.dataset}: {e}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as e:  # an unknown dataset, a missing or malformed file
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if cfg.name:
        table.name = cfg.name
    if spec is not None:
        print(f"spec {spec.name}: {spec.n_tiers} tiers, frontier {spec.frontier or '(best success)'}")
    print(describe(table, spec.models if spec is not None else None, cfg.threshold))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from aco_bert.config import run_verb

    return run_verb(run, DescribeConfig, None if argv is None else list(argv), PROG, __doc__.split("\n")[0],
                    config_file=False)


if __name__ == "__main__":
    sys.exit(main())
