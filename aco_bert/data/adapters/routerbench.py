"""RouterBench (Martian) in its own wide format: one row per prompt, one 0/1 column per model.

Columns: ``sample_id, prompt, eval_name, <model>`` (0/1), ``<model>|model_response``, ``<model>|total_cost`` (USD of
that call), ``oracle_model_to_route_to``; CSV files carry the original row index as an unnamed first column.
``prompt`` is a Python list of strings, stringified in CSV files: it is parsed with :func:`ast.literal_eval`
(never ``eval``) and its parts joined with a blank line. ``<model>|model_response`` (the model's answer, also a
stringified list) fills the canonical ``response`` column (:func:`parse_response`): a post-run trace for the cascade.

Sources (documented, pinned):

* RouterDC's train/test re-cut of ARC-Challenge, MBPP and Winogrande (``datasets/routerbench_zs/`` in GitHub
  ``shuhao02/RouterDC``): files ``{arc_challenge,mbpp,winograde}_{train,test}.csv``; :data:`ROUTERDC_BASE`.
* The full RouterBench (36,497 rows): ``routerbench_0shot.pkl`` in the Hugging Face dataset ``withmartian/routerbench``.
  It is a pickle, and unpickling runs code from the file, so it loads only with ``allow_pickle=True``.

``prompt_id`` is ``sample_id``. RouterBench stores some prompts as two rows under one ``sample_id``: one row with the
outcome of gpt-3.5-turbo-1106 only, its prompt a list of two identical copies, and one with the other ten models (14
such pairs in RouterDC's files, 7 of them split across RouterDC's train and test files). A list of identical copies
is read as one prompt, and rows that share a ``sample_id`` and a text and have outcomes for disjoint models are merged
into one prompt (counted in ``extras["merged_rows"]``). Any other reuse of a ``sample_id`` keeps the rows apart as
``<sample_id>#<original row index>`` (counted in ``extras["disambiguated_sample_ids"]``). Rows with no outcome at all
and NaN cells are skipped and counted. Error rows are 0-based data rows of the named file (the CSV header is not a
row; prompts span several lines).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from aco_bert.data.io import csv_utf8_check
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table


def _val(v: object) -> object:
    """A cell as a plain Python value, so messages read 2.0 rather than np.float64(2.0)."""
    return v.item() if hasattr(v, "item") else v

ROUTERDC_COMMIT = "1963d6874b69c94309ea37a34d7d4cd6f527e7c5"  # files identical at RouterDC HEAD 0e63989c
ROUTERDC_BASE = f"https://raw.githubusercontent.com/shuhao02/RouterDC/{ROUTERDC_COMMIT}/datasets/routerbench_zs"
SUBSETS = ("arc_challenge", "mbpp", "winograde")  # file stems as RouterDC spells them (eval_name: "winogrande")
SPLITS = ("train", "test")
HF_DATASET = "withmartian/routerbench"
HF_FILE = "routerbench_0shot.pkl"
META_COLUMNS = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")


def read_wide(path: str | Path, *, allow_pickle: bool = False) -> pd.DataFrame:
    """Read one RouterBench-format file (``.csv``, ``.parquet``, or ``.pkl`` with ``allow_pickle=True``).

    The returned frame has an ``_orig_index`` column: the original RouterBench row index when the file has one.
    """
    p = str(path)
    low = p.lower()
    if low.endswith((".pkl", ".pickle")):
        if not allow_pickle:
            raise DataError(
                "refusing to unpickle: loading a pickle runs code from the file. Pass allow_pickle=True only for a "
                f"file you trust (e.g. {HF_FILE} from the Hugging Face dataset {HF_DATASET})", file=p)
        df = pd.read_pickle(p)  # noqa: S301 - explicit opt-in above
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"pickle holds a {type(df).__name__}, expected a pandas DataFrame", file=p)
        df = df.reset_index().rename(columns={"index": "_orig_index"})
        if "_orig_index" not in df.columns:
            df["_orig_index"] = np.arange(len(df))
        return df
    if low.endswith(".parquet"):
        try:
            df = pd.read_parquet(p)
        except (OSError, ValueError) as e:
            raise DataError(f"unreadable parquet: {e}", file=p) from e
    elif low.endswith(".csv") or p.startswith(("http://", "https://")):
        if not p.startswith(("http://", "https://")):
            csv_utf8_check(p)
        try:
            df = pd.read_csv(p)
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no rows", file=p) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"unreadable CSV: {e}", file=p) from e
    else:
        raise DataError("unknown RouterBench file type (expected .csv, .parquet or .pkl)", file=p)
    first = df.columns[0] if len(df.columns) else None
    if first is not None and (str(first).startswith("Unnamed") or str(first) in ("", "index")):
        df = df.rename(columns={first: "_orig_index"})
    else:
        df["_orig_index"] = np.arange(len(df))
    return df


def model_columns(columns: Iterable[str]) -> list[str]:
    """Model names: every column ``m`` that has an ``m|total_cost`` or ``m|model_response`` companion."""
    cols = [str(c) for c in columns]
    have = set(cols)
    return [c for c in cols if "|" not in c and (f"{c}|total_cost" in have or f"{c}|model_response" in have)]


def parse_prompt(value: Any, *, file: str, row: int) -> str:
    """A RouterBench prompt (list of strings, or its ``str()``) as one text; parts joined by a blank line.

    A list of identical copies is one prompt (RouterBench stores some gpt-3.5-turbo rows that way).
    """
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise DataError(f"prompt is not a Python list literal: {e}", file=file, row=row) from e
    if isinstance(value, (list, tuple, np.ndarray)):
        if not all(isinstance(x, str) for x in value):
            raise DataError("prompt list holds non-string items", file=file, row=row)
        parts = list(dict.fromkeys(value)) if len(set(value)) == 1 else [str(x) for x in value]
        value = "\n\n".join(parts)
    if not isinstance(value, str) or not value.strip():
        raise DataError("empty prompt", file=file, row=row)
    return value


def parse_response(value: Any) -> str | None:
    """A ``<model>|model_response`` cell as text: a (stringified) list of strings is parsed with
    :func:`ast.literal_eval` and its items joined by a newline; any other string (not a list of strings, or
    malformed) is kept as it is, so a bad cell never fails the load; NaN/None is no response."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        if not value.lstrip().startswith("["):
            return value
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
        if not isinstance(parsed, (list, tuple)) or not all(isinstance(x, str) for x in parsed):
            return value  # a list literal of other things is the text itself, e.g. an answer "[1, 2]"
        value = parsed
    if isinstance(value, (list, tuple, np.ndarray)):
        return "\n".join(str(x) for x in value)
    return str(value)


def wide_to_long(df: pd.DataFrame, *, file: str, split: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Validate one wide frame and melt it to canonical rows (plus ``_split``, ``_orig_index``); returns skip counts."""
    missing = [c for c in ("sample_id", "prompt", "eval_name") if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=file)
    models = model_columns(df.columns)
    if not models:
        raise DataError("no model columns (a model column m needs an 'm|total_cost' or 'm|model_response' column)",
                        file=file)
    df = df.reset_index(drop=True)
    succ = pd.DataFrame(index=df.index)
    for m in models:
        v = pd.to_numeric(df[m], errors="coerce")
        bad = (v.isna() & df[m].notna()) | (v < 0) | (v > 1)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"model column {m!r}: {_val(df[m].iloc[i])!r} is not a number in [0, 1]", file=file, row=i)
        succ[m] = v
    cost = pd.DataFrame(index=df.index)
    for m in models:
        c = f"{m}|total_cost"
        cost[m] = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.nan
        if c in df.columns:
            bad = (cost[m].isna() & df[c].notna()) | (cost[m] < 0)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{c!r}: {_val(df[c].iloc[i])!r} is not a non-negative number", file=file, row=i)
    resp = pd.DataFrame(index=df.index)
    for m in models:
        c = f"{m}|model_response"
        resp[m] = df[c].map(parse_response) if c in df.columns else None
    sid = df["sample_id"]
    empty = sid.isna() | (sid.astype(str).str.strip() == "")
    if empty.any():
        raise DataError("empty sample_id", file=file, row=int(np.flatnonzero(empty.to_numpy())[0]))

    skipped: dict[str, int] = {}
    has_any = succ.notna().any(axis=1).to_numpy()
    if (~has_any).any():
        skipped["RouterBench rows with no outcome for any model"] = int((~has_any).sum())
    rows = np.flatnonzero(has_any)
    prompts = [parse_prompt(df["prompt"].iloc[i], file=file, row=int(i)) for i in rows]
    n_missing = int(succ.iloc[rows].isna().to_numpy().sum())
    if n_missing:
        skipped["NaN prompt x model cells in the wide rows (before merging split rows)"] = n_missing

    base = pd.DataFrame({
        "sample_id": sid.iloc[rows].astype(str).to_numpy(),
        "prompt": prompts,
        "category": df["eval_name"].iloc[rows].astype(str).to_numpy(),
        "_orig_index": df["_orig_index"].iloc[rows].to_numpy() if "_orig_index" in df.columns else rows,
        "_row": rows,
    })
    s = succ.iloc[rows].to_numpy()
    c = cost.iloc[rows].to_numpy()
    r = resp.iloc[rows].to_numpy(dtype=object)
    P, M = s.shape
    long = pd.DataFrame({
        "_b": np.repeat(np.arange(P), M),
        "model": np.tile(np.array(models, dtype=object), P),
        "success": s.reshape(-1),
        "cost_usd": c.reshape(-1),
        "response": r.reshape(-1),
    })
    long = long[~np.isnan(long["success"].to_numpy())]
    out = base.iloc[long["_b"].to_numpy()].reset_index(drop=True)
    out["model"] = long["model"].to_numpy()
    out["success"] = long["success"].to_numpy()
    out["cost_usd"] = long["cost_usd"].to_numpy()
    out["response"] = long["response"].to_numpy()
    out["_file"] = file
    out["_split"] = split
    return out, skipped


def load_routerbench(
    source: str | Path | None = None,
    *,
    split: str = "all",
    subsets: Iterable[str] = SUBSETS,
    eval_names: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    allow_pickle: bool = False,
) -> OutcomeTable:
    """Canonical table of RouterBench outcomes.

    ``source``: a directory (or URL base) holding RouterDC's ``{subset}_{split}.csv`` files (default: the pinned
    RouterDC URL), a single ``.csv``/``.parquet``/``.pkl`` file, or ``"hf:withmartian/routerbench"`` for the full
    pickle (needs ``allow_pickle=True`` and ``huggingface_hub``). ``split`` (train/test/all) and ``subsets`` select
    RouterDC files; ``eval_names`` and ``models`` filter any source.
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
    src = ROUTERDC_BASE if source is None else str(source)
    parts: list[tuple[str, pd.DataFrame, str | None]] = []
    if src.startswith("hf:"):
        if not allow_pickle:
            raise DataError(f"the full RouterBench is a pickle ({HF_FILE}); pass allow_pickle=True to load it",
                            file=src)
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(src[3:], HF_FILE, repo_type="dataset")
        parts.append((path, read_wide(path, allow_pickle=True), None))
    elif src.startswith(("http://", "https://")) and not src.lower().endswith((".csv", ".parquet", ".pkl")) or \
            Path(src).is_dir():
        subsets = list(subsets)
        unknown = sorted(set(subsets) - set(SUBSETS))
        if unknown:
            raise ValueError(f"unknown RouterBench subset(s) {unknown}; known: {list(SUBSETS)}")
        for sub in subsets:
            for sp in (SPLITS if split == "all" else (split,)):
                f = f"{src.rstrip('/')}/{sub}_{sp}.csv"
                if not f.startswith("http") and not Path(f).exists():
                    raise DataError("RouterBench file missing", file=f)
                parts.append((f, read_wide(f), sp))
    else:
        if split != "all":
            raise ValueError("split selects RouterDC's per-split files; a single file holds what it holds (use 'all')")
        parts.append((src, read_wide(src, allow_pickle=allow_pickle), None))

    frames, skipped = [], {}
    for f, wide, sp in parts:
        long, sk = wide_to_long(wide, file=f, split=sp)
        frames.append(long)
        for k, v in sk.items():
            skipped[k] = skipped.get(k, 0) + v
    df = pd.concat(frames, ignore_index=True)
    if eval_names is not None:
        ev = set(eval_names)
        absent = sorted(ev - set(df["category"]))
        if absent:
            raise DataError(f"eval_names not in the data: {absent}", file=src)
        df = df[df["category"].isin(ev)]
    if models is not None:
        ms = list(models)
        absent = sorted(set(ms) - set(df["model"]))
        if absent:
            raise DataError(f"models not in the data: {absent}", file=src)
        df = df[df["model"].isin(ms)]
    df = df.reset_index(drop=True)

    # prompt_id = sample_id. Rows sharing a sample_id merge when they share the text and their models are disjoint
    # (RouterBench's split gpt-3.5 rows); any other reuse keeps the rows apart as sample_id#<original row index>.
    src_row = df["_file"].astype(str) + "\x00" + df["_row"].astype(str)
    g = df.assign(_src=src_row).groupby("sample_id", sort=False)
    n_src, n_txt = g["_src"].nunique(), g["prompt"].nunique()
    model_twice = df.duplicated(["sample_id", "model"], keep=False).groupby(df["sample_id"]).any()
    merged = (n_src > 1) & (n_txt == 1) & ~model_twice
    clash_ids = (n_src > 1) & ~merged
    clash = df["sample_id"].map(clash_ids).astype(bool)
    df["prompt_id"] = df["sample_id"].where(~clash, df["sample_id"] + "#" + df["_orig_index"].astype(str))
    per_new = src_row.groupby(df["prompt_id"]).nunique()
    bad = per_new.index[(per_new > 1) & ~per_new.index.isin(merged.index[merged])]
    if len(bad):
        raise DataError(f"sample_id {bad[0]!r} labels several rows that share one original index; cannot make "
                        "prompt ids unique", file=src)
    first = df.drop_duplicates("prompt_id")
    texts = first.groupby("prompt")["prompt_id"].nunique()
    extras: dict[str, Any] = {
        "merged_rows": int(merged.sum()),  # sample ids whose outcomes were spread over several rows
        "disambiguated_sample_ids": int(clash_ids.sum()),
        "duplicate_prompt_texts": int((texts > 1).sum()),  # same text under different sample ids (reported only)
        "cost_note": "cost_usd = RouterBench's <model>|total_cost (USD of that call)",
    }
    if any(sp is not None for _, _, sp in parts):
        # A merged prompt takes the split holding most of its outcomes; how many straddle two splits is reported.
        sp = df.groupby("prompt_id", sort=False)["_split"].agg(lambda s: s.value_counts().index[0])
        extras["cross_split_merges"] = int((df.groupby("prompt_id")["_split"].nunique() > 1).sum())
        extras["prompt_meta"] = {"split": sp.to_dict()}
    df["source"] = "routerbench"
    canon = df[["prompt_id", "prompt", "model", "success", "cost_usd", "response", "source", "category"]]
    return rows_to_table(canon, file=src, name="routerbench", skipped=skipped, extras=extras)
