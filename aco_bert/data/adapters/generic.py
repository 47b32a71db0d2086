"""Generic outcome files, so a user's own runs can be routed without writing an adapter.

Two layouts, in ``.jsonl``, ``.csv`` or ``.parquet``:

* **long**: one row per (prompt, model) with the canonical columns (:data:`~aco_bert.data.schema.CANONICAL_COLUMNS`;
  ``prompt_id, prompt, model, success`` required). Other columns holding one value per prompt are kept as
  per-prompt metadata (``extras["prompt_meta"]``, e.g. an auxiliary training target); the rest are ignored and
  listed in ``extras["ignored_columns"]``.
* **wide**: one row per prompt: ``prompt_id, prompt`` (optional ``source, category, step_type``), one success column
  per model, and optional trace columns ``<model>|cost`` (or ``|cost_usd``, ``|input_tokens``, ``|output_tokens``,
  ``|api_calls``, ``|turns``, ``|latency_s``) and the model's answer text ``<model>|response`` (read as is) or
  ``<model>|model_response`` (RouterBench's convention: a stringified list of strings is unwrapped, see
  :func:`~aco_bert.data.adapters.routerbench.parse_response`). An empty success cell means "not run" and is skipped
  and counted. Columns ``<x>|<other>`` are ignored and listed.

Tables without ``cost_usd`` but with tokens or agent ``turns`` get their cost from :mod:`aco_bert.data.costs`
(``load_outcomes(..., cost=...)``). A long table's ``response`` column is read as is. Responses are post-run traces: only the cascade reads them.

The layout is detected (a ``model`` column means long, otherwise wide) or given as ``format=``; a long file
without ``success`` is an error ("missing column success"), never read as a wide one with a model named "model".

Success must lie in [0, 1]; ``clip_success=True`` (``--clip_success``) clips values outside it (e.g. a -0.033
from a noisy grader) instead of refusing the file, and counts them in ``skipped`` and ``extras["clipped_success"]``.

Errors are :class:`~aco_bert.data.schema.DataError` naming the file, the row and the reason. **Rows are 0-based data
rows**, the convention of every adapter in this package: for JSONL the 0-based line index (line ``row + 1`` in an
editor; blank lines are skipped but keep their numbers); for CSV and parquet the index of the record after the
header (line ``row + 2`` of a CSV file without multi-line fields).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aco_bert.data.adapters.routerbench import parse_response
from aco_bert.data.io import csv_utf8_check, read_jsonl
from aco_bert.data.schema import CANONICAL_COLUMNS, PROMPT_META_COLUMNS, DataError, OutcomeTable, validate_table


def _val(v: object) -> object:
    """A cell as a plain Python value, so messages read 2.0 rather than np.float64(2.0)."""
    return v.item() if hasattr(v, "item") else v

TRACE_SUFFIXES = {"cost": "cost_usd", "cost_usd": "cost_usd", "input_tokens": "input_tokens",
                  "output_tokens": "output_tokens", "api_calls": "api_calls", "latency_s": "latency_s", "turns": "turns",
                  "response": "response", "model_response": "response"}
WIDE_ID_COLUMNS = ("prompt_id", "prompt")


def read_records(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a .jsonl/.csv/.parquet file as strings-preserving records; returns (frame, row number of each record)."""
    p = str(path)
    suffix = Path(p).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        pairs = list(read_jsonl(p))
        return pd.DataFrame.from_records([r for _, r in pairs]), np.asarray([i for i, _ in pairs], dtype=int)
    if suffix == ".csv":
        csv_utf8_check(p)
        try:
            # keep_default_na=False + explicit na_values: an empty cell is missing, but "NA" as a prompt stays text.
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no records", file=p) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"unreadable CSV: {e}", file=p) from e
        return df, np.arange(len(df))
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(p)
        except (OSError, ValueError) as e:  # a truncated or non-parquet file: pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"unreadable parquet: {e}", file=p) from e
        return df, np.arange(len(df))
    raise DataError(f"unsupported file type {suffix!r}; expected .jsonl, .csv or .parquet", file=p)


