"""Several outcome tables as one (multi-dataset training): the union of prompts and of models, NaN where a model did
not run a prompt.

Why: one router trained on several outcome tables at once. Every head is a model of one member table; a prompt of
one member has no outcome for another member's models, and the masked BCE ignores exactly those cells (a missing
outcome is unknown, never a failure). ``load_outcomes("pooled", tables=[...])`` pools any members;
``swebench-pooled`` is the pool of the bash-only leaderboard and the OpenHands Index on the same 500 tasks.

Names, always prefixed so a name says where it came from (two members may share model names, and a report can take
one member back out with :func:`member_table`):

* model ``<prefix>/<model>``;
* prompt id ``<prefix>/<id>``, unless ``shared_prompts`` (the members score the very same prompts, e.g. SWE-bench
  Verified instances: ids stay as they are and must name one text in every member, which is checked);
* prefix: the member's ``prefix``, else its dataset name (a path: the file stem); it may not contain ``/``;
* prompt meta column ``source_table``: the prefix of the member a prompt comes from (``+``-joined when shared).

What a pool can share between tables: the encoder and any head parameter the tiers share (``success_rank``). With
a frozen encoder and one independent linear head per tier, a head of one table learns exactly what it learns alone
(only the batch schedule differs); pooling then shows up only in how the batches are drawn.

Folds: the trainer's k-fold rule (:func:`aco_bert.data.splits.kfold` over the run's prompt list) gives a member's
prompts other folds in a pooled run than in a run on that member alone. ``member_folds={k, seed}`` orders the pooled
prompts so that it gives each of them exactly the fold it has in the member's own run (:func:`align_member_folds`),
so a pooled run and single-table runs are compared on the same outer folds.

A member is a dataset name (or path), or a mapping ``{dataset, prefix, options, max_prompts, seed}``: ``options``
are the member loader's keyword arguments; ``max_prompts`` keeps the seeded slice of its prompts that
:func:`aco_bert.data.splits.subsample` draws (what ``train --max_prompts N`` takes from that table alone when the
spec has every model), so a pooled run sees the prompts of an earlier single-table run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from aco_bert.data.schema import OutcomeTable, rows_to_table

SEP = "/"
SOURCE_TABLE = "source_table"  # prompt meta column: the member(s) a prompt comes from
POOL = "pool"  # extras key: {"shared_prompts": bool, "members": {prefix: member record}}
MEMBER_KEYS = ("dataset", "prefix", "options", "max_prompts", "seed")


@dataclass(frozen=True)
class PoolMember:
    """One member table of a pool: what to load and under which prefix."""

    dataset: str
    prefix: str
    options: dict[str, Any] = field(default_factory=dict)
    max_prompts: int | None = None
    seed: int = 0

    def record(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "options": dict(self.options), "max_prompts": self.max_prompts,
                "seed": self.seed}


def parse_members(tables: Any) -> list[PoolMember]:
    """The members named by ``tables`` (a non-empty list of names/paths or mappings), checked, with a clear error."""
    from aco_bert.data.registry import DATASETS

    hint = ("pooled needs tables: a non-empty list of dataset names (or paths) or mappings {dataset, prefix, "
            "options, max_prompts, seed}, e.g. --dataset_options '{tables: [routerbench, mmlu-pro]}'")
    if isinstance(tables, (str, Mapping)) or not isinstance(tables, Sequence) or not tables:
        raise ValueError(f"{hint}; got {tables!r}")
    out: list[PoolMember] = []
    for i, t in enumerate(tables):
        d = {"dataset": t} if isinstance(t, (str, Path)) else t
        if not isinstance(d, Mapping) or not d.get("dataset"):
            raise ValueError(f"pooled member {i} ({t!r}): needs a dataset name or path; {hint}")
        unknown = sorted(set(d) - set(MEMBER_KEYS))
        if unknown:
            raise ValueError(f"pooled member {i} ({d['dataset']!r}): unknown key(s) {unknown}; known: {list(MEMBER_KEYS)}")
        ds = str(d["dataset"])
        prefix = str(d.get("prefix") or (ds if ds in DATASETS else Path(ds).stem))
        if not prefix or SEP in prefix:
            raise ValueError(f"pooled member {i} ({ds!r}): prefix {prefix!r} must be non-empty and without {SEP!r}")
        opts = d.get("options") or {}
        if not isinstance(opts, Mapping):
            raise ValueError(f"pooled member {i} ({ds!r}): options must be a mapping, got {opts!r}")
        mp = d.get("max_prompts")
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
            raise ValueError(f"pooled member {i} ({ds!r}): max_prompts must be a positive integer, got {mp!r}")
        out.append(PoolMember(ds, prefix, dict(opts), mp, int(d.get("seed") or 0)))
    dup = sorted({m.prefix for m in out if [x.prefix for x in out].count(m.prefix) > 1})
    if dup:
        raise ValueError(f"pooled: prefix(es) {dup} name more than one member; give each a distinct 'prefix'")
    return out


def slice_prompts(table: OutcomeTable, max_prompts: int | None, seed: int = 0) -> OutcomeTable:
    """``table`` restricted to the seeded prompt slice :func:`~aco_bert.data.splits.subsample` draws over its
    prompts (every model), or ``table`` itself without ``max_prompts``."""
    from aco_bert.data.splits import subsample

    if max_prompts is None:
        return table
    pids = table.matrix().prompt_ids
    keep = {pids[i] for i in subsample(len(pids), max_prompts, seed)}
    df = table.df[table.df["prompt_id"].isin(keep)].reset_index(drop=True)
    return OutcomeTable(df, table.name, dict(table.skipped), dict(table.extras))


def pool_tables(tables: Mapping[str, OutcomeTable], *, name: str = "pooled", shared_prompts: bool = False,
                members: Mapping[str, Mapping[str, Any]] | None = None) -> OutcomeTable:
    """One table from several (``tables`` maps prefix -> table; naming as in the module docstring). Skipped counts
    and unknown costs keep their prefix; each member's other extras are kept under ``extras["member_extras"]``;
    ``members`` (prefix -> how it was loaded) is recorded in ``extras["pool"]``."""
    if not tables:
        raise ValueError("pool_tables needs at least one table")
    frames, skipped = [], {}
    extras: dict[str, Any] = {"cost_unknown": {}, "cost_unknown_reason": {}, "prompt_meta": {}, "pooled_from": {},
                              "member_extras": {},
                              POOL: {"shared_prompts": bool(shared_prompts), "members": {}}}
    sources: dict[str, list[str]] = {}
    for prefix, t in tables.items():
        if SEP in prefix or not prefix:
            raise ValueError(f"pool prefix {prefix!r} must be non-empty and without {SEP!r}")
        df = t.df.copy()
        df["model"] = prefix + SEP + df["model"].astype(str)
        pid = (lambda p: p) if shared_prompts else (lambda p, _x=prefix: f"{_x}{SEP}{p}")
        if not shared_prompts:
            df["prompt_id"] = df["prompt_id"].astype(str).map(pid)
        frames.append(df)
        for p in dict.fromkeys(df["prompt_id"].tolist()):
            sources.setdefault(p, []).append(prefix)
        extras["pooled_from"][prefix] = t.name
        extras[POOL]["members"][prefix] = {"name": t.name, **dict((members or {}).get(prefix) or {})}
        extras["member_extras"][prefix] = {k: v for k, v in t.extras.items() if k != "prompt_meta"}
        for k, v in t.skipped.items():
            skipped[f"{prefix}: {k}"] = v
        for key in ("cost_unknown", "cost_unknown_reason"):
            for m, v in (t.extras.get(key) or {}).items():
                extras[key][f"{prefix}{SEP}{m}"] = v
        present = set(t.df["prompt_id"].astype(str))
        for k, v in (t.extras.get("prompt_meta") or {}).items():
            merged = extras["prompt_meta"].setdefault(k, {})
            for p, x in v.items():
                if str(p) in present:
                    merged.setdefault(pid(str(p)), x)
    extras["prompt_meta"][SOURCE_TABLE] = {p: "+".join(v) for p, v in sources.items()}
    df = pd.concat(frames, ignore_index=True)
    return rows_to_table(df, file=" + ".join(t.name for t in tables.values()), name=name, skipped=skipped,
                         extras=extras)


def align_member_folds(table: OutcomeTable, k: int = 5, seed: int = 0) -> OutcomeTable:
    """The pool with its prompts reordered so that ``kfold(pool prompts, k, seed)`` puts every member prompt in the
    fold ``kfold(that member's prompts, k, seed)`` puts it in (both in table order: what ``train --kfold k --seed
    seed`` does with every prompt of the table). Possible when the members' fold sizes add up to the pool's; a clear
    error otherwise (trim a member with ``max_prompts`` to a multiple of ``k``)."""
    from aco_bert.data.splits import kfold

    info = pool_info(table)
    if info is None or info["shared_prompts"]:
        raise ValueError("member_folds needs a pool of tables with their own prompts (shared_prompts: false); a pool "
                         "over shared prompts already keeps the first member's prompt order")
    pids = list(dict.fromkeys(table.df["prompt_id"].astype(str)))
    want: dict[str, int] = {}
    for prefix in info["members"]:
        mine = [p for p in pids if p.startswith(prefix + SEP)]
        for f in kfold(mine, k, seed):
            want.update({mine[i]: f.index for i in f.test})
    slots = np.zeros(len(pids), dtype=int)
    for f in kfold(len(pids), k, seed):
        slots[f.test] = f.index
    queues = {v: [p for p in pids if want[p] == v] for v in range(k)}
    sizes = {v: (len(queues[v]), int((slots == v).sum())) for v in range(k)}
    if any(a != b for a, b in sizes.values()):
        raise ValueError(f"member_folds: the members' {k} fold sizes {[a for a, _ in sizes.values()]} do not add up "
                         f"to the pool's {[b for _, b in sizes.values()]}; trim a member (max_prompts) to a multiple of "
                         f"{k} prompts")
    pos = {v: 0 for v in range(k)}
    order = []
    for v in slots:  # the j-th prompt of the pool: the next member prompt wanted in the fold of slot j
        order.append(queues[v][pos[v]])
        pos[v] += 1
    rank = {p: j for j, p in enumerate(order)}
    df = table.df.assign(_pos=table.df["prompt_id"].astype(str).map(rank))
    df = df.sort_values("_pos", kind="stable").drop(columns="_pos").reset_index(drop=True)
    return OutcomeTable(df, table.name, dict(table.skipped), {**table.extras, POOL: {**info, "member_folds":
                                                                                      {"k": k, "seed": seed}}})


def load_pooled(data_dir: str | Path | None, tables: Any, *, shared_prompts: bool = False,
                name: str = "pooled", member_folds: Mapping[str, int] | None = None) -> OutcomeTable:
    """Load every member with :func:`~aco_bert.data.registry.load_outcomes` and pool them (``pooled`` dataset);
    ``member_folds={k, seed}``: :func:`align_member_folds`."""
    from aco_bert.data.registry import load_outcomes

    if member_folds is not None and (not isinstance(member_folds, Mapping) or set(member_folds) - {"k", "seed"}):
        raise ValueError(f"member_folds must be a mapping {{k, seed}} (the run's --kfold and --seed), got {member_folds!r}")
    loaded, records = {}, {}
    for i, m in enumerate(parse_members(tables)):
        try:
            t = load_outcomes(m.dataset, data_dir=data_dir, **m.options)
        except (ValueError, TypeError, FileNotFoundError) as e:
            raise type(e)(f"pooled member {i} ({m.dataset!r}): {e}") from e
        loaded[m.prefix], records[m.prefix] = slice_prompts(t, m.max_prompts, m.seed), m.record()
    pooled = pool_tables(loaded, name=name, shared_prompts=shared_prompts, members=records)
    if member_folds is None:
        return pooled
    return align_member_folds(pooled, int(member_folds.get("k", 5)), int(member_folds.get("seed", 0)))


# --- one member back out of a pool (the report evaluates a pooled run on one member's prompts) ------------------

def pool_info(table: OutcomeTable) -> dict[str, Any] | None:
    """``{"shared_prompts", "members": {prefix: {name, dataset, ...}}}`` of a pooled table, None for any other."""
    return table.extras.get(POOL)


def resolve_member(table: OutcomeTable, which: str) -> str:
    """The prefix of the member ``which`` names: a prefix, else a member's dataset or table name (unique)."""
    info = pool_info(table)
    if info is None:
        raise ValueError(f"table {table.name!r} is not a pool of tables")
    members = info["members"]
    if which in members:
        return which
    hits = [p for p, r in members.items() if which in (r.get("dataset"), r.get("name"))]
    if len(hits) != 1:
        known = {p: r.get("dataset") or r.get("name") for p, r in members.items()}
        raise ValueError(f"{which!r} is {'ambiguous' if hits else 'not a member'} of the pool {table.name!r}; "
                         f"members (prefix: dataset): {known}")
    return hits[0]


