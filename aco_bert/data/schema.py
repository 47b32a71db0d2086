"""The canonical outcome table: one row per (prompt, model) execution outcome.

Every adapter produces this table, and everything downstream (evaluation, training, stacking) reads it, so the
validation here is the one place where bad data is stopped. A row is never silently dropped: an adapter either
raises :class:`DataError` naming the file, row and reason, or counts what it skipped in ``OutcomeTable.skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from aco_bert.data.text import clean_text_error, is_blank, unicode_error

# Column -> (pandas dtype, required). Trace signals are observed *after* a run and may only be used by the cascade.
CANONICAL_COLUMNS: dict[str, tuple[str, bool]] = {
    "prompt_id": ("string", True),
    "prompt": ("string", True),
    "model": ("string", True),
    "success": ("float64", True),
    "cost_usd": ("float64", False),
    "input_tokens": ("float64", False),
    "output_tokens": ("float64", False),
    "api_calls": ("float64", False),
    "turns": ("float64", False),  # agent turns of the run: with a stated tokens-per-turn rule it yields cost
    "latency_s": ("float64", False),
    "source": ("string", False),
    "category": ("string", False),
    "step_type": ("string", False),
    # The text the model answered: a post-run trace like api_calls (it exists only once the model has run), so only
    # the cascade's verifier may read it, never the ex-ante router.
    "response": ("string", False),
}
TRACE_COLUMNS = ("api_calls", "latency_s", "cost_usd", "input_tokens", "output_tokens", "turns")
PROMPT_META_COLUMNS = ("source", "category", "step_type")
STEP_TYPES = ("search", "read", "edit", "test", "verify", "plan")


class DataError(ValueError):
    """Bad input data. The message names the file, the row (0-based data row) and the reason."""

    def __init__(self, reason: str, *, file: str | None = None, row: int | str | None = None):
        self.reason, self.file, self.row = reason, file, row
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


@dataclass
class OutcomeTable:
    """A validated canonical table plus a record of anything an adapter skipped (never silently)."""

    df: pd.DataFrame
    name: str = "outcomes"
    skipped: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"].tolist()))

    @property
    def n_prompts(self) -> int:
        return int(self.df["prompt_id"].nunique())

    def select_models(self, models: Iterable[str]) -> "OutcomeTable":
        models = list(models)
        have = set(self.df["model"].unique())
        missing = [m for m in models if m not in have]
        if missing:
            raise DataError(f"models not in table {self.name!r}: {missing}")
        df = self.df[self.df["model"].isin(models)].reset_index(drop=True)
        return OutcomeTable(df, self.name, dict(self.skipped), dict(self.extras))

    def matrix(self, models: Iterable[str] | None = None) -> "OutcomeMatrix":
        return OutcomeMatrix.from_table(self, models)

    def report_skipped(self) -> str:
        if not self.skipped:
            return f"{self.name}: nothing skipped"
        return f"{self.name}: skipped " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items()))


def validate_table(df: pd.DataFrame, *, file: str = "<table>", row_offset: int = 0) -> pd.DataFrame:
    """Coerce ``df`` to the canonical schema or raise a :class:`DataError` naming the first bad row.

    ``row_offset`` maps the frame's positional index back to the row number a user sees in the file.
    """
    missing = [c for c, (_, req) in CANONICAL_COLUMNS.items() if req and c not in df.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; have {list(df.columns)}", file=file)
    out = pd.DataFrame(index=range(len(df)))
    df = df.reset_index(drop=True)
    for col, (dtype, _req) in CANONICAL_COLUMNS.items():
        if col not in df.columns:
            out[col] = pd.Series([pd.NA] * len(df), dtype=dtype) if dtype == "string" else np.nan
            continue
        s = df[col]
        if dtype == "float64":
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna() & (s.astype("string").str.strip() != "")
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"non-numeric {col} {s.iloc[i]!r}", file=file, row=i + row_offset)
            out[col] = num.astype("float64")
        else:
            out[col] = s.astype("string")
    for col in ("prompt_id", "model"):
        empty = out[col].isna() | (out[col].str.strip() == "")
        if empty.any():
            raise DataError(f"empty {col}", file=file, row=int(np.flatnonzero(empty.to_numpy())[0]) + row_offset)
    empty = out["prompt"].isna() | (out["prompt"].str.strip() == "")
    if empty.any():
        raise DataError("empty prompt", file=file, row=int(np.flatnonzero(empty.to_numpy())[0]) + row_offset)
    check_text(out, file=file, row_offset=row_offset)
    succ = out["success"].to_numpy()
    bad = np.isnan(succ) | (succ < 0) | (succ > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"success {df['success'].iloc[i]!r} is not a number in [0, 1]", file=file, row=i + row_offset)
    for col in ("cost_usd", "input_tokens", "output_tokens", "api_calls", "turns", "latency_s"):
        v = out[col].to_numpy()
        neg = ~np.isnan(v) & (v < 0)
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise DataError(f"negative {col} {v[i]!r}", file=file, row=i + row_offset)
    dup = out.duplicated(["prompt_id", "model"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"duplicate prompt x model ({out['prompt_id'].iloc[i]!r}, {out['model'].iloc[i]!r})",
            file=file,
            row=i + row_offset,
        )
    # One text per prompt id: two different texts under one id would silently mislabel one of them.
    texts = out.groupby("prompt_id", sort=False)["prompt"].nunique()
    if (texts > 1).any():
        pid = texts.index[texts > 1][0]
        i = int(np.flatnonzero((out["prompt_id"] == pid).to_numpy())[1])
        raise DataError(f"prompt_id {pid!r} has more than one prompt text", file=file, row=i + row_offset)
    if "step_type" in df.columns:
        st = out["step_type"].dropna()
        bad_st = ~st.isin(STEP_TYPES)
        if bad_st.any():
            i = int(st.index[bad_st.to_numpy()][0])
            raise DataError(f"unknown step_type {st.loc[i]!r}; expected one of {STEP_TYPES}", file=file, row=i + row_offset)
    return out


TEXT_COLUMNS = ("prompt_id", "prompt", "model", "source", "category", "step_type", "response")


def check_text(out: pd.DataFrame, *, file: str, row_offset: int = 0) -> None:
    """Every text cell is valid Unicode (no lone surrogate) and no prompt is invisible-only (zero-width / BOM /
    NUL): :func:`aco_bert.data.text.clean_text_error`, the check the scorer and the router make too, so a table
    never holds a prompt they would refuse. Raises DataError naming the first bad row."""
    for col in TEXT_COLUMNS:
        if col not in out.columns:
            continue
        s = out[col]
        present = s.notna().to_numpy()
        if not present.any():
            continue
        bad = np.zeros(len(s), dtype=bool)
        bad[present] = s[present].astype(object).str.contains("[\ud800-\udfff]", regex=True).to_numpy(dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{col} is {unicode_error(str(s.iloc[i]))}", file=file, row=i + row_offset)
    uniq = out["prompt"].dropna().drop_duplicates()  # index: the first row holding each text
    for i, text in uniq.items():
        if is_blank(text):
            raise DataError(f"empty prompt: {clean_text_error(text)}", file=file, row=int(i) + row_offset)


@dataclass
class OutcomeMatrix:
    """Dense prompt x model view of a table: what policies, evaluators and trainers consume.

    ``success``/``cost`` and every trace array are ``(n_prompts, n_models)`` float arrays with NaN where a model
    has no outcome for a prompt (a missing outcome is *unknown*, never a failure). ``responses`` is the
    ``(n_prompts, n_models)`` object array of the models' answer texts (None where a model has none), or None when
    the table has no response at all: a post-run trace for the cascade's verifier, never a router input.
    """

    prompt_ids: list[str]
    prompts: list[str]
    models: list[str]
    success: np.ndarray
    cost: np.ndarray
    traces: dict[str, np.ndarray]
    meta: pd.DataFrame  # one row per prompt: source, category, step_type (+ any adapter extras)
    responses: np.ndarray | None = None  # (n_prompts, n_models) object array of str / None; None = no responses

    @classmethod
    def from_table(cls, table: OutcomeTable, models: Iterable[str] | None = None) -> "OutcomeMatrix":
        df = table.df
        models = list(models) if models is not None else table.models
        have = set(df["model"].unique())  # once: iterating the Arrow column per model is quadratic
        unknown = [m for m in models if m not in have]
        if unknown:
            raise DataError(f"models not in table {table.name!r}: {unknown}")
        df = df[df["model"].isin(models)]
        first = df.drop_duplicates("prompt_id", keep="first").set_index("prompt_id")
        pids = first.index.tolist()
        mats: dict[str, np.ndarray] = {}
        for col in ("success",) + TRACE_COLUMNS:
            wide = df.pivot(index="prompt_id", columns="model", values=col)
            mats[col] = wide.reindex(index=pids, columns=models).to_numpy(dtype=float)
        meta_cols = [c for c in PROMPT_META_COLUMNS if c in first.columns]
        meta = first[meta_cols].reset_index()
        for k, v in table.extras.get("prompt_meta", {}).items():
            meta[k] = meta["prompt_id"].map(v)
        return cls(
            prompt_ids=pids,
            prompts=first["prompt"].astype(str).tolist(),
            models=models,
            success=mats.pop("success"),
            cost=mats.pop("cost_usd"),
            traces=mats,
            meta=meta,
            responses=response_matrix(df, pids, models),
        )

    @property
    def n_prompts(self) -> int:
        return len(self.prompt_ids)

    def subset(self, idx: np.ndarray | list[int]) -> "OutcomeMatrix":
        idx = np.asarray(idx)
        return OutcomeMatrix(
            prompt_ids=[self.prompt_ids[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            models=list(self.models),
            success=self.success[idx],
            cost=self.cost[idx],
            traces={k: v[idx] for k, v in self.traces.items()},
            meta=self.meta.iloc[idx].reset_index(drop=True),
            responses=None if self.responses is None else self.responses[idx],
        )

    def select_models(self, models: list[str]) -> "OutcomeMatrix":
        cols = [self.models.index(m) for m in models]
        return OutcomeMatrix(
            prompt_ids=list(self.prompt_ids),
            prompts=list(self.prompts),
            models=list(models),
            success=self.success[:, cols],
            cost=self.cost[:, cols],
            traces={k: v[:, cols] for k, v in self.traces.items()},
            meta=self.meta.copy(),
            responses=None if self.responses is None else self.responses[:, cols],
        )


def response_matrix(df: pd.DataFrame, prompt_ids: list[str], models: list[str]) -> np.ndarray | None:
    """The ``response`` column of canonical rows ``df`` as a (prompts, models) object array (None = no response),
    or None when no row has one, so tables without responses cost no (P, M) array."""
    if "response" not in df.columns:
        return None
    resp = df["response"]
    present = resp.notna().to_numpy()
    if not present.any():
        return None
    out = np.full((len(prompt_ids), len(models)), None, dtype=object)
    pi = pd.Index(prompt_ids).get_indexer(df["prompt_id"][present])
    mi = pd.Index(models).get_indexer(df["model"][present])
    out[pi, mi] = [str(v) for v in resp[present]]
    return out


def rows_to_table(rows: list[Mapping[str, Any]] | pd.DataFrame, *, file: str, name: str, **kw: Any) -> OutcomeTable:
    """Validate adapter output and wrap it; ``kw`` goes to :class:`OutcomeTable` (skipped, extras)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if len(df) == 0:  # an empty file, or every row skipped: "nothing skipped" over no data would hide it
        why = f" (skipped: {kw['skipped']})" if kw.get("skipped") else ""
        raise DataError(f"no outcome rows{why}", file=file)
    return OutcomeTable(validate_table(df, file=file), name=name, **kw)


def success_matrix(success, n: int) -> np.ndarray:
    """``success`` as an (n, T) float array in [0, 1] (NaN = unknown): the input check every router's ``fit``
    makes (peers, TF-IDF-LR, signals), with a clear error otherwise."""
    y = np.asarray(success, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"success must be (n_prompts, n_tiers) with n_prompts = {n}; got shape {y.shape}")
    known = y[~np.isnan(y)]
    if known.size and (known.min() < 0 or known.max() > 1):
        raise ValueError(f"success values must lie in [0, 1] (NaN = unknown); got [{known.min()}, {known.max()}]")
    return y