def detect_format(columns: list[str]) -> str:
    """Long when there is a ``model`` column (its ``success`` is then required), otherwise wide."""
    return "long" if "model" in columns else "wide"


def _validate(df: pd.DataFrame, rows: np.ndarray, file: str) -> pd.DataFrame:
    """schema.validate_table, with its positional row mapped back to the file's row numbers."""
    try:
        return validate_table(df, file=file)
    except DataError as e:
        if isinstance(e.row, (int, np.integer)) and 0 <= int(e.row) < len(rows):
            raise DataError(e.reason, file=file, row=int(rows[int(e.row)])) from e
        raise


def _check_success(s: pd.Series, rows: np.ndarray, file: str, what: str, clip: bool = False,
                   clipped: dict[str, int] | None = None) -> pd.Series:
    """Numeric success in [0, 1] or missing; errors name the row and, via ``what``, the column. With ``clip``,
    values outside [0, 1] are clipped and counted in ``clipped[what]`` instead."""
    num = pd.to_numeric(s, errors="coerce")
    present = s.notna() & (s.astype("string").str.strip() != "")
    bad = present & num.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{what}non-numeric success {_val(s.iloc[i])!r}", file=file, row=int(rows[i]))
    out_of = present & ((num < 0) | (num > 1))
    if out_of.any() and clip:
        if clipped is not None:
            clipped[what or "success"] = int(out_of.sum())
        return num.clip(0.0, 1.0).where(present)
    if out_of.any():
        i = int(np.flatnonzero(out_of.to_numpy())[0])
        raise DataError(f"{what}success {_val(s.iloc[i])!r} is not in [0, 1] (pass clip_success=True / "
                        "--clip_success to clip such values)", file=file, row=int(rows[i]))
    return num.where(present)


def _clip_record(clipped: dict[str, int], skipped: dict[str, int], extras: dict[str, Any]) -> None:
    if clipped:
        n = sum(clipped.values())
        skipped["success values outside [0, 1] clipped (kept)"] = n
        extras["clipped_success"] = dict(clipped)


def load_long(df: pd.DataFrame, rows: np.ndarray, *, file: str, name: str, clip_success: bool = False
              ) -> OutcomeTable:
    if "success" not in df.columns:
        raise DataError(f"missing required column(s) ['success']: missing column success (a long file, one row per "
                        f"prompt x model: it has a 'model' column or format='long'); have {list(df.columns)}", file=file)
    ignored = [c for c in df.columns if c not in CANONICAL_COLUMNS]
    clipped: dict[str, int] = {}
    succ = _check_success(df["success"].reset_index(drop=True), rows, file, "", clip_success, clipped)
    if clipped:
        df = df.reset_index(drop=True).assign(success=succ)
    out = _validate(df.drop(columns=ignored), rows, file)
    extras: dict[str, Any] = {"format": "long"}
    skipped: dict[str, int] = {}
    _clip_record(clipped, skipped, extras)
    # An extra column with one value per prompt is per-prompt metadata (e.g. SWE-bench's `difficulty`, an
    # auxiliary training target): kept as prompt_meta. Anything that varies within a prompt is ignored and listed.
    meta: dict[str, dict[str, Any]] = {}
    for c in list(ignored):
        col = df[c].reset_index(drop=True)
        per_prompt = col.groupby(out["prompt_id"].to_numpy(), sort=False)
        if (per_prompt.nunique(dropna=False) <= 1).all():
            meta[c] = {str(k): (None if pd.isna(v) else _val(v)) for k, v in per_prompt.first().items()}
            ignored.remove(c)
    if meta:
        extras["prompt_meta"] = meta
    if ignored:
        extras["ignored_columns"] = ignored
    return OutcomeTable(out, name=name, skipped=skipped, extras=extras)


