"""Workers die with their parent: after SIGKILL of the parent, no scorer pool worker / server worker outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan reaped by init disappears; a zombie is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _wait_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.time() + timeout_s
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _kill_all(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


# The scorer's pool exactly as run_workers builds it (spawn context, worker_init as initializer); the "loader" is
# the builtin max so no bundle is needed: worker_init(max, 1, 2, 3) "loads" max(1, 2, 3).
POOL_PARENT = textwrap.dedent("""
    import os, sys, time, multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from aco_bert.score.workers import worker_init
    if __name__ == "__main__":
        ex = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=worker_init, initargs=(max, 1, 2, 3))
        pids = set()
        while len(pids) < 2:
            pids |= {f.result() for f in [ex.submit(os.getpid) for _ in range(8)]}
            time.sleep(0.05)
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(60)
""")


def test_scorer_workers_die_with_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(POOL_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids: list[int] = []
    try:
        pids = [int(x) for x in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert _wait_gone(pids) == [], "scorer workers outlived their SIGKILLed parent"
    finally:
        parent.kill()
        _kill_all(pids)


def test_unguarded_children_would_survive(tmp_path):
    """Control: the same pool without die_with_parent leaves orphans, so the test above can fail."""
    script = tmp_path / "parent.py"
    script.write_text(POOL_PARENT.replace("initializer=worker_init, initargs=(max, 1, 2, 3)", ""))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids: list[int] = []
    try:
        pids = [int(x) for x in parent.stdout.readline().split()]
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert _wait_gone(pids, 1.5) == pids
    finally:
        parent.kill()
        _kill_all(pids)


def test_die_with_parent_reports_mechanism():
    from aco_bert.procs import die_with_parent

    out = subprocess.run([sys.executable, "-c", "from aco_bert.procs import die_with_parent; print(die_with_parent())"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.stdout.strip() == "prctl" and callable(die_with_parent)


def test_server_workers_die_with_supervisor(tiny_bundle):
    import httpx

    sys.path.insert(0, str(ROOT / "scripts"))
    from load_test import start_server

    proc, url = start_server(str(tiny_bundle), 2, [])
    workers: list[int] = []
    try:
        deadline = time.time() + 20  # ready means one worker answered; wait for both processes
        while time.time() < deadline and len(workers) < 2:
            workers = _children(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= 2
        assert httpx.get(url + "/healthz", timeout=5, trust_env=False).status_code == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert _wait_gone(workers, 8.0) == [], "server workers outlived their SIGKILLed supervisor"
    finally:
        proc.kill()
        _kill_all(workers)
