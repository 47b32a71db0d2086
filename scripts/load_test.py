"""Load test for the routing service: N concurrent clients for T seconds on loopback -> req/s, latency, errors.

Bounded by design: at most ``--max-requests`` requests, ``--duration`` <= 600 s, <= 256 clients, and only
loopback URLs (127.0.0.1 / localhost / ::1) are accepted. With ``--bundle`` it starts ``python -m aco_bert.serve``
itself on a free loopback port and stops it afterwards; with ``--url`` it drives a server already running.
Prompts are real SWE-bench Verified issue texts from the data dir when present (else synthetic ones).

    python scripts/load_test.py --bundle bundles/tiny --clients 32 --duration 60

"errors" are HTTP responses other than 2xx; "dropped" are requests that got no HTTP response at all (connection
refused/reset, client timeout). ``rss_start_mb`` / ``rss_end_mb``: the server's resident memory (VmRSS of its
process and all its children) at the start and end of the timed window (with ``--bundle`` on Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_CLIENTS, MAX_DURATION = 256, 600.0


def load_prompts(data_dir: str | None, n: int, seed: int = 0) -> tuple[list[str], str]:
    d = Path(data_dir or os.environ.get("ACO_BERT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    tasks = d / "swebench-verified" / "tasks.jsonl"
    if tasks.exists():
        with open(tasks) as f:
            texts = [json.loads(line)["problem_statement"] for line in f if line.strip()]
        return texts[:n], f"swebench-verified tasks.jsonl ({min(n, len(texts))} issue texts)"
    rng = random.Random(seed)
    words = "fix bug parser regression crash test module api timeout cache refactor migrate".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 400))) for _ in range(n)], "synthetic prompts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc: subprocess.Popen | None) -> None:
    """Terminate a server :func:`start_server` started (kill it after 15 s)."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(bundle: str, workers: int, extra: list[str], timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "aco_bert.serve", "--bundle", bundle, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log_level", "warning", *extra]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before becoming ready")
        try:
            if httpx.get(url + "/readyz", timeout=1.0, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"server not ready within {timeout_s:.0f} s")


def cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of ``pid`` and its child processes (Linux /proc); None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, todo = 0.0, [pid]
    try:
        while todo:
            p = todo.pop()
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    except (OSError, ValueError, IndexError):
        return None
    return total


def proc_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc); just ``[pid]`` where /proc has no children lists."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def rss_mb(pid: int) -> float | None:
    """Resident memory (VmRSS) of ``pid`` plus its children, in MiB (Linux /proc); None elsewhere."""
    total_kb, seen = 0, False
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        seen = True
                        break
        except (OSError, ValueError, IndexError):
            continue
    return round(total_kb / 1024, 1) if seen else None


