"""Per-row cost derived from token counts or agent turns, for outcome tables that carry no ``cost_usd``.

Cost is half of every routing decision, so a table with tokens (or turns) but no cost is filled in here, and
*never silently*: :func:`derive_costs` records in ``table.extras["derived_cost"]`` which rows and models it filled,
from what (tokens, or turns x the per-turn token counts the user stated), with which prices (the spec tiers'
``input_price``/``output_price``, a per-1M JSON, or the LiteLLM table) and which key each model resolved to; a
model with tokens but no resolvable price keeps NaN and is listed with the reason. :func:`cost_lines` prints that
record (describe, evaluate, report); :func:`require_costs` stops a verb on models without any cost with a message
saying how to derive it, instead of "Mean of empty slice".

Rules, in the order they apply to a row whose ``cost_usd`` is missing:

1. ``input_tokens`` and ``output_tokens`` both known: ``cost = in x input price + out x output price``;
2. else ``turns`` known: the same with ``turns x input_tokens_per_turn`` / ``turns x output_tokens_per_turn``, which
   the user states (:class:`CostRule`); turns without that assumption are refused (no default is guessed);
3. else the cost stays NaN (counted as ``not derivable``).

Prices per model (``CostRule.prices``): ``"spec"`` the spec tier's prices (USD per 1M); ``"litellm"`` the LiteLLM
table (:meth:`~aco_bert.data.prices.PriceTable.from_litellm`, resolution rules and ``price_provider`` there); a path
to a per-1M JSON (``{model: {input_price, output_price}}``); ``None`` (default): the spec tier's prices when the
spec gives both, else LiteLLM. Without any rule, a verb that has a spec with prices derives from the spec alone for
the models that have tokens but no cost at all (:func:`auto_rule`).

From the command line: ``--dataset_options "{cost: {input_tokens_per_turn: 3000, output_tokens_per_turn: 500}}"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from aco_bert.data.prices import Price, PriceNotFound, PriceTable
from aco_bert.data.schema import DataError, OutcomeTable

HOW_TO = ("derive it: give input_tokens/output_tokens (or turns) per row and --dataset_options "
          "\"{cost: {prices: litellm}}\" or a --spec whose tiers set input_price/output_price (USD per 1M); turns "
          "also need the per-turn token counts, {cost: {input_tokens_per_turn: N, output_tokens_per_turn: M}}")


@dataclass
class CostRule:
    """How to fill a missing ``cost_usd`` (YAML / ``--dataset_options`` key ``cost``)."""

    prices: str | None = None  # None (spec tier prices, else LiteLLM), "spec", "litellm", or a per-1M JSON path
    price_provider: str | None = None  # LiteLLM provider breaking ties between keys of different prices
    input_tokens_per_turn: float | None = None  # stated assumption: input tokens per agent turn
    output_tokens_per_turn: float | None = None  # stated assumption: output tokens per agent turn
    turns_column: str = "turns"  # the file's turns column (long) / <model>|<this> (wide)
    aliases: dict[str, str] | None = None  # model -> price key, when a model name resolves to no key

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.input_tokens_per_turn, self.output_tokens_per_turn)]
        if any(given) and not all(given):
            raise ValueError("cost rule: give both input_tokens_per_turn and output_tokens_per_turn (0 is allowed)")
        for v in (self.input_tokens_per_turn, self.output_tokens_per_turn):
            if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ValueError(f"cost rule: tokens per turn must be non-negative numbers, got {v!r}")

    @property
    def has_turn_rule(self) -> bool:
        return self.input_tokens_per_turn is not None

    @classmethod
    def make(cls, rule: "CostRule | Mapping[str, Any] | None") -> "CostRule | None":
        """A rule from itself, a dict (``--dataset_options`` ``cost``) or None."""
        if rule is None or isinstance(rule, CostRule):
            return rule
        if not isinstance(rule, Mapping):
            raise ValueError(f"cost rule must be a mapping like {{prices: litellm}}, got {rule!r}")
        from aco_bert.config import from_dict

        return from_dict(cls, dict(rule), where="cost")


def with_price_provider(options: Mapping[str, Any] | None, provider: str | None) -> dict[str, Any]:
    """Loader options with ``--price_provider`` folded into their cost rule (a provider asks for derivation)."""
    out = dict(options or {})
    if provider:
        rule = out.get("cost")
        rule = asdict(rule) if isinstance(rule, CostRule) else dict(rule or {})
        out["cost"] = {**rule, "price_provider": provider}
    return out


def spec_prices(spec: Any) -> dict[str, Price]:
    """Model -> price of the spec tiers that give both ``input_price`` and ``output_price`` (USD per 1M)."""
    if spec is None:
        return {}
    return {t.model: Price(float(t.input_price) / 1e6, float(t.output_price) / 1e6, f"tier {t.label}")
            for t in spec.tiers if t.input_price is not None and t.output_price is not None}


def auto_rule(table: OutcomeTable, spec: Any) -> tuple[CostRule, list[str]] | None:
    """Without a rule: (spec-only rule, models) when the spec prices models that have tokens but no cost at all."""
    priced = spec_prices(spec)
    if not priced:
        return None
    df = table.df
    no_cost = df.groupby("model", sort=False)["cost_usd"].apply(lambda s: bool(s.isna().all()))
    has_tok = (df["input_tokens"].notna() & df["output_tokens"].notna()).groupby(df["model"], sort=False).any()
    models = [m for m in table.models if no_cost.get(m, False) and has_tok.get(m, False) and m in priced]
    return (CostRule(prices="spec"), models) if models else None


def _price_of(model: str, rule: CostRule, spec_p: dict[str, Price], table: PriceTable | None,
              spec_name: str) -> tuple[Price | None, str, str]:
    """(price or None, source, reason or resolution rule)."""
    if rule.prices in (None, "spec") and model in spec_p:
        return spec_p[model], f"spec {spec_name}", "tier prices"
    if rule.prices == "spec":
        return None, f"spec {spec_name}", "the spec has no input_price/output_price for this model"
    assert table is not None
    try:
        return table.lookup(model), table.name, table.resolved_by.get(model, "")
    except PriceNotFound as e:
        return None, table.name, str(e)


def _price_table(rule: CostRule, data_dir: Any) -> PriceTable:
    if rule.prices in (None, "litellm"):
        t = PriceTable.from_litellm(data_dir=data_dir, aliases=rule.aliases, provider=rule.price_provider)
    else:
        t = PriceTable.from_per_million(rule.prices, aliases=rule.aliases)
        t.provider = rule.price_provider
    return t


def derive_costs(table: OutcomeTable, rule: CostRule | Mapping[str, Any], spec: Any = None, *,
                 models: list[str] | None = None, data_dir: Any = None, auto: bool = False) -> OutcomeTable:
    """``table`` with missing ``cost_usd`` filled (see the module docstring), and the record in its extras.

    ``models``: only these (default: all); ``auto``: the automatic spec derivation (turns are then left alone
    rather than refused, since the user stated no rule).
    """
    rule = CostRule.make(rule)
    assert rule is not None
    if rule.prices == "spec" and spec is None:
        raise ValueError("cost rule prices: spec needs a router spec (--spec) whose tiers set input_price/output_price")
    df = table.df.copy()
    todo = df["cost_usd"].isna().to_numpy().copy()
    if models is not None:
        todo &= df["model"].isin(models).to_numpy()
    in_t, out_t = df["input_tokens"].to_numpy(float), df["output_tokens"].to_numpy(float)
    turns = df["turns"].to_numpy(float) if "turns" in df.columns else np.full(len(df), np.nan)
    by_tok = todo & ~np.isnan(in_t) & ~np.isnan(out_t)
    by_turn = todo & ~by_tok & ~np.isnan(turns)
    if by_turn.any() and not rule.has_turn_rule and not auto:
        raise DataError(f"{int(by_turn.sum())} rows of {table.name!r} have {rule.turns_column!r} but neither cost_usd "
                        "nor tokens, and no per-turn token assumption was stated: add it to the cost rule, e.g. "
                        "--dataset_options \"{cost: {input_tokens_per_turn: 3000, output_tokens_per_turn: 500}}\"")
    if not rule.has_turn_rule:
        by_turn = np.zeros_like(by_turn)
    else:
        in_t = np.where(by_turn, turns * float(rule.input_tokens_per_turn), in_t)
        out_t = np.where(by_turn, turns * float(rule.output_tokens_per_turn), out_t)
    spec_p = spec_prices(spec)
    spec_name = getattr(spec, "name", "?")
    model_col = df["model"].to_numpy(object)
    need = [m for m in table.models if (by_tok | by_turn)[model_col == m].any()]
    ptable = None
    if rule.prices != "spec" and any(not (rule.prices is None and m in spec_p) for m in need):
        ptable = _price_table(rule, data_dir)
    cost = df["cost_usd"].to_numpy(float).copy()
    derived: dict[str, dict[str, Any]] = {}
    unpriced: dict[str, dict[str, Any]] = {}
    for m in need:
        rows = (by_tok | by_turn) & (model_col == m)
        price, source, how = _price_of(m, rule, spec_p, ptable, spec_name)
        counts = {"tokens": int((by_tok & rows).sum()), "turns": int((by_turn & rows).sum())}
        if price is None:
            unpriced[m] = {"rows": int(rows.sum()), "source": source, "reason": how}
            continue
        cost[rows] = price.cost(in_t[rows], out_t[rows])
        derived[m] = {"rows": int(rows.sum()), "from": counts, "price_source": source, "key": price.key,
                      "rule": how, "input_per_1m": price.input_per_1m, "output_per_1m": price.output_per_1m}
    df["cost_usd"] = cost
    left = todo & np.isnan(cost)
    record: dict[str, Any] = {
        "rows": int(sum(d["rows"] for d in derived.values())), "models": derived, "unpriced": unpriced,
        "not_derivable": {m: int(n) for m, n in zip(*np.unique(model_col[left & ~by_tok & ~by_turn],
                                                                return_counts=True))},
        "turn_rule": ({"input_tokens_per_turn": rule.input_tokens_per_turn,
                       "output_tokens_per_turn": rule.output_tokens_per_turn, "column": rule.turns_column}
                      if rule.has_turn_rule else None),
        "prices": rule.prices or ("spec" if auto else "spec tiers, else litellm" if spec_p else "litellm"),
        "provider": rule.price_provider,
        "auto": bool(auto)}
    extras = {**table.extras, "derived_cost": record}
    return OutcomeTable(df, table.name, dict(table.skipped), extras)


def apply_cost_rule(table: OutcomeTable, cost: CostRule | Mapping[str, Any] | None, spec: Any,
                    data_dir: Any = None) -> OutcomeTable:
    """What :func:`~aco_bert.data.registry.load_outcomes` does with ``cost=`` / ``spec=``: the user's rule, else the
    automatic spec derivation (:func:`auto_rule`), else the table as is."""
    if isinstance(spec, str):
        from aco_bert.spec import RouterSpec

        spec = RouterSpec.load(spec)
    rule = CostRule.make(cost)
    if rule is not None:
        return derive_costs(table, rule, spec, data_dir=data_dir)
    auto = auto_rule(table, spec)
    if auto is None:
        return table
    return derive_costs(table, auto[0], spec, models=auto[1], data_dir=data_dir, auto=True)


def cost_lines(table: OutcomeTable) -> list[str]:
    """The derivation record as printable lines (empty when nothing was derived)."""
    rec = table.extras.get("derived_cost")
    if not rec:
        return []
    how = "automatically from the spec's tier prices" if rec["auto"] else f"prices: {rec['prices']}"
    prov = f", provider {rec['provider']}" if rec.get("provider") else ""
    n = len(rec["models"])
    out = [f"cost DERIVED for {rec['rows']} outcomes of {n} model{'s' * (n != 1)} ({how}{prov}):"]
    for m, d in rec["models"].items():
        src = " + ".join(f"{n} from {k}" for k, n in d["from"].items() if n)
        rule = f", {d['rule']}" if d["rule"] and d["rule"] != "tier prices" else ""
        out.append(f"  {m}: {src}; {d['price_source']} key {d['key']!r}{rule} "
                   f"(${d['input_per_1m']:g} / ${d['output_per_1m']:g} per 1M in/out)")
    tr = rec.get("turn_rule")
    if tr and any(d["from"]["turns"] for d in rec["models"].values()):
        out.append(f"  turns rule (stated): {tr['input_tokens_per_turn']:g} input + {tr['output_tokens_per_turn']:g} "
                   f"output tokens per turn (column {tr['column']!r})")
    for m, d in rec["unpriced"].items():
        out.append(f"  NO PRICE, cost stays NaN for {d['rows']} outcomes of {m}: {d['reason']}")
    if rec["not_derivable"]:
        out.append("  no cost, tokens or turns (cost stays NaN): "
                   + ", ".join(f"{m} {n}" for m, n in rec["not_derivable"].items()))
    return out


def require_costs(matrix: Any, models: list[str], dataset: str, table: OutcomeTable | None = None) -> None:
    """Raise a ValueError naming the ``models`` of ``matrix`` without any known cost, and how to derive it."""
    cols = [matrix.models.index(m) for m in models]
    none = [m for m, j in zip(models, cols) if not np.isfinite(matrix.cost[:, j]).any()]
    if not none:
        return
    why = ""
    rec = (table.extras.get("derived_cost") or {}) if table is not None else {}
    if rec.get("unpriced"):
        why = "; " + "; ".join(f"{m}: {d['reason']}" for m, d in rec["unpriced"].items() if m in none)
    raise ValueError(f"no cost for {len(none)} of {len(models)} models in {dataset!r}: {none}{why}; {HOW_TO}")
