"""`python -m aco_bert.score`: batch-score a dataset with a router bundle -- what would routing have done and cost?

Why it is built the way it is:

* **Bounded memory.** The input is read in fixed-size chunks (:mod:`aco_bert.score.sources`) and each scored chunk is
  written straight to a part file, so memory depends on ``--chunk-size``, not on the input.
* **Resumable.** Next to the output, ``<output>.parts/`` holds one part per finished chunk and ``progress.json``
  with the input's content fingerprint and the run's settings. Rerunning the same command skips finished chunks;
  a changed input or changed settings start afresh. Parts are assembled in chunk order at the end, and chunk ``k``
  is always input rows ``[k*C, (k+1)*C)`` scored in the same batches, so a resumed run writes byte-for-byte the
  output of an uninterrupted one.
* **No lost rows.** Output rows = input rows, in input order, each carrying its input ``row`` index. A bad row
  (empty text, unparseable messages or JSON, unknown step type, anything the router refuses) is marked in the
  ``error`` column and counted, or, with ``--on-error stop``, the run stops naming the row.
* **Optional worker processes** (``--workers N``), each loading the bundle once; results do not depend on N.
* **Engines** (``--engine local|ray``, :mod:`aco_bert.score.engines`) decide only *where* chunks are scored (this
  machine's processes, or Ray Data actors); planning, parts, resume and assembly stay here, so outputs are identical.
* **Modules**: :mod:`~aco_bert.score.config` (the run's config and summary), :mod:`~aco_bert.score.rows` (row
  checks, output schema), :mod:`~aco_bert.score.chunk` (one chunk), :mod:`~aco_bert.score.parts` (part files,
  progress, assembly), :mod:`~aco_bert.score.workers`, :mod:`~aco_bert.score.report` (``--evaluate``); this one
  runs them and is the command line (flags generated from :class:`ScoreConfig`; ``--fp32`` = ``--int8 false``,
  ``--no-progress`` = ``--progress false``).
* ``--evaluate``: the input is a canonical outcome table (:mod:`aco_bert.data.schema`); each unique prompt is
  scored once (output: one row per prompt) and the routed decisions are replayed against the real outcomes next
  to always-frontier, the zero router and the oracle (:mod:`aco_bert.evaluation.replay`), with the cost-quality plot.
* ``--cascade true``: after routing, each row replays the bundle's response-aware cascade on the answers the input
  records for each tier (:mod:`aco_bert.score.cascade`): ``cascade_*`` columns; with ``--evaluate`` the report
  adds the cascade's realised success and cost (every tier that ran is billed).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from aco_bert.config import run_verb
from aco_bert.score.cascade import cascade_rule
from aco_bert.score.chunk import score_texts
from aco_bert.score.config import MAX_REPORTED_ERRORS, ScoreConfig, ScoreError, ScoreSummary
from aco_bert.score.engines import EveryChunk, ScoreJob, get_engine
from aco_bert.score.parts import PartsError, Progress, assemble, bundle_id, output_rows, write_part
from aco_bert.score.report import evaluate_into, evaluation_input
from aco_bert.score.rows import ChunkResult, first_record_check, output_schema, resolve_columns
from aco_bert.score.sources import Chunk, InputError, TableSource, open_table
from aco_bert.types import BundleError

# The verb's public surface (tests, the demo and scripts import these from here).
__all__ = ["ScoreConfig", "ScoreError", "ScoreSummary", "load_router", "main", "run", "score_dataset",
           "score_texts"]

# Documented spellings kept from the hand-written parser; every other flag is a ScoreConfig field.
FLAG_ALIASES = {"--fp32": ["--int8", "false"], "--no-progress": ["--progress", "false"]}


def load_router(bundle: str, int8: bool | None = None, threads: int | None = None):
    """The bundle's :class:`aco_bert.runtime.router.Router` (manifest verified); ``threads``: ONNX Runtime intra-op
    threads (None: the runtime's default)."""
    from aco_bert.runtime import Router

    return Router.load(bundle, int8=int8, threads=threads)


def score_dataset(cfg: ScoreConfig, *, router: Any = None, loader: Callable[..., Any] = load_router,
                  on_chunk: Callable[[ChunkResult], None] | None = None,
                  log: Callable[[str], None] | None = None) -> ScoreSummary:
    """Score ``cfg.input`` into ``cfg.output`` (see the module doc). ``router`` reuses a loaded router in this
    process; ``loader(bundle, int8, threads)`` builds one (in each worker too). ``on_chunk`` is called after each
    chunk is saved (progress hooks; an exception there interrupts the run, which can then be resumed)."""
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    if router is None:
        engine_here = cfg.engine == "local" and cfg.workers == 0
        router = loader(cfg.bundle, cfg.int8, cfg.threads if engine_here else 1)  # else: spec only
    models = [t.model for t in router.spec.tiers]
    if cfg.evaluate:
        matrix, src, cols = evaluation_input(cfg, models, router.spec, log)
    else:
        src = open_table(cfg.input, split=cfg.split, hf_config=cfg.hf_config, format=cfg.input_format)
        cols = resolve_columns(cfg, src, models)
        first_record_check(src, cols)
    output = Path(cfg.output)
    parts = output.with_name(output.name + ".parts")
    identity = {"input": src.fingerprint, "bundle": bundle_id(router, cfg.bundle), "models": models,
                "columns": dataclasses.asdict(cols), "chunk_size": cfg.chunk_size, "batch_size": cfg.batch_size,
                "format": cfg.format, "int8": cfg.int8, "evaluate": cfg.evaluate, "split": src.split}
    if cfg.cascade:  # the loaded rule too: a test or a caller may change it without re-exporting the bundle
        identity["cascade"] = cascade_rule(router)
    prog = Progress(parts, identity, cfg.fresh, log)
    schema = output_schema(models, cols.id, cascade=cfg.cascade)
    resumed = set(prog.done)
    bar = _bar(cfg, src)
    n_rows, n_chunks = 0, 0

    def save(res: ChunkResult) -> None:
        if cfg.on_error == "stop" and (res.errors or res.cascade_errors):
            row, reason = min(res.errors + [(r, f"cascade: {why}") for r, why in res.cascade_errors])
            raise ScoreError(f"stopped at bad row {row}: {reason} ({len(prog.done)} chunk(s) saved in {parts})",
                             row=row)
        name = prog.part_name(res.index, cfg.format)  # type: ignore[arg-type]
        check = write_part(parts / name, res.table, cfg.format)  # type: ignore[arg-type]
        prog.mark(res, name, check)
        bar.update(res.n)
        if on_chunk is not None:
            on_chunk(res)

    def planned() -> Iterator[Chunk]:  # row ranges only (for an engine whose workers read their own rows)
        if src.n_rows is not None:  # parquet, datasets: known without reading
            for k, start in enumerate(range(0, src.n_rows, cfg.chunk_size)):
                yield Chunk(k, start, min(cfg.chunk_size, src.n_rows - start), None)
        else:  # jsonl: lines counted, not parsed; csv: one column read
            yield from src.iter_chunks(cfg.chunk_size, cols.wanted()[:1], skip=EveryChunk())

    def chunks(read: bool = True) -> Iterator[Chunk]:
        nonlocal n_rows, n_chunks
        for ch in (src.iter_chunks(cfg.chunk_size, cols.wanted(), skip=resumed) if read else planned()):
            n_rows += ch.n
            n_chunks += 1
            if ch.index in resumed:
                saved = prog.done[ch.index]
                if saved["rows"] != ch.n or saved["start"] != ch.start:
                    raise InputError(f"chunk {ch.index} of {src.location} changed size since the saved run; "
                                     "rerun with --fresh")
                bad = saved["errors"] + [[r, f"cascade: {why}"] for r, why in saved.get("cascade_errors", [])]
                if cfg.on_error == "stop" and bad:  # saved by an earlier --on-error mark run
                    row, reason = min(bad)
                    raise ScoreError(f"stopped at bad row {row}: {reason}", row=row)
                bar.update(ch.n)
                continue
            yield ch

    try:
        get_engine(cfg.engine).run(ScoreJob(cfg, router, loader, src, cols, chunks, save, log))
    finally:
        bar.close()

    # Rows must never vanish or repeat: the parts' recorded rows, the rows read back while assembling and the
    # written output's rows must all equal the input's, or the run fails (never "scored N rows" over a short file).
    missing = [k for k in range(n_chunks) if k not in prog.done]
    total = sum(prog.done[k]["rows"] for k in range(n_chunks) if k in prog.done)
    if missing or total != n_rows:
        raise PartsError(f"the parts hold {total} rows but the input has {n_rows} (chunks not scored: "
                         f"{missing[:10]}); rerun the same command")
    assemble(parts, [prog.done[k] for k in range(n_chunks)], output, cfg.format, schema, n_rows)  # type: ignore
    if (got := output_rows(output, cfg.format)) != n_rows:  # type: ignore[arg-type]
        raise PartsError(f"{output} has {got} rows but the input has {n_rows}")
    n_err = sum(prog.done[k]["n_errors"] for k in range(n_chunks))
    errs = [tuple(e) for k in range(n_chunks) for e in prog.done[k]["errors"]][:MAX_REPORTED_ERRORS]
    if not cfg.keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    summary = ScoreSummary(str(output), cfg.format, n_rows, n_err, errs, n_chunks,  # type: ignore[arg-type]
                           len(resumed & set(range(n_chunks))), time.perf_counter() - t0,
                           blank_lines=src.blank_lines,
                           n_cascade_errors=sum(prog.done[k].get("n_cascade_errors", 0) for k in range(n_chunks)),
                           cascade_errors=[tuple(e) for k in range(n_chunks)
                                           for e in prog.done[k].get("cascade_errors", [])][:MAX_REPORTED_ERRORS])
    if cfg.evaluate:
        evaluate_into(summary, cfg, matrix, router)
    return summary


def _bar(cfg: ScoreConfig, src: TableSource):
    from tqdm.auto import tqdm

    return tqdm(total=src.n_rows if src.n_rows is not None else src.n_rows_estimate, unit="row",
                desc="scoring", disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True)


# --- CLI -----------------------------------------------------------------------------------------------------


def run(cfg: ScoreConfig) -> int:
    """The verb: score, print the summary (and the --evaluate table); errors become one line and an exit code
    (1: stopped at a bad row or the parts do not add up to the input, 2: the input, bundle or settings are unusable, 130: interrupted, resumable)."""
    try:
        s = score_dataset(cfg)
    except (ScoreError, PartsError) as e:
        print(f"score: {e}", file=sys.stderr)
        return 1
    except (InputError, ValueError, FileNotFoundError, BundleError) as e:
        print(f"score: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"score: interrupted; finished chunks are kept in {cfg.output}.parts -- rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    print(s.text())
    if s.evaluation is not None:
        r = s.evaluation
        print(f"\n## {r.dataset}: {r.n_prompts} prompts, {len(r.models)} tiers\n")
        print(r.markdown())
        for n in r.notes:
            print(f"\nnote: {n}")
        print(f"\nplot: {s.plot}\nreport: {s.report_json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = [x for a in (sys.argv[1:] if argv is None else argv) for x in FLAG_ALIASES.get(a, [a])]
    return run_verb(run, ScoreConfig, args, prog="python -m aco_bert.score", description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
