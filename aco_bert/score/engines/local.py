"""Score in this process (``--workers 0``) or in ``--workers N`` local processes, each loading the bundle once."""

from __future__ import annotations

from aco_bert.score.chunk import score_chunk
from aco_bert.score.engines.base import ScoreJob, ScoringEngine
from aco_bert.score.workers import run_workers


class LocalEngine(ScoringEngine):
    name = "local"

    def run(self, job: ScoreJob) -> None:
        cfg = job.cfg
        if cfg.workers <= 0:
            for ch in job.chunks(True):
                job.save(score_chunk(job.router, ch, job.cols, cfg.batch_size))
        else:
            run_workers(cfg, job.loader, job.chunks(True), job.cols, job.save)
