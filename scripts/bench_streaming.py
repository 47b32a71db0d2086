"""Benchmark: training on an outcome table larger than memory (issue 16), eager pandas vs memory-mapped Arrow.

Builds a synthetic long table from real RouterBench rows (every real (prompt, model) outcome, the prompts
repeated with a ``[#k]`` suffix so each copy is a distinct prompt, written model-major: a prompt's rows are spread
over the whole file, the hard case for the group-by), then measures, each in a fresh process (peak RSS = its
VmHWM): (a) the eager path ``load_outcomes`` + ``matrix`` on smaller tables (the 5M-row one does not fit in the
memory this shared machine allows: extrapolated linearly), (b) the streaming conversion of the full table,
(c) ``load_router_data`` with ``streaming`` + tokenising every prompt into the mapped id cache + N training steps
of the tiny config, sampling RSS every few steps. Prints a markdown table; results JSON in ``--out``.

    nice -n 10 .venv/bin/python scripts/bench_streaming.py --rows 5000000 --models 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def mem() -> dict[str, float]:
    """VmRSS / VmHWM (peak) / RssAnon (heap) / RssFile (mapped file pages, reclaimable) of this process, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = round(int(v.split()[0]) / 1024, 1)
    return out


def build(path: Path, rows: int, n_models: int) -> dict:
    """A long parquet file of ``rows`` real-outcome rows: RouterBench prompts x its first ``n_models`` models."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aco_bert.data import load_outcomes

    if path.exists():
        return {"file": str(path), "rows": rows, "bytes": path.stat().st_size, "built_s": 0.0}
    t0 = time.perf_counter()
    table = load_outcomes("routerbench")
    models = table.models[:n_models]
    m = table.matrix(models)
    ok = ~np.isnan(m.success).any(1)  # prompts every chosen model ran: each copy has exactly n_models rows
    pids = np.array(m.prompt_ids, dtype=object)[ok]
    texts = np.array(m.prompts, dtype=object)[ok]
    succ, cost = m.success[ok], m.cost[ok]
    tin, tout = m.traces["input_tokens"][ok], m.traces["output_tokens"][ok]
    n_base, n_prompts = len(pids), rows // n_models
    tmp = path.with_suffix(".tmp")
    writer = None
    block = 100_000
    for j, model in enumerate(models):
        for s in range(0, n_prompts, block):
            i = np.arange(s, min(s + block, n_prompts))
            b, k = i % n_base, i // n_base
            t = pa.table({"prompt_id": [f"{p}#{c}" for p, c in zip(pids[b], k)],
                          "prompt": [f"{x} [#{c}]" for x, c in zip(texts[b], k)],
                          "model": [model] * len(i), "success": succ[b, j], "cost_usd": cost[b, j],
                          "input_tokens": tin[b, j], "output_tokens": tout[b, j]})
            writer = writer or pq.ParquetWriter(str(tmp), t.schema, compression="zstd")
            writer.write_table(t)
    writer.close()
    os.replace(tmp, path)
    return {"file": str(path), "rows": n_prompts * n_models, "bytes": path.stat().st_size,
            "built_s": round(time.perf_counter() - t0, 1), "base_prompts": n_base}


def child_eager(file: str) -> dict:
    from aco_bert.data import load_outcomes

    t0 = time.perf_counter()
    m = load_outcomes(file).matrix()
    return {"wall_s": time.perf_counter() - t0, "prompts": m.n_prompts, **mem()}


def child_convert(file: str, cache: str) -> dict:
    from aco_bert.data.arrow import ArrowOutcomes, convert

    t0 = time.perf_counter()
    root = convert(file, cache_dir=cache)
    return {"wall_s": time.perf_counter() - t0, "prompts": ArrowOutcomes(root).n_prompts, **mem()}


def child_train(file: str, cache: str, steps: int, every: int) -> dict:
    """load_router_data (streaming) + tokenising every prompt into the mapped cache + ``steps`` tiny-model steps."""
    import torch
    from torch.utils.data import DataLoader

    from aco_bert.config import load_config
    from aco_bert.model.data import (LengthGroupedBatchSampler, Positions, PromptInputs, load_router_data,
                                     model_config_for, model_inputs)
    from aco_bert.model.losses import masked_bce_with_logits
    from aco_bert.model.modeling import RouterModel
    from aco_bert.model.tokenization import load_tokenizer, pad_token_id
    from aco_bert.model.training_args import TrainConfig

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, REPO / "configs" / "tiny-test.yaml",
                      {"dataset": file, "aux_targets": [], "num_threads": 1,
                       "dataset_options": {"streaming": True, "cache_dir": cache}})
    cfg = dataclasses.replace(cfg, spec=None, max_prompts=None)  # every model of the file, every prompt
    out: dict = {"start": mem()}
    t0 = time.perf_counter()
    data = load_router_data(cfg)
    out["load_s"], out["after_load"], out["prompts"] = time.perf_counter() - t0, mem(), data.n_prompts
    tok = load_tokenizer(cfg.tokenizer)
    t0 = time.perf_counter()
    ids = cfg.text_truncation.encode_ids(tok, data.texts)
    out["tokenize_s"], out["after_tokenize"] = time.perf_counter() - t0, mem()
    inputs = PromptInputs(data, ids, pad_token_id(tok))
    sampler = LengthGroupedBatchSampler(inputs.lengths, cfg.batch_size, True, cfg.seed)
    loader = DataLoader(Positions(np.arange(data.n_prompts)), batch_sampler=sampler, collate_fn=inputs.collator(cfg))
    torch.manual_seed(0)
    model = RouterModel(model_config_for(cfg, data))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    series, t0 = [], time.perf_counter()
    for step, batch in enumerate(loader, 1):
        loss = masked_bce_with_logits(model(**model_inputs(batch)).logits, batch["targets"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == 1:
            series.append({"step": step, "loss": round(float(loss), 4), **mem()})
        if step >= steps:
            break
    out["train_s"], out["series"] = time.perf_counter() - t0, series
    return {**out, **mem()}


def run_child(*args: str) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"child {args} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows of the streamed long table")
    ap.add_argument("--models", type=int, default=10, help="models per prompt (RouterBench has 11)")
    ap.add_argument("--eager_rows", default="250000,500000", help="eager path table sizes (comma separated)")
    ap.add_argument("--steps", type=int, default=300, help="training steps in (c)")
    ap.add_argument("--every", type=int, default=50, help="RSS sample every N steps")
    ap.add_argument("--out", default=str(REPO / "checkpoints" / "streamS"))
    ap.add_argument("--only", default=None, help="rerun only these stages (comma separated: eager, convert, "
                    "train), keeping the others from the results JSON of an earlier run in --out")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        fn = {"eager": child_eager, "convert": child_convert, "train": child_train}[kind]
        res = fn(*[int(x) if x.isdigit() else x for x in rest])
        print(json.dumps(res))
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = str(out / "cache")
    saved = out / "bench_streaming.json"
    res: dict = {"builds": [], "eager": [], "convert": None, "train": None}
    stages = set(a.only.split(",")) if a.only else {"eager", "convert", "train"}
    if a.only:
        res = json.loads(saved.read_text())
    sizes = [int(x) for x in a.eager_rows.split(",") if x]
    for n in sizes + [a.rows]:
        res["builds"].append(build(out / f"long-{n}x{a.models}.parquet", n, a.models))
        print("built", res["builds"][-1], flush=True)
    if "eager" in stages:
        res["eager"] = [{"rows": n, **run_child("eager", str(out / f"long-{n}x{a.models}.parquet"))} for n in sizes]
        print("eager", res["eager"], flush=True)
    big = str(out / f"long-{a.rows}x{a.models}.parquet")
    if "convert" in stages:
        shutil.rmtree(cache, ignore_errors=True)  # a conversion measured, not a cache hit
        res["convert"] = {"rows": a.rows, **run_child("convert", big, cache)}
        print("convert", res["convert"], flush=True)
    if "train" in stages:
        for f in Path(cache).glob("*/tokens-*.arrow"):
            f.unlink()  # tokenisation measured, not a cache hit
        res["train"] = {"rows": a.rows, **run_child("train", big, cache, str(a.steps), str(a.every))}
    saved.write_text(json.dumps(res, indent=1))
    print(report(res))


def report(res: dict) -> str:
    """The markdown tables: peak RSS and wall time per stage, then the RSS series of the training steps."""
    e = res["eager"]
    slope = (e[-1]["VmHWM"] - e[0]["VmHWM"]) / (e[-1]["rows"] - e[0]["rows"]) if len(e) > 1 else e[0]["VmHWM"] / e[0]["rows"]
    big = res["convert"]["rows"]
    est = e[-1]["VmHWM"] + slope * (big - e[-1]["rows"])
    lines = ["| stage | rows | prompts | wall s | peak RSS MB | RssAnon MB after |", "|---|---:|---:|---:|---:|---:|"]
    for r in e:
        lines.append(f"| (a) eager load_outcomes + matrix | {r['rows']:,} | {r['prompts']:,} | {r['wall_s']:.1f} | "
                     f"{r['VmHWM']:,.0f} | {r['RssAnon']:,.0f} |")
    lines.append(f"| (a) eager, extrapolated linearly | {big:,} | | | ~{est:,.0f} | |")
    c, t = res["convert"], res["train"]
    lines.append(f"| (b) streaming conversion (chunked, sharded) | {big:,} | {c['prompts']:,} | {c['wall_s']:.1f} | "
                 f"{c['VmHWM']:,.0f} | {c['RssAnon']:,.0f} |")
    lines.append(f"| (c) load_router_data (streaming) | {big:,} | {t['prompts']:,} | {t['load_s']:.1f} | "
                 f"{t['after_load']['VmHWM']:,.0f} | {t['after_load']['RssAnon']:,.0f} |")
    lines.append(f"| (c) + tokenise every prompt -> mapped ids | | | {t['tokenize_s']:.1f} | "
                 f"{t['after_tokenize']['VmHWM']:,.0f} | {t['after_tokenize']['RssAnon']:,.0f} |")
    lines.append(f"| (c) + {t['series'][-1]['step']} tiny training steps | | | {t['train_s']:.1f} | {t['VmHWM']:,.0f} | "
                 f"{t['RssAnon']:,.0f} |")
    lines += ["", "| step | loss | RSS MB | RssAnon MB | RssFile MB (mapped, reclaimable) |", "|---:|---:|---:|---:|---:|"]
    for s in t["series"]:
        lines.append(f"| {s['step']} | {s['loss']} | {s['VmRSS']:,.0f} | {s['RssAnon']:,.0f} | {s['RssFile']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
