"""Score files ``[{"question": ..., "scores": {model: score}}]`` (LLMRouter's DC-router split, RouterDC's format).

``scores`` is a dict or its ``str()`` (parsed with :func:`ast.literal_eval`, never ``eval``); a score is graded
success in [0, 1] (mostly 0/1). There are no per-prompt token counts, so ``cost_usd`` is an *estimate*:

    input tokens  = ceil(len(question) / chars_per_token)       (default 4 characters per token)
    output tokens = assumed_output_tokens                        (default 256, the same for every prompt)
    cost_usd      = input tokens x input price + output tokens x output price

The assumptions are recorded in ``extras["cost_estimate"]``; ``input_tokens``/``output_tokens`` stay NaN (nothing was
measured). A model without a price gets NaN cost, counted in ``extras["cost_unknown"]``.

The category comes from joining the question text onto query files (``default_query_*.jsonl``: ``task_name,
query``); unmatched questions keep no category and are counted, and a text listed under several tasks gets them
all, joined with ``|``, and is counted too. Error rows are 0-based indices into the JSON list.

:func:`load_dcrouter` reads LLMRouter's DC-router files (pinned public source :data:`LLMROUTER_BASE`).
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from aco_bert.data.io import iter_jsonl
from aco_bert.data.prices import PriceTable
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table
from aco_bert.data.text import clean_text_error, unicode_error

CHARS_PER_TOKEN = 4.0
ASSUMED_OUTPUT_TOKENS = 256

LLMROUTER_COMMIT = "4e7a7969"
LLMROUTER_BASE = f"https://raw.githubusercontent.com/ulab-uiuc/LLMRouter/{LLMROUTER_COMMIT}/data"
# local file name (data README) -> path under LLMROUTER_BASE
DCROUTER_FILES = {
    "dcrouter_train.json": "dcrouter_preprocessed/train.json",
    "dcrouter_test.json": "dcrouter_preprocessed/test.json",
    "default_query_train.jsonl": "example_data/query_data/default_query_train.jsonl",
    "default_query_test.jsonl": "example_data/query_data/default_query_test.jsonl",
    "default_llm.json": "example_data/llm_candidates/default_llm.json",
}


def _open_text(path_or_url: str) -> str:
    if path_or_url.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(path_or_url, timeout=120) as r:  # noqa: S310 - pinned public URL
            return r.read().decode("utf-8")
    with open(path_or_url, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:  # name where, not just the codec's complaint
        line = raw[:e.start].count(b"\n")
        raise DataError(f"invalid UTF-8 at byte {e.start} (line {line + 1}): {e.reason}", file=path_or_url
                        ) from None


def read_scores(path: str | Path) -> tuple[list[str], list[dict[str, float]], list[dict[str, Any]]]:
    """Parse and check a score file: (questions, score dicts, other fields per record)."""
    p = str(path)
    try:
        data = json.loads(_open_text(p))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", file=p) from e
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of {{question, scores}} records, got {type(data).__name__}", file=p)
    if not data:
        raise DataError("no records (an empty list)", file=p)
    questions, scores, others = [], [], []
    seen: dict[str, int] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"record is a {type(rec).__name__}, not an object", file=p, row=i)
        for k in ("question", "scores"):
            if k not in rec:
                raise DataError(f"missing field {k!r}", file=p, row=i)
        q = rec["question"]
        if not isinstance(q, str) or not q.strip():
            raise DataError("empty or non-string question", file=p, row=i)
        if (why := clean_text_error(q)) is not None:
            raise DataError(f"question: {why}", file=p, row=i)
        if q in seen:  # a second copy would count one question twice in every rate (or disagree with the first)
            raise DataError(f"duplicate record: the same question as row {seen[q]}", file=p, row=i)
        seen[q] = i
        sc = rec["scores"]
        if isinstance(sc, str):
            try:
                sc = ast.literal_eval(sc)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                raise DataError(f"scores is not a dict literal: {e}", file=p, row=i) from e
        if not isinstance(sc, dict) or not sc:
            raise DataError("scores is not a non-empty model -> score mapping", file=p, row=i)
        clean: dict[str, float] = {}
        for m, v in sc.items():
            if isinstance(m, str) and (why := unicode_error(m)):
                raise DataError(f"model name is {why}", file=p, row=i)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DataError(f"score of {m!r} is {v!r}, not a number", file=p, row=i)
            if not 0.0 <= v <= 1.0:
                raise DataError(f"score of {m!r} is {v!r}, outside [0, 1]", file=p, row=i)
            clean[str(m)] = float(v)
        questions.append(q)
        scores.append(clean)
        others.append({k: v for k, v in rec.items() if k not in ("question", "scores")})
    return questions, scores, others


def read_query_tasks(paths: Iterable[str | Path]) -> dict[str, set[str]]:
    """Query text -> set of task names, from ``default_query_*.jsonl`` files (``task_name``, ``query``)."""
    out: dict[str, set[str]] = {}
    for path in paths:
        p = str(path)
        for i, r in iter_jsonl(_open_text(p).split("\n"), p):  # not splitlines(): texts hold U+2028
            if "query" not in r or "task_name" not in r:
                raise DataError("missing field 'query' or 'task_name'", file=p, row=i)
            out.setdefault(str(r["query"]), set()).add(str(r["task_name"]))
    return out


def load_scores_json(
    path: str | Path,
    *,
    queries: Iterable[str | Path] = (),
    prices: PriceTable | str | Path | Mapping[str, Any] | None = None,
    chars_per_token: float = CHARS_PER_TOKEN,
    assumed_output_tokens: float = ASSUMED_OUTPUT_TOKENS,
    id_prefix: str | None = None,
    source: str = "scores-json",
    name: str | None = None,
) -> OutcomeTable:
    """Canonical table from one score file. ``prices``: a :class:`PriceTable`, or a per-1M JSON (``default_llm.json``).

    ``prompt_id`` is ``<id_prefix><index in the file>`` (default prefix: the file stem and a dot).
    """
    p = str(path)
    questions, scores, _ = read_scores(p)
    prefix = id_prefix if id_prefix is not None else f"{Path(p).stem}."
    n = len(questions)
    models = list(dict.fromkeys(m for s in scores for m in s))
    mat = np.full((n, len(models)), np.nan)
    col = {m: j for j, m in enumerate(models)}
    for i, s in enumerate(scores):
        for m, v in s.items():
            mat[i, col[m]] = v
    missing_cells = int(np.isnan(mat).sum())

    table = prices if isinstance(prices, PriceTable) or prices is None else PriceTable.from_per_million(prices)
    in_tok = np.ceil(np.array([len(q) for q in questions], dtype=float) / float(chars_per_token))
    cost = np.full_like(mat, np.nan)
    cost_unknown: dict[str, int] = {}
    price_used: dict[str, list[float]] = {}
    for m, j in col.items():
        pr = table.get(m) if table is not None else None
        if pr is None:
            cost_unknown[m] = int((~np.isnan(mat[:, j])).sum())
            continue
        price_used[m] = [pr.input_per_1m, pr.output_per_1m]
        cost[:, j] = pr.cost(in_tok, assumed_output_tokens)

    tasks = read_query_tasks(queries) if queries else {}
    cats: list[str | None] = []
    unmatched = ambiguous = 0
    for q in questions:
        t = tasks.get(q) or tasks.get(q.strip())
        if not t:
            unmatched += 1
            cats.append(None)
        else:
            ambiguous += len(t) > 1
            cats.append("|".join(sorted(t)))

    pids = np.array([f"{prefix}{i}" for i in range(n)], dtype=object)
    keep = ~np.isnan(mat)
    ii, jj = np.nonzero(keep)
    df = pd.DataFrame({
        "prompt_id": pids[ii],
        "prompt": np.array(questions, dtype=object)[ii],
        "model": np.array(models, dtype=object)[jj],
        "success": mat[ii, jj],
        "cost_usd": cost[ii, jj],
        "source": source,
        "category": np.array(cats, dtype=object)[ii],
    })
    skipped = {"missing prompt x model scores": missing_cells} if missing_cells else {}
    extras: dict[str, Any] = {
        "cost_estimate": {
            "estimated": True,
            "chars_per_token": float(chars_per_token),
            "assumed_output_tokens": float(assumed_output_tokens),
            "prices_per_1m": price_used,
            "formula": "ceil(len(text)/chars_per_token) x input price + assumed_output_tokens x output price",
        },
        "cost_unknown": cost_unknown,
    }
    if queries:
        extras["category_unmatched"] = unmatched
        extras["category_ambiguous"] = ambiguous
    return rows_to_table(df, file=p, name=name or source, skipped=skipped, extras=extras)


def load_dcrouter(
    source: str | Path | None = None,
    *,
    split: str = "all",
    prices: PriceTable | str | Path | Mapping[str, Any] | None = None,
    dedupe: bool = True,
    **kw: Any,
) -> OutcomeTable:
    """LLMRouter's DC-router split: 9 open models, graded scores, estimated cost from ``default_llm.json``.

    ``source``: a directory with the local file names of :data:`DCROUTER_FILES`, or None for the pinned URLs.
    ``split``: train / test / all. With ``all``, test questions whose exact text is also a train question (119 in the
    published files, 50 of them with different scores) are dropped and counted (``dedupe=False`` keeps them, which
    leaks text across cross-validation folds).
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")

    def loc(fname: str) -> str:
        return str(Path(source) / fname) if source is not None else f"{LLMROUTER_BASE}/{DCROUTER_FILES[fname]}"

    table = prices if prices is not None else PriceTable.from_per_million(loc("default_llm.json"), name="dcrouter")
    queries = [loc("default_query_train.jsonl"), loc("default_query_test.jsonl")]
    parts = []
    for sp in (("train", "test") if split == "all" else (split,)):
        parts.append(load_scores_json(loc(f"dcrouter_{sp}.json"), queries=queries, prices=table,
                                      id_prefix=f"dcrouter.{sp}.", source="dcrouter", name="dcrouter", **kw))
    skipped = dict(parts[0].skipped)
    extras = dict(parts[0].extras)
    df = parts[0].df
    if len(parts) == 2:
        tr, te = parts
        for k, v in te.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
        for k in ("category_unmatched", "category_ambiguous"):
            extras[k] = tr.extras.get(k, 0) + te.extras.get(k, 0)
        extras["cost_unknown"] = {m: tr.extras["cost_unknown"].get(m, 0) + te.extras["cost_unknown"].get(m, 0)
                                  for m in {*tr.extras["cost_unknown"], *te.extras["cost_unknown"]}}
        te_df = te.df
        if dedupe:
            seen = set(tr.df["prompt"])
            dup = te_df["prompt"].isin(seen)
            n_dup = int(te_df.loc[dup, "prompt_id"].nunique())
            if n_dup:
                a = tr.df.pivot(index="prompt", columns="model", values="success")
                b = te_df[dup].pivot(index="prompt", columns="model", values="success")
                differ = int((a.reindex(index=b.index, columns=b.columns) != b).any(axis=1).sum())
                skipped["test questions repeating a train question (train copy kept)"] = n_dup
                extras["test_train_repeats_with_different_scores"] = differ
                te_df = te_df[~dup]
        df = pd.concat([tr.df, te_df], ignore_index=True)
    split_of = {pid: pid.split(".")[1] for pid in df["prompt_id"].unique()}
    extras["prompt_meta"] = {"split": split_of}
    return rows_to_table(df.reset_index(drop=True), file=str(source or LLMROUTER_BASE), name="dcrouter",
                         skipped=skipped, extras=extras)
