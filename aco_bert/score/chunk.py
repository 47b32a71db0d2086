"""Scoring one chunk of rows in memory: validate each row, route the valid ones in fixed batches, mark the rest.

Deterministic in the chunk alone (batches depend only on the chunk's own texts), which is what makes a resumed
run and a run with any number of worker processes write the same bytes as one uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Sequence

from aco_bert.data.schema import STEP_TYPES
from aco_bert.data.text import printable, unicode_error
from aco_bert.score.cascade import cascade_columns
from aco_bert.score.rows import (ChunkResult, Columns, finite, is_missing, out_id_name, output_schema, row_budget,
                                 row_domain, row_step_type, row_text)
from aco_bert.score.sources import Chunk
from aco_bert.types import Decision, RoutingInputError


def score_chunk(router: Any, chunk: Chunk, cols: Columns, batch_size: int = 32) -> ChunkResult:
    """Score one chunk: validate every row, route the valid ones in batches of ``batch_size`` (prompts of similar
    length together), and return the chunk's rows, in input order, in :func:`output_schema` with bad rows marked.
    Deterministic in the chunk alone."""
    import pyarrow as pa

    assert chunk.columns is not None, "a skipped chunk cannot be scored"
    c = chunk.columns
    n = chunk.n
    step_allowed = frozenset(STEP_TYPES) | frozenset(getattr(router.spec, "step_type_min", {}) or {})
    err: dict[int, str] = dict(chunk.bad)
    texts: list[str | None] = [None] * n
    steps: list[str | None] = [None] * n
    doms: list[Any] = [None] * n
    buds: list[float | None] = [None] * n
    for i in range(n):
        if i in err:
            continue
        try:
            texts[i] = row_text(c[cols.text][i], c[cols.messages][i], cols.text, cols.messages)
            if cols.step_type:
                steps[i] = row_step_type(c[cols.step_type][i], step_allowed)
            if cols.domain:
                doms[i] = row_domain(c[cols.domain][i])
            if cols.budget:
                buds[i] = row_budget(c[cols.budget][i])
        except ValueError as e:
            err[i] = str(e)
        if cols.id and i not in err and isinstance(c[cols.id][i], str) and (why := unicode_error(c[cols.id][i])):
            err[i] = f"column {cols.id!r}: id is {why} (written escaped)"
    # Batches of similar length waste little on padding (the encoder's cost is batch x longest prompt). Sorting
    # by characters (a tokenizer-free proxy for tokens), ties by position, keeps every chunk's batches fixed.
    ok = sorted((i for i in range(n) if i not in err), key=lambda i: (len(texts[i] or ""), i))
    dec: dict[int, Decision] = {}
    for b in range(0, len(ok), batch_size):
        idx = ok[b:b + batch_size]
        kw: dict[str, Any] = {"step_types": [steps[i] for i in idx]}
        if cols.domain:
            kw["domains"] = [doms[i] for i in idx]
        if cols.budget:
            kw["budgets"] = [buds[i] for i in idx]
        try:
            out = router.route_batch([texts[i] for i in idx], **kw)
        except RoutingInputError:
            # One refused row must not sink its batch: route one by one to find and mark it.
            out = []
            for i in idx:
                try:
                    out.append(router.route(texts[i], step_type=steps[i], domain=doms[i], budget=buds[i]))
                except RoutingInputError as e:
                    err[i] = str(e)
                    out.append(None)
        for i, d in zip(idx, out):
            if d is not None:
                dec[i] = d
    models = [t.model for t in router.spec.tiers]
    T = len(models)
    rows = list(range(chunk.start, chunk.start + n))
    data: dict[str, list[Any]] = {"row": rows}
    if cols.id:
        data[out_id_name(cols.id)] = [None if is_missing(v) else printable(str(v)) for v in c[cols.id]]
    raw_steps = c[cols.step_type] if cols.step_type else [None] * n
    # Input strings echoed into the output are escaped: a lone surrogate cannot be written as UTF-8 or Arrow.
    data["step_type"] = [steps[i] if i in dec else (printable(raw_steps[i]) if isinstance(raw_steps[i], str) and
                                                     raw_steps[i].strip() else None) for i in range(n)]
    data["tier"] = [dec[i].tier if i in dec else None for i in range(n)]
    data["model"] = [dec[i].model if i in dec else None for i in range(n)]
    data["p_success"] = [finite(dec[i].p_success) if i in dec else None for i in range(n)]
    data["exp_cost"] = [finite(dec[i].cost) if i in dec else None for i in range(n)]
    for t, m in enumerate(models):
        data[f"p:{m}"] = [finite(dec[i].probs[t]) if i in dec else None for i in range(n)]
    for t, m in enumerate(models):
        data[f"cost:{m}"] = [finite(dec[i].expected_cost[t]) if i in dec else None for i in range(n)]
    data["min_tier"] = [dec[i].min_tier if i in dec else None for i in range(n)]
    data["policy"] = [dec[i].policy if i in dec else None for i in range(n)]
    data["n_tokens"] = [dec[i].n_tokens if i in dec else None for i in range(n)]
    data["truncated"] = [bool(dec[i].truncated) if i in dec else None for i in range(n)]
    data["reasons"] = [list(dec[i].reasons) if i in dec else None for i in range(n)]
    data["error"] = [None if i not in err else printable(err[i]) for i in range(n)]
    casc_err: dict[int, str] = {}
    if cols.cascade:
        casc, casc_err = cascade_columns(router, c, cols, dec, texts, steps, n)
        data.update(casc)
    for i in dec:
        if len(dec[i].probs) != T:
            raise RuntimeError(f"router returned {len(dec[i].probs)} probabilities for {T} tiers")
    table = pa.Table.from_pydict(data, schema=output_schema(models, cols.id, cascade=cols.cascade))
    errors = sorted((chunk.start + i, printable(r)) for i, r in err.items())
    return ChunkResult(chunk.index, chunk.start, n, table, errors, len(errors),
                       sorted((chunk.start + i, r) for i, r in casc_err.items()))


def score_texts(router: Any, prompts: Sequence[Any], *, step_types: Sequence[Any] | None = None,
                ids: Sequence[Any] | None = None, domains: Sequence[Any] | None = None,
                budgets: Sequence[Any] | None = None, batch_size: int = 32):
    """In-memory scoring (no files, no resume): a pandas DataFrame in :func:`output_schema`, one row per prompt,
    bad prompts marked in ``error``. Same validation and batching as the file scorer, for callers that already
    hold their prompts (the demo, notebooks)."""
    n = len(prompts)
    cols = {"prompt": list(prompts), "messages": [None] * n}
    names = Columns("prompt", "messages", None, None, None, None)
    for key, vals in (("step_type", step_types), ("id", ids), ("domain", domains), ("budget", budgets)):
        if vals is not None:
            if len(vals) != n:
                raise ValueError(f"{key} has {len(vals)} values for {n} prompts")
            cols[key] = list(vals)
            setattr(names, key, key)
    table = score_chunk(router, Chunk(0, 0, n, cols), names, batch_size).table
    return table.to_pandas()
