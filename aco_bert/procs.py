"""Child processes that die with their parent: a ``kill -9`` of ``score --workers N`` or ``serve --workers N`` must
not leave worker processes behind holding the bundle, the port or the CPU.

Linux: :func:`die_with_parent` asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGTERM)``) to send SIGTERM to this
process when its parent dies, even by SIGKILL. Elsewhere, or when ``prctl`` cannot be called, a daemon thread
polls the parent's pid once a second and exits the process when the parent is gone. Windows is a no-op (there the
parent's death is not observable this way; multiprocessing's own pipes end the pool).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _parent_pid() -> int:
    """The pid this process should outlive no longer than: multiprocessing's parent when there is one (its pid is
    known even if the parent already died before we got here), else ``os.getppid()``."""
    import multiprocessing as mp

    parent = mp.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getppid()


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(parent: int, interval_s: float) -> None:
    while _alive(parent) and os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)  # the parent is gone: nobody will collect our results


def die_with_parent(interval_s: float = 1.0) -> str:
    """Make this (child) process end when its parent dies; call it first thing in the child.

    Returns how: ``"prctl"`` (Linux: SIGTERM from the kernel), ``"watchdog"`` (a parent-pid polling thread, when
    prctl is unavailable), ``"none"`` (Windows: no-op). If the parent already died before the call (the race
    between fork/spawn and this call), the process exits at once."""
    if sys.platform == "win32":
        return "none"
    parent = _parent_pid()
    if sys.platform.startswith("linux") and _prctl_pdeathsig(signal.SIGTERM):
        if os.getppid() != parent:  # died before prctl took effect: no signal will come
            os._exit(1)
        return "prctl"
    threading.Thread(target=_watch, args=(parent, interval_s), name="die-with-parent", daemon=True).start()
    return "watchdog"