def pooled_prompt_id(table: OutcomeTable, prefix: str, prompt_id: str) -> str:
    """The pool's id of member ``prefix``'s prompt ``prompt_id``."""
    return prompt_id if pool_info(table)["shared_prompts"] else f"{prefix}{SEP}{prompt_id}"


def member_table(table: OutcomeTable, which: str) -> OutcomeTable:
    """The rows of one member of a pooled table under the member's own names (model and prompt prefixes removed),
    with its skipped counts, extras and prompt meta as the member had them (rows in the pool's order)."""
    prefix = resolve_member(table, which)
    info = pool_info(table)
    head = prefix + SEP
    df = table.df[table.df["model"].str.startswith(head)].copy()
    df["model"] = df["model"].str.slice(len(head))
    if not info["shared_prompts"]:
        df["prompt_id"] = df["prompt_id"].str.slice(len(head))
    df = df.reset_index(drop=True)
    present = set(df["prompt_id"].astype(str))
    meta = {}
    for k, v in table.extras.get("prompt_meta", {}).items():
        if k == SOURCE_TABLE:
            continue
        col = {p[len(head):] if not info["shared_prompts"] else p: x for p, x in v.items()
               if info["shared_prompts"] or p.startswith(head)}
        col = {p: x for p, x in col.items() if p in present}
        if col:
            meta[k] = col
    extras = {**(table.extras.get("member_extras") or {}).get(prefix, {}), "prompt_meta": meta}
    skipped = {k[len(prefix) + 2:]: v for k, v in table.skipped.items() if k.startswith(f"{prefix}: ")}
    name = info["members"][prefix].get("name") or prefix
    return OutcomeTable(df, name, skipped, extras)


