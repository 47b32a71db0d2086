"""The HTTP server around the app: uvicorn configured from :class:`ServeConfig`, plus the one guard it lacks.

uvicorn 0.54 has connection/keep-alive/backlog/header-size/max-requests settings but no timeout before the first
request line: a socket that connects and sends nothing stays open forever (a flood of them exhausts file
descriptors). :class:`HeaderTimeoutH11Protocol` closes a connection whose request line + headers are not complete
within ``header_timeout_s`` of connecting (or of its previous response), which also bounds slow-loris headers.
Tests, the CLI and ``--workers N`` all build the server through :func:`uvicorn_config`, so they run the same limits.
``--workers N`` also gets one Prometheus scrape for all workers (:func:`multiprocess_metrics_dir`,
:class:`MetricsSupervisor`; see :mod:`aco_bert.serve.metrics`).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

import h11
import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from aco_bert.procs import die_with_parent
from aco_bert.serve.config import ServeConfig
from aco_bert.serve.metrics import MULTIPROC_ENV


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers (``config.aco_header_timeout_s``)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s: float | None = getattr(config, "aco_header_timeout_s", None)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout_s:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # quietly: a flood of these must not flood the log either

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # headers complete: the body has its own timeout (BodyGuard)
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_config(app: Any, config: ServeConfig, **kw: Any) -> uvicorn.Config:
    """A uvicorn Config carrying every limit of ``config``; ``kw`` overrides (e.g. ``factory=True``)."""
    opts: dict[str, Any] = dict(
        host=config.host, port=config.port, log_level=config.log_level, access_log=False,
        http=HeaderTimeoutH11Protocol, timeout_keep_alive=config.keep_alive_s,
        limit_concurrency=config.limit_concurrency, backlog=config.backlog,
        h11_max_incomplete_event_size=config.h11_max_incomplete_event_size,
        limit_max_requests=config.limit_max_requests)
    opts.update(kw)
    cfg = uvicorn.Config(app, **opts)
    cfg.aco_header_timeout_s = config.header_timeout_s  # type: ignore[attr-defined]  (read by the protocol)
    return cfg


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (idle-socket floods hit the soft limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def worker_app() -> Any:
    """uvicorn factory run in each ``--workers N`` process: end with the supervisor (no orphan workers holding the
    port after its ``kill -9``), then build the app from the environment."""
    from aco_bert.serve.app import app_from_env

    die_with_parent()
    return app_from_env()


class MetricsSupervisor(Multiprocess):
    """uvicorn's worker supervisor that also tells prometheus_client when a worker is gone (killed, hung, or
    retired by ``limit_max_requests``): its live gauges (in-flight, ready) leave the scrape; its counters stay."""

    def _reap(self, before: set[int | None]) -> None:
        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                mark_process_dead(pid)

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        self._reap(before)

    def restart_all(self) -> None:
        before = {p.pid for p in self.processes}
        super().restart_all()
        self._reap(before)


@contextmanager
def multiprocess_metrics_dir() -> Iterator[str]:
    """A fresh private ``PROMETHEUS_MULTIPROC_DIR`` for the workers about to be spawned (they inherit the
    environment and import prometheus_client after it is set); removed, and the variable restored, at shutdown.
    Never a caller's existing directory: stale files from an earlier run would be summed into this one's counters."""
    path = tempfile.mkdtemp(prefix="aco-prom-")
    old = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = old
        shutil.rmtree(path, ignore_errors=True)


def serve(config: ServeConfig, app: Any = None) -> None:
    """Run the server: ``app`` in this process, or ``config.workers`` processes each building the app from the
    environment (:func:`worker_app`), all with the same limits and one /metrics summed over them."""
    raise_fd_limit()
    if config.workers == 1 and app is not None:
        uvicorn.Server(uvicorn_config(app, config)).run()
        return
    cfg = uvicorn_config("aco_bert.serve.server:worker_app", config, factory=True, workers=config.workers)
    with multiprocess_metrics_dir():
        MetricsSupervisor(cfg, sockets=[cfg.bind_socket()]).run()
