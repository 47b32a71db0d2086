"""``--engine ray``: score the run's chunks on Ray Data actors, each loading the bundle once.

How it maps onto Ray Data: the driver plans the run (which chunks remain, each a row range ``[k*C, (k+1)*C)``),
groups them into blocks of ``--ray-block-chunks`` chunks, and makes those blocks a Ray dataset (``from_items``,
one Ray block per work block). ``map_batches`` runs :class:`BlockScorer`, a callable class: Ray builds it once per
actor (an actor pool of ``--ray-actors``, ``num_cpus=--threads`` each), so the bundle is loaded once per actor,
and each call reads its own chunks from the input (on the actor, seeking to them: :mod:`.reading`) and scores them
with the SAME :func:`aco_bert.score.chunk.score_chunk`. The scored chunk comes back as Arrow IPC bytes, and the
driver saves it through the scorer's part files, manifest, assembly and row-count checks.

Why the actors read with the scorer's own parsing rather than ``ray.data.read_json/read_csv``: the guarantees
are per row and per chunk. Ray's JSON reader fails a whole file on one unparseable line (the scorer marks that
row), its CSV reader infers types (a prompt reading ``None`` or ``1e3`` stops being text), and a Ray dataset has
no global row index, which every output row carries and resume needs (chunk ``k`` must be the same rows in every
run). Chunk-aligned blocks keep all three: the parts are the local scorer's parts byte for byte, resume works at
chunk granularity (finished chunks are never sent to an actor), and local and Ray runs can resume each other.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from aco_bert.score.chunk import score_chunk
from aco_bert.score.engines.base import EngineUnavailable, ScoreJob, ScoringEngine
from aco_bert.score.engines.reading import BlockReader, JsonlSeek, jsonl_seeks
from aco_bert.score.rows import ChunkResult, Columns
from aco_bert.score.sources import InputError, TableSource

RAY_KINDS = ("jsonl", "csv", "parquet", "datasets")  # inputs an actor can open by path


def import_ray():
    """``ray`` with Ray Data, or a clear error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # Ray Data is the ray[data] extra, not ray itself
    except ImportError as e:
        raise EngineUnavailable("--engine ray needs Ray Data: pip install 'aco-bert[ray]' (installs ray[data]); "
                                f"import failed: {e}") from e
    return ray


def table_bytes(table) -> bytes:
    """A scored chunk as Arrow IPC bytes: exact round trip of values and schema (metadata included)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def bytes_table(data: bytes):
    import pyarrow as pa

    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


class BlockScorer:
    """Ray Data callable class: the router is loaded once per actor, then each batch row (one work block, a JSON
    list of ``[chunk index, start, rows(, jsonl file, byte offset, line)]``) is read from the input by seeking
    (:class:`~aco_bert.score.engines.reading.BlockReader`) and scored chunk by chunk."""

    def __init__(self, source: TableSource, cols: Columns, loader: Callable[..., Any], bundle: str,
                 int8: bool | None, threads: int, chunk_size: int, batch_size: int):
        self.source, self.cols = source, cols
        self.chunk_size, self.batch_size = chunk_size, batch_size
        self.reader = BlockReader(source, chunk_size, cols.wanted())
        self.router = loader(bundle, int8, threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out: dict[str, list[Any]] = {"index": [], "start": [], "n": [], "table": [], "errors": [],
                                     "cascade_errors": []}
        for block in batch["chunks"]:
            items = json.loads(str(block))
            want = {int(it[0]): (int(it[1]), int(it[2])) for it in items}
            seeks = {int(it[0]): JsonlSeek(*it[3:]) for it in items if len(it) == 6}
            got = set()
            for ch in self.reader.chunks(want, seeks):
                if ch.columns is None or len(next(iter(ch.columns.values()), [])) != want[ch.index][1]:
                    raise InputError(f"chunk {ch.index} of {self.source.location} does not hold the "
                                     f"{want[ch.index][1]} rows planned: the input changed during the run")
                res = score_chunk(self.router, ch, self.cols, self.batch_size)
                got.add(res.index)
                out["index"].append(res.index)
                out["start"].append(res.start)
                out["n"].append(res.n)
                out["table"].append(table_bytes(res.table))
                out["errors"].append(json.dumps(res.errors))
                out["cascade_errors"].append(json.dumps(res.cascade_errors))
            if got != set(want):
                raise InputError(f"chunks {sorted(set(want) - got)} of {self.source.location} are gone: the input "
                                 "changed during the run")
        return {"index": np.array(out["index"], dtype=np.int64), "start": np.array(out["start"], dtype=np.int64),
                "n": np.array(out["n"], dtype=np.int64), "table": np.array(out["table"], dtype=object),
                "errors": np.array(out["errors"], dtype=object),
                "cascade_errors": np.array(out["cascade_errors"], dtype=object)}


def _seek(s: JsonlSeek | None) -> list[int]:
    return [] if s is None else [s.file, s.offset, s.line]


def connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Use the Ray instance already initialised in this process, else start a local one (``address`` None) or join
    the cluster at ``address`` ("auto", ``ray://host:10001``). True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"address": address} if address else {"num_cpus": num_cpus}
    try:
        ray.init(include_dashboard=False, **kw)
    except ConnectionError as e:
        raise EngineUnavailable(f"cannot reach the Ray cluster at {address!r}: {e}") from e
    return True


class RayEngine(ScoringEngine):
    name = "ray"

    def run(self, job: ScoreJob) -> None:
        cfg, src = job.cfg, job.source
        if src.kind not in RAY_KINDS:
            raise InputError(f"--engine ray reads {'/'.join(RAY_KINDS)} inputs by path (every actor opens it); "
                             f"{src.location} is a {src.kind!r} input: save it to files first or use --engine local")
        todo = list(job.chunks(False))  # row ranges only: the scorer counts rows and accounts for resumed chunks
        if not todo:
            return
        ray = import_ray()
        threads = cfg.threads or 1
        started = connect(ray, cfg.ray_address, max(os.cpu_count() or 1, (cfg.ray_actors or 1) * threads))
        try:
            from ray.data import DataContext

            DataContext.get_current().enable_progress_bars = False  # the scorer's bar counts rows
            actors = cfg.ray_actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
            k = max(1, min(cfg.ray_block_chunks, -(-len(todo) // actors)))  # smaller blocks rather than idle actors
            blocks = [todo[i:i + k] for i in range(0, len(todo), k)]
            actors = max(1, min(actors, len(blocks)))
            job.log(f"ray: {len(todo)} chunk(s) in {len(blocks)} block(s) on {actors} actor(s) x {threads} CPU")
            seeks = jsonl_seeks(src, cfg.chunk_size, {c.index for c in todo}) if src.kind == "jsonl" else {}
            plan = ray.data.from_items(
                [{"chunks": json.dumps([[c.index, c.start, c.n, *_seek(seeks.get(c.index))] for c in b])}
                 for b in blocks],
                override_num_blocks=len(blocks))
            scored = plan.map_batches(
                BlockScorer, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                fn_constructor_kwargs={"source": src, "cols": job.cols, "loader": job.loader, "bundle": cfg.bundle,
                                       "int8": cfg.int8, "threads": threads, "chunk_size": cfg.chunk_size,
                                       "batch_size": cfg.batch_size})
            for row in scored.iter_rows():
                errors = [tuple(e) for e in json.loads(row["errors"])]
                job.save(ChunkResult(int(row["index"]), int(row["start"]), int(row["n"]), bytes_table(row["table"]),
                                     errors, len(errors), [tuple(e) for e in json.loads(row["cascade_errors"])]))
        finally:
            if started:
                ray.shutdown()