def member_spec(spec, prefix: str):
    """The tiers of ``spec`` (a :class:`~aco_bert.spec.RouterSpec` over pooled names) that belong to member
    ``prefix``, under the member's names. A floor whose tier is not the member's is dropped."""
    from aco_bert.spec import RouterSpec

    head = prefix + SEP
    keep = [t for t in spec.tiers if t.model.startswith(head)]
    if not keep:
        raise ValueError(f"router spec {spec.name!r} has no tier of member {prefix!r} (tiers named {head}<model>)")
    new_index = {spec.models.index(t.model) + 1: j + 1 for j, t in enumerate(keep)}

    def remap(mins: dict[str, int]) -> dict[str, int]:
        return {k: new_index[int(v)] for k, v in mins.items() if int(v) in new_index}

    d = spec.to_dict()
    d["tiers"] = [{**asdict(t), "model": t.model[len(head):]} for t in keep]
    d["name"] = f"{spec.name}[{prefix}]"
    fr = spec.frontier
    d["frontier"] = fr[len(head):] if fr and fr.startswith(head) else None
    d["floors"], d["step_type_min"] = remap(spec.floors), remap(spec.step_type_min)
    return RouterSpec.from_dict(d, where=f"{spec.name} restricted to {prefix}")


def prefixed_spec(spec, prefix: str):
    """``spec`` with every tier (and the frontier) renamed ``<prefix>/<model>``: a member's spec for a pooled run."""
    from aco_bert.spec import RouterSpec

    d = spec.to_dict()
    d["tiers"] = [{**asdict(t), "model": f"{prefix}{SEP}{t.model}"} for t in spec.tiers]
    d["frontier"] = f"{prefix}{SEP}{spec.frontier}" if spec.frontier else None
    d["name"] = f"{prefix}{SEP}{spec.name}"
    return RouterSpec.from_dict(d, where=f"{spec.name} prefixed {prefix}")
