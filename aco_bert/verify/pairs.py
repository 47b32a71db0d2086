"""(prompt, response) pairs as an outcome table: the training data of a cross-encoder verifier.

Why: the cascade's verifier (:mod:`aco_bert.decision.verifier`) reads a run's answer only through cheap features
(answer extracted, hedging, agreement with earlier runs). A verifier that *reads* the answer next to its question
can be trained with the router's own machinery: one row per run, whose text is the response followed by the
question, whose model is the model that answered and whose success is that run's outcome. The trainer's masked BCE
then fits one success head per model where every row has exactly one observed head (the run's model), so
``python -m aco_bert.train`` on a written pair table is a per-model P(this answer is correct | answer, question).

The response comes FIRST in the text, so the tokenizer's head+tail truncation keeps the answer's start in the head
and the question's end (its options) in the tail. Folds must group pairs by their original prompt (a question's
answers never straddle train and test): the original id is the ``pair_of`` prompt meta column, and
:func:`original_prompt_id` recovers it from a pair id.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from aco_bert.data import OutcomeTable, validate_table

PAIR_SEP = "#"  # pair id = <original prompt id>#<model>
PAIR_OF = "pair_of"  # prompt meta column (extras["prompt_meta"]): a pair's original prompt id
RESPONSE_HEADER = "Response:\n"
QUESTION_HEADER = "\n\nQuestion:\n"


def pair_id(prompt_id: str, model: str) -> str:
    """The pair table's prompt id of ``model``'s run on ``prompt_id``."""
    return f"{prompt_id}{PAIR_SEP}{model}"


def original_prompt_id(pair: str, model: str) -> str:
    """The original prompt id of a pair id (model names may hold the separator, so the model is stripped whole)."""
    suffix = PAIR_SEP + model
    if not pair.endswith(suffix):
        raise ValueError(f"pair id {pair!r} does not end with {suffix!r}")
    return pair[: -len(suffix)]


def pair_text(prompt: str, response: str, *, max_response_chars: int = 2000, max_prompt_chars: int = 1500) -> str:
    """``Response:\\n<response head>\\n\\nQuestion:\\n<prompt tail>``: what the cross-encoder reads."""
    if max_response_chars < 1 or max_prompt_chars < 1:
        raise ValueError("max_response_chars and max_prompt_chars must be >= 1")
    return f"{RESPONSE_HEADER}{response[:max_response_chars]}{QUESTION_HEADER}{prompt[-max_prompt_chars:]}"


def pair_table(table: OutcomeTable, *, max_response_chars: int = 2000, max_prompt_chars: int = 1500,
               models: Iterable[str] | None = None) -> OutcomeTable:
    """One row per (prompt, model) run of ``table`` that has a response: prompt id :func:`pair_id`, text
    :func:`pair_text`, the run's model and success, the prompt's ``category`` and ``source``. ``models``: keep only
    these models' runs. The original prompt's meta (e.g. RouterBench's ``split``) and its id (``pair_of``) travel
    in ``extras["prompt_meta"]``, so ``pair_table(t).matrix().meta`` holds them per pair."""
    df = table.df
    if "response" not in df.columns or not df["response"].notna().any():
        raise ValueError(f"table {table.name!r} has no response column to pair with its prompts")
    if models is not None:
        models = list(models)
        unknown = sorted(set(models) - set(df["model"].unique()))
        if unknown:
            raise ValueError(f"models not in table {table.name!r}: {unknown}")
        df = df[df["model"].isin(models)]
    df = df[df["response"].notna()]
    pids, mods = df["prompt_id"].astype(str).tolist(), df["model"].astype(str).tolist()
    texts = [pair_text(p, r, max_response_chars=max_response_chars, max_prompt_chars=max_prompt_chars)
             for p, r in zip(df["prompt"].astype(str), df["response"].astype(str))]
    ids = [pair_id(p, m) for p, m in zip(pids, mods)]
    out = pd.DataFrame({"prompt_id": ids, "prompt": texts, "model": mods, "success": df["success"].to_numpy()})
    for col in ("category", "source"):
        if col in df.columns:
            out[col] = df[col].to_numpy()
    meta = {PAIR_OF: dict(zip(ids, pids))}
    for key, per_prompt in table.extras.get("prompt_meta", {}).items():
        meta[key] = {i: per_prompt.get(p) for i, p in zip(ids, pids)}
    return OutcomeTable(validate_table(out, file=f"pairs of {table.name}"), f"{table.name}-pairs",
                        extras={"prompt_meta": meta})
