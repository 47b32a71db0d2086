"""Runs the router off the event loop: a bounded thread pool, per-call timeouts, optional micro-batching.

ONNX Runtime's ``InferenceSession.run`` is thread-safe, so one loaded Router is shared by every request; running
it in threads keeps the event loop free to accept connections while a forward pass is busy. Micro-batching
coalesces concurrent single-prompt requests that arrive within a short window into one ``route_batch`` call (one
forward pass), trading a few milliseconds of latency for throughput when many agents call at once.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from aco_bert.types import Decision, Escalation, RoutingInputError
from aco_bert.serve.metrics import ServeMetrics


class RouteTimeout(Exception):
    """The router did not answer within ``route_timeout_s`` (-> HTTP 504)."""


class Overloaded(Exception):
    """Refused before queueing: the queue is full or would wait past the route timeout (-> 503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


@dataclass
class RouteArgs:
    prompt: str
    step_type: str | None = None
    domain: str | list[str] | None = None
    budget: float | None = None
    min_tier: int | None = None
    metadata: dict[str, str] | None = None  # values of the spec's declared metadata columns (stacker signal)


class BatchItemError(RoutingInputError):
    """A batch refused because of one item; ``index`` names it."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"items[{index}]: {message}")
        self.index = index


class RouteEngine:
    def __init__(self, router: Any, *, threads: int = 4, timeout_s: float = 10.0, microbatch: bool = False,
                 window_ms: float = 0.0, microbatch_max: int = 32, microbatch_inflight: int = 2,
                 metrics: ServeMetrics | None = None, max_queue: int = 1024, shed_wait_fraction: float = 0.8) -> None:
        self.router = router
        self.timeout_s = timeout_s
        self.threads, self.max_queue, self.shed_wait_fraction = threads, max_queue, shed_wait_fraction
        self._lock = threading.Lock()
        self._service_s: dict[str, float] = {}  # moving average of one call's run time, by kind
        self._queued = 0  # calls submitted to the pool and not finished
        self._busy_s = 0.0  # expected seconds of work those calls hold
        self.metrics = metrics or ServeMetrics()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aco-route")
        self.batcher = (MicroBatcher(self, window_ms / 1000.0, microbatch_max, microbatch_inflight)
                        if microbatch else None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- admission (load shedding) -----------------------------------------------------------------------------
    def expected_s(self, kind: str) -> float:
        """Moving average run time of one ``kind`` call (0 until one has run)."""
        return self._service_s.get(kind, 0.0)

    def check_wait(self, wait_s: float, own_s: float, queued: int) -> None:
        """Refuse now (503) rather than queue a call that would wait past the route timeout or overfill the queue."""
        if queued >= self.max_queue:
            self.metrics.shed.inc(reason="queue_full")
            raise Overloaded(f"routing queue is full ({queued} calls waiting, max_queue {self.max_queue})",
                             max(wait_s, 1.0))
        if self.shed_wait_fraction > 0 and own_s > 0 and wait_s + own_s > self.shed_wait_fraction * self.timeout_s:
            self.metrics.shed.inc(reason="queue_wait")
            raise Overloaded(f"routing queue would wait ~{wait_s:.1f} s, past {self.shed_wait_fraction:g} x the "
                             f"{self.timeout_s:g} s route timeout; retry later", wait_s)

    def _release(self, est: float) -> None:
        with self._lock:
            self._queued -= 1
            self._busy_s = max(0.0, self._busy_s - est)

    async def _run(self, kind: str, fn: Callable, *args, _admit: bool = True, **kwargs):
        """Run ``fn`` in the pool within the route timeout; a call still queued when its caller gives up (timeout,
        client gone) is cancelled before it starts, so abandoned work does not hold the pool."""
        est = self.expected_s(kind)
        if _admit:
            self.check_wait(self._busy_s / self.threads, est, self._queued)
        with self._lock:
            self._queued += 1
            self._busy_s += est

        def work():
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                old = self._service_s.get(kind)
                self._service_s[kind] = dt if old is None else 0.8 * old + 0.2 * dt

        t0 = time.perf_counter()
        cf = self.executor.submit(work)
        cf.add_done_callback(lambda _: self._release(est))  # runs when it ends or is cancelled before starting
        fut = asyncio.wrap_future(cf)
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except asyncio.TimeoutError as e:
            raise RouteTimeout(f"router did not answer within {self.timeout_s:g} s") from e
        finally:
            self.metrics.route_latency.observe(time.perf_counter() - t0, kind=kind)

    # -- single-thread-pool calls -------------------------------------------------------------------------------
    def _route_one(self, a: RouteArgs) -> Decision:
        return self.router.route(a.prompt, step_type=a.step_type, domain=a.domain, budget=a.budget,
                                 min_tier=a.min_tier, metadata=a.metadata)

    def _route_many(self, items: list[RouteArgs]) -> list[Decision]:
        """One forward pass; on a refused item, find which one so the error can name it."""
        try:
            return self.router.route_batch(
                [a.prompt for a in items], step_types=[a.step_type for a in items],
                domains=[a.domain for a in items], budgets=[a.budget for a in items],
                min_tiers=[a.min_tier for a in items], metadata=[a.metadata for a in items])
        except RoutingInputError as e:
            for i, a in enumerate(items):
                try:
                    self._route_one(a)
                except RoutingInputError as ei:
                    raise BatchItemError(i, str(ei)) from ei
            raise e

    # -- async API ----------------------------------------------------------------------------------------------
    async def route(self, a: RouteArgs) -> Decision:
        if self.batcher is not None:
            return await self.batcher.submit(a)
        self.metrics.batch_size.observe(1)
        return await self._run("route", self._route_one, a)

    async def route_batch(self, items: list[RouteArgs]) -> list[Decision]:
        self.metrics.batch_size.observe(len(items))
        return await self._run("batch", self._route_many, items)

    async def escalate(self, prompt: str, tier_run: int, trace: dict | None, step_type: str | None = None,
                       metadata: dict[str, str] | None = None, *, response: str | None = None,
                       responses: dict[int, str] | None = None, logprobs: list[float] | None = None) -> Escalation:
        """:meth:`Router.escalate`; the run's output is passed only when given, so a request without one is the
        same call it always was."""
        run = {k: v for k, v in (("response", response), ("responses", responses), ("logprobs", logprobs))
               if v is not None}
        return await self._run("escalate", self.router.escalate, prompt, tier_run, trace, step_type=step_type,
                               metadata=metadata, **run)


class MicroBatcher:
    """Coalesces concurrent ``route`` calls into ``route_batch`` forward passes.

    At most ``max_inflight`` batches run at once; requests arriving meanwhile queue and leave together in the
    next batch (up to ``max_items``). So under load batches grow by themselves (each router call has a fixed
    cost -- tokeniser, ONNX and XGBoost call overheads -- that a batch pays once), while an idle server adds no
    latency beyond ``window_s`` (0: just the current event-loop tick). A batch refused because of one bad item
    is retried item by item, so one client's bad input never fails another client's request.
    """

    def __init__(self, engine: RouteEngine, window_s: float, max_items: int, max_inflight: int = 2) -> None:
        self.engine, self.window_s, self.max_items, self.max_inflight = engine, window_s, max_items, max_inflight
        self._pending: list[tuple[RouteArgs, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._inflight = 0
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, a: RouteArgs) -> Decision:
        eng = self.engine
        own = eng.expected_s("microbatch") or eng.expected_s("route")
        ahead = self._inflight + len(self._pending) // self.max_items  # batches to run before this one's
        eng.check_wait(ahead * own / max(1, min(self.max_inflight, eng.threads)), own, len(self._pending))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((a, fut))
        self._kick()
        return await fut

    def _kick(self) -> None:
        if not self._pending or self._inflight >= self.max_inflight:
            return  # a running batch's completion kicks again
        if len(self._pending) >= self.max_items:
            self._spawn_flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = (loop.call_later(self.window_s, self._spawn_flush) if self.window_s > 0
                           else loop.call_soon(self._spawn_flush))

    def _spawn_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._pending = self._pending[: self.max_items], self._pending[self.max_items:]
        if not items:
            return
        self._inflight += 1
        t = asyncio.get_running_loop().create_task(self._flush(items))
        self._tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        self._inflight -= 1
        self._kick()

    async def _flush(self, items: list[tuple[RouteArgs, asyncio.Future]]) -> None:
        live = [(a, f) for a, f in items if not f.done()]  # cancelled: the client went away
        if not live:
            return
        eng = self.engine
        eng.metrics.batch_size.observe(len(live))
        try:
            if len(live) == 1:
                results: list[Any] = [await eng._run("route", eng._route_one, live[0][0], _admit=False)]
            else:
                try:
                    results = await eng._run("microbatch", eng.router.route_batch, [a.prompt for a, _ in live],
                                             step_types=[a.step_type for a, _ in live],
                                             domains=[a.domain for a, _ in live],
                                             budgets=[a.budget for a, _ in live],
                                             min_tiers=[a.min_tier for a, _ in live],
                                             metadata=[a.metadata for a, _ in live], _admit=False)
                except RouteTimeout:
                    raise
                except Exception:  # any item-caused failure: isolate it, each caller gets its own answer or error
                    results = []
                    for a, f in live:
                        if f.done():
                            results.append(None)
                            continue
                        try:
                            results.append(await eng._run("route", eng._route_one, a, _admit=False))
                        except Exception as e:
                            results.append(e)
        except BaseException as e:  # timeout or a router failure: every waiting caller sees it
            for _, f in live:
                if not f.done():
                    f.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for (_, f), r in zip(live, results):
            if f.done():
                continue
            if isinstance(r, BaseException):
                f.set_exception(r)
            else:
                f.set_result(r)
