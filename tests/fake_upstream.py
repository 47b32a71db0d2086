"""A real OpenAI-compatible HTTP server on loopback for proxy tests: /v1/chat/completions, plain or SSE stream.

Runs ``http.server`` in a thread on a free 127.0.0.1 port (never another address). ``mode`` switches behaviour
between requests: ``ok``, ``error500`` (an OpenAI-style error body), ``slow`` (sleeps ``delay_s`` before
answering, to trigger the proxy's timeout), ``break`` (a stream cut after the first event) and ``reply`` (answer
``reply = (status, headers, body)`` verbatim, ``{authorization}`` in the body replaced by the Authorization header
the proxy sent: a hostile upstream that echoes the credential, sets cookies, redirects or rate-limits).
``extra_headers`` are added to every ``ok`` answer; a stream's last text chunk carries ``finish_reason: stop``
(LiteLLM refuses a stream that never finishes). Every request is recorded (path, headers, JSON body) so tests can
assert what the proxy actually sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeUpstream:
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 2.0
        self.reply: tuple[int, dict[str, str], str] = (500, {}, "")
        self.extra_headers: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                body = json.loads(raw) if raw else None
                with owner._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    owner.requests.append({"path": self.path, "headers": headers, "body": body})
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                mode = owner.mode
                if mode == "reply":
                    return self._reply(*owner.reply)
                if mode == "error500":
                    return self._json(500, {"error": {"message": "fake upstream exploded", "type": "server_error"}})
                if mode == "slow":
                    time.sleep(owner.delay_s)
                model = (body or {}).get("model")
                text = f"echo from {self.path.split('/')[1]}: {(body or {}).get('messages', [{}])[-1].get('content')}"
                if (body or {}).get("stream"):
                    return self._stream(model, text, cut=(mode == "break"))
                return self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})

            def _reply(self, status: int, headers: dict[str, str], body: str) -> None:
                data = body.replace("{authorization}", self.headers.get("authorization", "")).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v.replace("{authorization}", self.headers.get("authorization", "")))
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("x-fake-upstream", "1")
                for k, v in owner.extra_headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, model: str, text: str, cut: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("x-fake-upstream", "1")
                for k, v in owner.extra_headers.items():
                    self.send_header(k, v)
                self.end_headers()
                words = text.split(" ")
                for i, w in enumerate(words):
                    ev = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                          "choices": [{"index": 0, "delta": {"content": (w if i == 0 else " " + w)},
                                       "finish_reason": "stop" if i == len(words) - 1 and not cut else None}]}
                    self._chunk(f"data: {json.dumps(ev)}\n\n".encode())
                    if cut:  # die mid-stream: no terminating chunk, connection dropped
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    time.sleep(0.005)
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)  # a client that hung up is expected in tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-upstream", daemon=True)

    def base_url(self, tier_prefix: str) -> str:
        """Base URL as OpenAI clients spell it (``.../v1``); the prefix tells tests which tier was called."""
        return f"http://127.0.0.1:{self.port}/{tier_prefix}/v1"

    def __enter__(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def last(self) -> dict[str, Any]:
        with self._lock:
            return self.requests[-1]