def request_for(kind: str, prompt: str, i: int) -> tuple[str, dict]:
    if kind == "route":
        return "/v1/route", {"prompt": prompt}
    if kind == "batch":
        return "/v1/route/batch", {"items": [{"prompt": prompt}] * 8}
    if kind == "escalate":
        return "/v1/escalate", {"prompt": prompt, "tier_run": 1, "trace": {"api_calls": i % 50}}
    raise ValueError(kind)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator should cost far less CPU than
    the server it measures (httpx spends several ms of CPU per request, which on a 2-core host steals the
    server's CPU and understates its throughput)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> int:
        return await asyncio.wait_for(self._post(path, body), self.timeout_s)

    async def _post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.read()  # close-delimited
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status


async def run_load(url: str, prompts: list[str], clients: int, duration: float, max_requests: int, kind: str,
                   timeout_s: float) -> dict:
    lat: list[float] = []
    status: dict[str, int] = {}
    dropped = 0
    sent = 0
    stop_at = time.perf_counter() + duration
    u = urlparse(url)
    bodies = [request_for(kind, prompts[i % len(prompts)], i) for i in range(max(len(prompts), clients))]
    bodies = [(path, json.dumps(b).encode()) for path, b in bodies]

    async def worker(wid: int) -> None:
        nonlocal dropped, sent
        client = RawClient(u.hostname, u.port or 80, timeout_s)
        i = wid
        try:
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                path, body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                try:
                    code = await client.post(path, body)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                    dropped += 1
                    await client.close()
                    continue
                lat.append(time.perf_counter() - t0)
                status[str(code)] = status.get(str(code), 0) + 1
        finally:
            await client.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    lat.sort()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    ok = sum(v for k, v in status.items() if k.startswith("2"))
    return {"endpoint": kind, "clients": clients, "duration_s": round(wall, 2), "requests": sent, "ok": ok,
            "errors": sum(status.values()) - ok, "dropped": dropped, "req_per_s": round(ok / wall, 1),
            "p50_ms": round(pct(0.50), 2), "p90_ms": round(pct(0.90), 2), "p99_ms": round(pct(0.99), 2),
            "max_ms": round(lat[-1] * 1000, 2) if lat else float("nan"), "status": status}


def print_table(rows: list[dict]) -> None:
    cols = ["endpoint", "clients", "duration_s", "requests", "ok", "errors", "dropped", "req_per_s", "p50_ms",
            "p90_ms", "p99_ms", "max_ms", "mean_batch", "server_cpu_ms_per_req", "client_cpu_ms_per_req", "rss_start_mb", "rss_end_mb"]
    rows = [{c: r.get(c, "-") for c in cols} for r in rows]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="start `python -m aco_bert.serve --bundle DIR` on a free loopback port")
    src.add_argument("--url", help="drive an already running server (loopback only)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--max-requests", type=int, default=1_000_000)
    ap.add_argument("--endpoint", default="route", choices=["route", "batch", "escalate"])
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (with --bundle)")
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per request; exceeded = dropped")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-prompts", type=int, default=500)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of untimed load first")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("server_args", nargs="*", help="after --: extra `aco_bert.serve` flags, e.g. -- --microbatch true")
    a = ap.parse_args(argv)
    if not 1 <= a.clients <= MAX_CLIENTS or not 0 < a.duration <= MAX_DURATION or a.max_requests < 1:
        ap.error(f"clients must be 1..{MAX_CLIENTS}, duration in (0, {MAX_DURATION:.0f}] s, max-requests >= 1")
    if a.url and urlparse(a.url).hostname not in LOOPBACK:
        ap.error(f"--url must be a loopback address ({sorted(LOOPBACK)}), got {urlparse(a.url).hostname!r}")

    prompts, source = load_prompts(a.data_dir, a.n_prompts)
    proc = None
    url = a.url
    if a.bundle:
        proc, url = start_server(a.bundle, a.workers, a.server_args)
    try:
        info = httpx.get(url.rstrip("/") + "/v1/router", timeout=10, trust_env=False).json()
        if a.warmup > 0:
            asyncio.run(run_load(url, prompts, a.clients, a.warmup, a.max_requests, a.endpoint, a.timeout))
        cpu0 = cpu_seconds(proc.pid) if proc is not None else None
        rss0 = rss_mb(proc.pid) if proc is not None else None
        me0 = time.process_time()
        res = asyncio.run(run_load(url, prompts, a.clients, a.duration, a.max_requests, a.endpoint, a.timeout))
        cpu1 = cpu_seconds(proc.pid) if proc is not None else None
        res["rss_start_mb"], res["rss_end_mb"] = rss0, rss_mb(proc.pid) if proc is not None else None
        res["client_cpu_ms_per_req"] = round((time.process_time() - me0) / max(1, res["ok"]) * 1000, 2)
        if cpu0 is not None and cpu1 is not None and res["ok"]:
            res["server_cpu_ms_per_req"] = round((cpu1 - cpu0) / res["ok"] * 1000, 2)
        metrics_text = httpx.get(url.rstrip("/") + "/metrics", timeout=10, trust_env=False).text
        n = sum(float(x.split()[-1]) for x in metrics_text.splitlines() if x.startswith("aco_route_batch_size_count"))
        items = sum(float(x.split()[-1]) for x in metrics_text.splitlines() if x.startswith("aco_route_batch_size_sum"))
        res["mean_batch"] = round(items / n, 2) if n else None
    finally:
        stop_server(proc)
    man = info.get("manifest") or {}
    print(f"server {url}  workers={a.workers}  tiers={[t['model'] for t in info.get('tiers', [])]}  "
          f"max_length={info.get('max_length')}  bundle={info.get('service', {}).get('bundle')}  "
          f"int8={info.get('service', {}).get('int8')}  microbatch={info.get('service', {}).get('microbatch')}")
    model = man.get("encoder") if isinstance(man.get("encoder"), dict) else {}
    print(f"model={model.get('name', '?')} (layers={model.get('layers', '?')}, hidden={model.get('hidden_size', '?')}, "
          f"max_length={model.get('max_length', '?')})  prompts: {source}  cores={os.cpu_count()}  "
          f"load_avg={os.getloadavg()[0]:.1f}")
    print_table([res])
    print(f"status codes: {res['status']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"result": res, "router": {k: info.get(k) for k in ('tiers', 'max_length')},
                                            "prompts": source}, indent=2))
    return 0 if res["errors"] == 0 and res["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
