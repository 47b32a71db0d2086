"""Import logged traffic as an outcome table: import-logs --format F --score FIELD IN... --out table.jsonl

``python -m aco_bert.data.import_logs`` / ``aco-bert data import-logs``; F is litellm-spend, langfuse or otel-genai,
IN... the log files (positional, or ``--inputs``).

Each input is read by its format (:mod:`aco_bert.data.logs`; the field mappings are in each format's docstring and
the README), the user's score becomes ``success``, and repeats of a prompt x model are merged. The table is
validated like every adapter's output and written as a generic long JSONL file, so ``load_outcomes(path)``,
``aco-bert data describe --dataset table.jsonl`` and ``aco-bert evaluate --dataset table.jsonl`` read it. Prompts
answered by two or more models are the routable part: a router learns from how models differ on one prompt.
An empty table is refused (exit 2), never written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aco_bert.data.logs import ReadStats, combine, get_format
from aco_bert.data.schema import DataError, validate_table

PROG = "aco-bert data import-logs"
OUT_COLUMNS = ("prompt_id", "prompt", "model", "success", "cost_usd", "input_tokens", "output_tokens", "latency_s",
               "source", "response")


@dataclass
class ImportLogsConfig:
    """The flags of ``aco-bert data import-logs`` (input files may also be given as positional arguments)."""

    format: str  # litellm-spend, langfuse or otel-genai
    score: str  # field path of the outcome that becomes success, e.g. metadata.user_feedback / scores.correctness
    out: str  # the canonical long table to write (.jsonl)
    inputs: list[str] = field(default_factory=list)  # log files (.json / .jsonl); positional arguments land here
    score_threshold: float | None = None  # map a numeric score to 1 when >= this, else 0 (default: keep [0, 1])
    prompt_id: str | None = None  # field path of a prompt id (default: hash of the normalised prompt text)
    include_system: bool = False  # prepend the system prompt to the last user message
    on_missing: str = "error"  # a record without score or prompt: 'error' (name file and row) or 'skip' (count)
    model_field: str | None = None  # field path of the model name, overriding the format's default
    cost_field: str | None = None  # field path of the cost in USD, overriding the format's default


def import_logs(cfg: ImportLogsConfig) -> tuple[pd.DataFrame, list[str]]:
    """Read every input, merge repeats, validate: (canonical table, report lines). Raises DataError/ValueError."""
    fmt = get_format(cfg.format)
    if not cfg.inputs:
        raise ValueError("no input files: give log files as arguments (or --inputs)")
    if not cfg.out.endswith(".jsonl"):
        raise ValueError(f"--out must be a .jsonl file, got {cfg.out!r}")
    total, frames, lines = ReadStats(), [], []
    for p in cfg.inputs:
        if not Path(p).is_file():
            raise FileNotFoundError(f"no such log file: {p}")
        st = ReadStats()
        frames.append(fmt.read(p, cfg.score, score_threshold=cfg.score_threshold, prompt_id=cfg.prompt_id,
                               include_system=cfg.include_system, on_missing=cfg.on_missing,
                               model_field=cfg.model_field, cost_field=cfg.cost_field, stats=st))
        total.add(st)
        lines.append(f"{p}: {st.read} records read, {st.kept} kept, {st.read - st.kept} skipped")
    df, merged = combine(frames)
    lines.append(f"total: {total.read} records read, {total.kept} kept, {total.read - total.kept} skipped")
    for why, n in sorted(total.skipped.items()):
        lines.append(f"  skipped {n}: {why}")
    for why, n in merged.items():
        lines.append(f"  {n} {why}")
    if df.empty:
        raise DataError(f"no outcome rows to write (nothing kept from {len(cfg.inputs)} file(s)); not writing "
                        f"{cfg.out}", file=cfg.inputs[0] if len(cfg.inputs) == 1 else None)
    out = validate_table(df, file=cfg.out)
    per_prompt = out.groupby("prompt_id")["model"].nunique()
    routable = int((per_prompt >= 2).sum())
    lines.append(f"table: {len(out)} outcomes, {out['prompt_id'].nunique()} prompts, {out['model'].nunique()} "
                 f"models; {routable} prompts answered by >= 2 models (the routable part)")
    if routable == 0:
        lines.append("warning: no prompt was answered by two models: a router needs the same prompts sent to "
                     "several models (or --prompt_id naming a shared task id)")
    return out, lines


def write_jsonl(df: pd.DataFrame, path: str) -> None:
    """One JSON object per row, missing values left out (the generic long format)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in OUT_COLUMNS if c in df.columns]
    with open(path, "w", encoding="utf-8") as f:
        for rec in df[cols].to_dict(orient="records"):
            rec = {k: v for k, v in rec.items()
                   if v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def run(cfg: ImportLogsConfig) -> int:
    out, lines = import_logs(cfg)
    write_jsonl(out, cfg.out)
    print("\n".join(lines))
    print(f"wrote {cfg.out}")
    return 0


def positional_inputs(argv: list[str]) -> list[str]:
    """Move positional file arguments into ``--inputs`` (the generated parser has flags only). A bare boolean flag
    takes the next word only when it is a boolean word, as the parser does."""
    hints = typing.get_type_hints(ImportLogsConfig)
    flags = {}
    for f in dataclasses.fields(ImportLogsConfig):
        flags[f"--{f.name}"] = flags[f"--{f.name.replace('_', '-')}"] = hints[f.name] is bool
    rest, files, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and "=" not in a and a in flags:
            rest.append(a)
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and (not flags[a] or nxt.lower() in ("true", "false", "yes", "no", "1", "0")):
                rest.append(nxt)
                i += 1
        elif a.startswith("-"):
            rest.append(a)
        else:
            files.append(a)
        i += 1
    if files:
        rest += ["--inputs", json.dumps(files)]
    return rest


def main(argv: Sequence[str] | None = None) -> int:
    from aco_bert.config import run_verb

    args = list(sys.argv[1:] if argv is None else argv)
    return run_verb(run, ImportLogsConfig, positional_inputs(args), PROG, __doc__.split("\n")[0],
                    config_file=False)


if __name__ == "__main__":
    sys.exit(main())
