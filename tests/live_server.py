"""uvicorn serving an app on 127.0.0.1:<free port> in a background thread: the HTTP tests' one harness."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn


class LiveServer:
    """``app`` behind real HTTP; with ``config`` (a ServeConfig) uvicorn gets the service's own limits
    (:func:`aco_bert.serve.server.uvicorn_config`: header timeout, concurrency, backlog), else plain settings."""

    def __init__(self, app, config=None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if config is None:
            cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        else:
            from aco_bert.serve.server import uvicorn_config

            cfg = uvicorn_config(app, config, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), trust_env=False, **kw)


def wait_ready(proc, url: str, output, timeout_s: float = 90.0, poll_s: float = 0.1) -> None:
    """Poll ``url``/readyz until 200 for a server started as its own process (``python -m aco_bert.serve``);
    raise with ``output()`` (the process's log) when it exits or is not ready within ``timeout_s``."""
    deadline = time.time() + timeout_s
    while True:
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"aco_bert.serve did not become ready: {output()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
