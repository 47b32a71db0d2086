"""Idle-socket flood: N TCP connections to the router that send nothing, while /healthz is timed every second.

Shows the server's header timeout (``header_timeout_s``) at work: idle sockets are closed by the server, file
descriptors come back, and /healthz keeps answering. Bounded by design: loopback only, at most 25,000 sockets,
``--duration`` <= 300 s. The soft RLIMIT_NOFILE is raised to the hard one first; if that still cannot hold N sockets
(plus a margin), N is lowered to what it allows and the script says so. Starts the server itself with
``scripts/load_test.py``'s start logic on a free loopback port.

    python scripts/idle_flood.py --bundle bundles/tiny --sockets 20000 --duration 20
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import proc_tree, rss_mb, start_server, stop_server  # noqa: E402

MAX_SOCKETS, MAX_DURATION, FD_MARGIN = 25_000, 300.0, 150


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return soft
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def server_fds(pid: int) -> int | None:
    """Open file descriptors of the server and its children (Linux /proc)."""
    try:
        return sum(len(os.listdir(f"/proc/{p}/fd")) for p in proc_tree(pid))
    except OSError:
        return None


def healthz_ms(host: str, port: int, timeout_s: float = 5.0) -> str:
    """One GET /healthz on a fresh connection: its latency in ms, or why it failed."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
        if not head.startswith(b"HTTP/1.1 200"):
            return f"bad:{head[:12]!r}"
        return f"{(time.perf_counter() - t0) * 1000:.1f}"
    except OSError as e:
        return f"fail:{type(e).__name__}"


class Flood:
    """Opens idle sockets in a background thread; :meth:`reap` closes (and counts) those the server closed."""

    def __init__(self, host: str, port: int, n: int) -> None:
        self.host, self.port, self.n = host, port, n
        self.lock = threading.Lock()
        self.socks: dict[int, socket.socket] = {}
        self.opened = self.failed = self.closed_by_server = 0
        self.first_close_s: float | None = None
        self.t_done: float | None = None
        self.thread = threading.Thread(target=self._open_all, daemon=True)

    def _open_all(self) -> None:
        for _ in range(self.n):
            try:
                s = socket.create_connection((self.host, self.port), timeout=5.0)
            except OSError:
                self.failed += 1
                continue
            with self.lock:
                self.socks[s.fileno()] = s
                self.opened += 1
        self.t_done = time.perf_counter()

    def reap(self) -> None:
        with self.lock:
            socks = dict(self.socks)
        p = select.poll()
        for fd in socks:
            p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        for fd, _ev in p.poll(0):
            s = socks[fd]
            try:
                data = s.recv(1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data == b"":
                with self.lock:
                    self.socks.pop(fd, None)
                    self.closed_by_server += 1
                s.close()

    def close_all(self) -> None:
        with self.lock:
            for s in self.socks.values():
                s.close()
            self.socks.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="start `python -m aco_bert.serve --bundle DIR` on a free loopback port")
    src.add_argument("--url", help="flood an already running server (loopback only)")
    ap.add_argument("--sockets", type=int, default=20_000, help=f"idle connections to open (<= {MAX_SOCKETS})")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds to watch after starting the flood")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (with --bundle)")
    ap.add_argument("server_args", nargs="*", help="after --: extra `aco_bert.serve` flags")
    a = ap.parse_args(argv)
    if not 1 <= a.sockets <= MAX_SOCKETS or not 0 < a.duration <= MAX_DURATION:
        ap.error(f"sockets must be 1..{MAX_SOCKETS}, duration in (0, {MAX_DURATION:.0f}] s")
    if a.url and urlparse(a.url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        ap.error("--url must be a loopback address")
    limit = raise_nofile()
    n = min(a.sockets, limit - FD_MARGIN)
    if n < a.sockets:
        print(f"RLIMIT_NOFILE hard limit is {limit}: opening {n} sockets instead of {a.sockets}")
    proc = None
    url = a.url
    if a.bundle:
        proc, url = start_server(a.bundle, a.workers, a.server_args)
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    flood = Flood(host, port, n)
    rows = []
    try:
        t0 = time.perf_counter()
        flood.thread.start()
        print("| t_s | opened | open_now | closed_by_server | connect_failed | healthz_ms | server_fds | server_rss_mb |")
        print("|-----|--------|----------|------------------|----------------|------------|------------|---------------|")
        while time.perf_counter() - t0 < a.duration:
            flood.reap()
            if flood.closed_by_server and flood.first_close_s is None:
                flood.first_close_s = time.perf_counter() - t0
            row = (f"{time.perf_counter() - t0:.0f}", flood.opened, len(flood.socks), flood.closed_by_server,
                   flood.failed, healthz_ms(host, port), server_fds(proc.pid) if proc else "-",
                   rss_mb(proc.pid) if proc else "-")
            rows.append(row)
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0) % 1.0))
        ok = sum(1 for r in rows if not str(r[5]).startswith(("fail", "bad")))
        opened_s = f"{flood.t_done - t0:.1f} s" if flood.t_done else "not finished"
        print(f"sockets requested {a.sockets}, opened {flood.opened} (all opened after {opened_s}), connect failures "
              f"{flood.failed}; closed by the server within {a.duration:.0f} s: {flood.closed_by_server} "
              f"(first after {flood.first_close_s or float('nan'):.0f} s); /healthz answered {ok}/{len(rows)}")
    finally:
        flood.close_all()
        stop_server(proc)
    return 0 if rows and ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