def load_wide(df: pd.DataFrame, rows: np.ndarray, *, file: str, name: str, clip_success: bool = False
              ) -> OutcomeTable:
    missing = [c for c in WIDE_ID_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing} for the wide format; have {list(df.columns)}",
                        file=file)
    cols = [str(c) for c in df.columns]
    meta = [c for c in PROMPT_META_COLUMNS if c in cols]
    models = [c for c in cols if "|" not in c and c not in (*WIDE_ID_COLUMNS, *meta)]
    if not models:
        raise DataError("no model success columns in the wide format", file=file)
    traces: dict[str, dict[str, str]] = {m: {} for m in models}
    ignored = []
    for c in cols:
        if "|" not in c:
            continue
        m, kind = c.rsplit("|", 1)
        if m in traces and kind in TRACE_SUFFIXES and TRACE_SUFFIXES[kind] not in traces[m]:
            traces[m][TRACE_SUFFIXES[kind]] = c
        else:
            ignored.append(c)
    df = df.reset_index(drop=True)
    # Check every success cell here, so the error names the model column as well as the row.
    clipped: dict[str, int] = {}
    succ = {m: _check_success(df[m], rows, file, f"model column {m!r}: ", clip_success, clipped) for m in models}
    P = len(df)
    frames, row_of = [], []
    for m in models:
        has = succ[m].notna().to_numpy()
        part = pd.DataFrame({"prompt_id": df["prompt_id"], "prompt": df["prompt"], "model": m, "success": succ[m]})
        for col in meta:
            part[col] = df[col]
        for canon, c in traces[m].items():
            part[canon] = df[c].map(parse_response) if c.endswith("|model_response") else df[c]
        frames.append(part[has])
        row_of.append(rows[:P][has])
    long = pd.concat(frames, ignore_index=True)
    if len(long) == 0:
        raise DataError(f"no outcomes: every success cell of the {len(models)} model column(s) is empty", file=file)
    long_rows = np.concatenate(row_of) if row_of else np.zeros(0, dtype=int)
    # Sort by file row so the first bad row reported is the first in the file.
    order = np.argsort(long_rows, kind="stable")
    long, long_rows = long.iloc[order].reset_index(drop=True), long_rows[order]
    out = _validate(long, long_rows, file)
    n_missing = int(sum((~succ[m].notna()).sum() for m in models))
    extras: dict[str, Any] = {"format": "wide", "models": models}
    if ignored:
        extras["ignored_columns"] = ignored
    skipped = {"empty prompt x model success cells": n_missing} if n_missing else {}
    _clip_record({k.removeprefix("model column ").rstrip(": "): v for k, v in clipped.items()}, skipped, extras)
    return OutcomeTable(out, name=name, skipped=skipped, extras=extras)


def load_generic(path: str | Path, *, format: str | None = None, name: str | None = None,
                 models: list[str] | None = None, clip_success: bool = False,
                 rename: dict[str, str] | None = None) -> OutcomeTable:
    """Load a generic long or wide outcome file (see the module docstring); ``name``: the table's name (default
    the file stem); ``models`` keeps only those; ``clip_success`` clips success outside [0, 1] (counted) instead
    of refusing the file; ``rename``: column -> canonical name (wide: ``<model>|<column>`` too), e.g. a cost rule's
    ``turns_column``."""
    p = str(path)
    if format not in (None, "long", "wide"):
        raise ValueError(f"format must be 'long', 'wide' or None (detect), got {format!r}")
    df, rows = read_records(p)
    if df.empty:
        raise DataError("no records", file=p)
    for old, new in (rename or {}).items():
        df = df.rename(columns={c: (new if c == old else f"{c[:-len(old)]}{new}" if c.endswith("|" + old) else c)
                                for c in df.columns})
    fmt = format or detect_format([str(c) for c in df.columns])
    nm = name or Path(p).stem
    load = load_long if fmt == "long" else load_wide
    table = load(df, rows, file=p, name=nm, clip_success=clip_success)
    if models is not None:
        table = table.select_models(models)
    return table
