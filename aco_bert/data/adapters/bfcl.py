"""Berkeley Function-Calling Leaderboard (BFCL v2, 2024-08-11 run): pass/fail per prompt per model config.

Inputs are the flattened ``outcomes.csv`` (``model, category, prompt_id, correct, input_token_count,
output_token_count, latency_s``; derived from ``HuanzhiMao/BFCL-Result`` ``2024-08-11/score/*_score.json``, see the
data README) and ``questions.jsonl`` (``gorilla_openfunctions_v1_test_<category>.json`` from ``ShishirPatil/gorilla``).

The routed text is what the model saw: the question plus the function schema as compact JSON. Cost is computed from
the run's own token counts times a price from LiteLLM's table, through the explicit map :data:`PRICE_KEYS` (BFCL
config name, minus its ``-FC``/``-FC-Auto``/``-FC-Any`` mode suffix -> LiteLLM key, ``None`` = no price). Cost is
NaN, never zero, when a model has no price or no token counts (14 models were served locally and report none);
every such outcome is counted in ``extras["cost_unknown"]`` and reported, none is dropped.

Online re-derivation of ``outcomes.csv`` from the BFCL-Result score/result files is not implemented: the loader
needs the flattened local copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from aco_bert.data.io import read_jsonl
from aco_bert.data.prices import PriceTable
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table


def _val(v: object) -> object:
    """A cell as a plain Python value, so messages read 2.0 rather than np.float64(2.0)."""
    return v.item() if hasattr(v, "item") else v

RESULTS_REPO = "https://github.com/HuanzhiMao/BFCL-Result/tree/main/2024-08-11/score"
QUESTIONS_URL = (
    "https://raw.githubusercontent.com/ShishirPatil/gorilla/4a64db34/berkeley-function-call-leaderboard/"
    "data/gorilla_openfunctions_v1_test_{category}.json"
)
OUTCOME_COLUMNS = ("model", "category", "prompt_id", "correct", "input_token_count", "output_token_count", "latency_s")
# Prompt mode scores 25.8 % while its -FC twin scores 85.6 %: a broken run, excluded unless asked for.
EXCLUDED_BY_DEFAULT = ("gpt-4o-2024-08-06",)
MODE_SUFFIXES = ("-FC-Auto", "-FC-Any", "-FC")

# BFCL config (mode suffix stripped) -> LiteLLM 1.110.2 key. Rule: the vendor's own entry; else the same model
# version listed by a major cloud (Bedrock / Vertex / Azure), whose list price equals the vendor's for these models;
# else None. Third-party hosts of open weights are not used (their prices are a different product), nor are
# re-pointed aliases (LiteLLM's "mistral/mistral-medium" now means Medium 3, not mistral-medium-2312).
PRICE_KEYS: dict[str, str | None] = {
    "gpt-4o-2024-08-06": "gpt-4o-2024-08-06",
    "gpt-4o-2024-05-13": "gpt-4o-2024-05-13",
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini-2024-07-18",
    "gpt-4-turbo-2024-04-09": "gpt-4-turbo-2024-04-09",
    "gpt-4-0125-preview": "azure/gpt-4-0125-preview",  # OpenAI's own entry is gone; Azure lists $10/$30, same
    "gpt-4-1106-preview": "gpt-4-1106-preview",
    "gpt-4-0613": "gpt-4-0613",
    "gpt-3.5-turbo-0125": "gpt-3.5-turbo-0125",
    "claude-3-5-sonnet-20240620": "anthropic.claude-3-5-sonnet-20240620-v1:0",  # Bedrock, $3/$15
    "claude-3-opus-20240229": "anthropic.claude-3-opus-20240229-v1:0",  # Bedrock, $15/$75
    "claude-3-sonnet-20240229": "vertex_ai/claude-3-sonnet@20240229",  # Vertex, $3/$15
    "claude-3-haiku-20240307": "vertex_ai/claude-3-haiku@20240307",  # Vertex, $0.25/$1.25
    "claude-2.1": "anthropic.claude-v2:1",  # Bedrock's Claude v2.1, $8/$24
    "claude-instant-1.2": "anthropic.claude-instant-v1",  # Bedrock's Claude Instant (v1.2), $0.8/$2.4
    "mistral-large-2407": "mistral.mistral-large-2407-v1:0",  # Bedrock, $2/$6
    "mistral-small-2402": "mistral.mistral-small-2402-v1:0",  # Bedrock, $1/$3
    "mistral-tiny-2312": "mistral/mistral-tiny",
    "open-mistral-nemo-2407": "mistral/open-mistral-nemo",
    "open-mixtral-8x7b": "mistral.mixtral-8x7b-instruct-v0:1",  # Bedrock, $0.45/$0.7
    "open-mixtral-8x22b": None,  # no Mistral / major-cloud entry
    "mistral-medium-2312": None,  # LiteLLM's mistral-medium is now Medium 3
    "firefunction-v1": "fireworks_ai/accounts/fireworks/models/firefunction-v1",  # Fireworks is the vendor
    "firefunction-v2": "fireworks_ai/accounts/fireworks/models/firefunction-v2",
    "gemini-1.0-pro": None,  # Gemini 1.x entries were removed from LiteLLM
    "gemini-1.5-flash-preview-0514": None,
    "gemini-1.5-pro-preview-0409": None,
    "gemini-1.5-pro-preview-0514": None,
    "command-r-plus": None,  # only command-r-plus-08-2024 (a later version, other price) is listed
    "yi-large-fc": None,
    "databricks-dbrx-instruct": None,
    "snowflake_arctic": None,  # listed with null prices
    "nvidia_nemotron-4-340b-instruct": None,
    "gorilla-openfunctions-v2": None,  # free hosted endpoint
    "meetkai_functionary-small-v3.1": None,
    "meetkai_functionary-small-v3.2": None,
    "meetkai_functionary-medium-v3.1": None,
}


def base_model(config: str) -> str:
    """BFCL config name without its function-calling mode suffix (the mode does not change the price)."""
    for s in MODE_SUFFIXES:
        if config.endswith(s):
            return config[: -len(s)]
    return config


def prompt_text(question: str, functions: Any) -> str:
    """The routed text: the user's question, a blank line, then the function schema as compact JSON."""
    return f"{question}\n\n{json.dumps(functions, separators=(',', ':'), ensure_ascii=False)}"


def read_questions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``questions.jsonl`` -> {id: record}; ``row`` in errors is the 0-based line index."""
    out: dict[str, dict[str, Any]] = {}
    for i, r in read_jsonl(path):
        for k in ("id", "question", "function", "category"):
            if k not in r:
                raise DataError(f"missing field {k!r}", file=str(path), row=i)
        q = r["question"]
        if not isinstance(q, str) or not q.strip():
            raise DataError("empty or non-string question", file=str(path), row=i)
        if r["id"] in out:
            raise DataError(f"duplicate id {r['id']!r}", file=str(path), row=i)
        out[r["id"]] = r
    return out


def load_bfcl(
    outcomes: str | Path,
    questions: str | Path,
    *,
    prices: PriceTable | str | Path | None = None,
    price_keys: Mapping[str, str | None] | None = None,
    exclude: tuple[str, ...] = EXCLUDED_BY_DEFAULT,
    include_all: bool = False,
    models: list[str] | None = None,
) -> OutcomeTable:
    """Canonical table of BFCL outcomes.

    ``prices``: a :class:`PriceTable` or a LiteLLM JSON path (default: the data dir's copy, else the pinned URL).
    ``price_keys`` adds to / overrides :data:`PRICE_KEYS` (keys are mode-stripped config names or full configs).
    ``include_all=True`` keeps the :data:`EXCLUDED_BY_DEFAULT` runs; ``models`` keeps only those configs.
    Errors name the file and the 0-based data row (CSV header excluded).
    """
    outcomes = str(outcomes)
    try:
        df = pd.read_csv(outcomes, dtype={"model": str, "category": str, "prompt_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"unreadable CSV: {e}", file=outcomes) from e
    missing = [c for c in OUTCOME_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; have {list(df.columns)}", file=outcomes)
    for col in ("model", "prompt_id", "category"):
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(f"empty {col}", file=outcomes, row=int(np.flatnonzero(empty.to_numpy())[0]))
    correct = pd.to_numeric(df["correct"], errors="coerce")
    bad = correct.isna() | ~correct.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"correct {_val(df['correct'].iloc[i])!r} is not 0 or 1", file=outcomes, row=i)
    for col in ("input_token_count", "output_token_count", "latency_s"):
        num = pd.to_numeric(df[col], errors="coerce")
        nonnum = num.isna() & df[col].notna()
        if nonnum.any():
            i = int(np.flatnonzero(nonnum.to_numpy())[0])
            raise DataError(f"non-numeric {col} {_val(df[col].iloc[i])!r}", file=outcomes, row=i)
        df[col] = num

    dup = df.duplicated(["prompt_id", "model"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"duplicate prompt x model ({_val(df['prompt_id'].iloc[i])!r}, {_val(df['model'].iloc[i])!r})",
                        file=outcomes, row=i)
    qs = read_questions(questions)
    unknown = ~df["prompt_id"].isin(qs.keys())
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(f"prompt_id {_val(df['prompt_id'].iloc[i])!r} has no question in {questions}",
                        file=outcomes, row=i)
    qcat = df["prompt_id"].map({k: v["category"] for k, v in qs.items()})
    mismatch = qcat != df["category"]
    if mismatch.any():
        i = int(np.flatnonzero(mismatch.to_numpy())[0])
        raise DataError(f"category {_val(df['category'].iloc[i])!r} disagrees with {questions} "
                        f"({_val(qcat.iloc[i])!r})", file=outcomes, row=i)

    skipped: dict[str, int] = {}
    if not include_all:
        for name in exclude:
            n = int((df["model"] == name).sum())
            if n:
                skipped[f"excluded model {name} (broken prompt-mode run), its outcome rows"] = n
                df = df[df["model"] != name]
    if models is not None:
        absent = sorted(set(models) - set(df["model"]))
        if absent:
            raise DataError(f"models not in {outcomes}: {absent}", file=outcomes)
        df = df[df["model"].isin(models)]
    df = df.reset_index(drop=True)

    # Token counts of 0 input tokens mean "not measured" (locally served models), not a free call.
    unmeasured = df["input_token_count"].isna() | (df["input_token_count"] <= 0)
    in_tok = df["input_token_count"].where(~unmeasured)
    out_tok = df["output_token_count"].where(~unmeasured)

    table = _price_table(prices)
    keys = {**PRICE_KEYS, **dict(price_keys or {})}
    model_key: dict[str, str | None] = {}
    per_token: dict[str, tuple[float, float]] = {}
    for m in df["model"].unique():
        k = keys.get(m, keys.get(base_model(m)))
        model_key[m] = k
        if k is not None:
            p = table.lookup(k)  # an explicit key that is not in the table is an error, not a NaN
            per_token[m] = (p.input, p.output)
    pin = df["model"].map({m: v[0] for m, v in per_token.items()}).astype(float)
    pout = df["model"].map({m: v[1] for m, v in per_token.items()}).astype(float)
    cost = in_tok * pin + out_tok * pout

    no_price = df["model"].map(lambda m: model_key[m] is None)
    reasons: dict[str, str] = {}
    cost_unknown: dict[str, int] = {}
    for m, g in df.assign(_nan=cost.isna(), _unm=unmeasured, _np=no_price).groupby("model", sort=True):
        n = int(g["_nan"].sum())
        if not n:
            continue
        cost_unknown[m] = n
        why = []
        if bool(g["_np"].iloc[0]):
            why.append("no price" if m in keys or base_model(m) in keys else "not in the price map")
        if g["_unm"].any():
            why.append("no token counts" if g["_unm"].all() else f"no token counts on {int(g['_unm'].sum())} rows")
        reasons[m] = ", ".join(why)

    out = pd.DataFrame({
        "prompt_id": df["prompt_id"],
        "prompt": df["prompt_id"].map({k: prompt_text(v["question"], v["function"]) for k, v in qs.items()}),
        "model": df["model"],
        "success": df["correct"].astype(float),
        "cost_usd": cost,
        "input_tokens": in_tok,
        "output_tokens": out_tok,
        "latency_s": df["latency_s"],
        "source": "bfcl",
        "category": df["category"],
    })
    extras = {
        "price_keys": {m: model_key[m] for m in sorted(model_key)},
        "cost_unknown": cost_unknown,
        "cost_unknown_reason": reasons,
        "cost_note": "cost_usd = run's token counts x LiteLLM per-token price; NaN where either is unknown",
    }
    return rows_to_table(out, file=outcomes, name="bfcl", skipped=skipped, extras=extras)


def _price_table(prices: PriceTable | str | Path | None) -> PriceTable:
    if isinstance(prices, PriceTable):
        return prices
    return PriceTable.from_litellm(prices)
