"""Client API keys: ``Authorization: Bearer <key>`` checked against sha256 hashes, in constant time.

Why hashes: the serve config (YAML, environment, a process listing) never holds a usable key; a leaked config
does not let anyone call the router. ``python -m aco_bert.serve hash-key`` prints the hash of a key read from
stdin (never from argv, which other users can see). Keys are compared with :func:`hmac.compare_digest` over the
hash of the presented key against every configured hash (no early exit on the first match), and the presented key
is never logged or echoed back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from aco_bert.serve.metrics import ServeMetrics
from aco_bert.serve.middleware import endpoint_label, send_error

OPEN_PATHS = ("/healthz", "/readyz")  # liveness/readiness probes never need a key
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The sha256 hex digest of a client key, the form ``api_key_hashes`` holds."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_key_hashes(hashes: list[str] | None, path: str | None) -> list[str]:
    """Configured hashes plus those of ``api_keys_file`` (one hex sha256 a line, ``#`` comments); a value that is
    not a 64-hex-digit hash is refused (it is probably a plaintext key put there by mistake)."""
    out: list[str] = []
    src: list[tuple[str, str]] = [("api_key_hashes", h) for h in (hashes or [])]
    if path:
        text = Path(path).read_text(encoding="utf-8")
        src += [(f"{path}:{i}", ln.split("#", 1)[0].strip()) for i, ln in enumerate(text.splitlines(), 1)]
    for where, h in src:
        if not isinstance(h, str):
            raise ValueError(f"{where}: {h!r} is not a string (quote the hash)")
        if not h:
            continue
        h = h.strip().lower().removeprefix("sha256:")
        if not _HEX64.match(h):
            raise ValueError(f"{where}: not a sha256 hex digest (64 hex digits); store hashes, never keys "
                             "(make one with `python -m aco_bert.serve hash-key`)")
        out.append(h)
    return out


def key_matches(presented: str, hashes: list[str]) -> bool:
    """Constant-time membership: every configured hash is compared, whatever matched first."""
    digest = hash_key(presented).encode()
    ok = False
    for h in hashes:
        ok |= hmac.compare_digest(digest, h.encode())
    return ok


class ApiKeyGuard:
    """Pure ASGI: 401 (with ``WWW-Authenticate: Bearer``) for a request to a protected path without a valid key."""

    def __init__(self, app: ASGIApp, hashes: list[str], metrics: ServeMetrics, protect_metrics: bool = True) -> None:
        self.app, self.hashes, self.metrics = app, list(hashes), metrics
        self.open = OPEN_PATHS + (() if protect_metrics else ("/metrics",))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.open:
            return await self.app(scope, receive, send)
        auth = dict(scope.get("headers") or []).get(b"authorization")
        why = None
        if auth is None:
            why = "missing Authorization header (expected 'Authorization: Bearer <key>')"
        else:
            scheme, _, key = auth.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                why = "Authorization header is not 'Bearer <key>'"
            elif not key_matches(key.strip(), self.hashes):
                why = "invalid API key"
        if why is None:
            return await self.app(scope, receive, send)
        self.metrics.errors.inc(endpoint=endpoint_label(scope.get("path", "")), code="unauthorized")
        await send_error(send, 401, "unauthorized", why, headers=[(b"www-authenticate", b"Bearer")])


def hash_key_main(argv: list[str]) -> int:
    """``python -m aco_bert.serve hash-key``: read a key from stdin, print its sha256 line for api_key_hashes."""
    if argv and argv[0] in ("-h", "--help"):
        print("usage: echo -n KEY | python -m aco_bert.serve hash-key   (prints the sha256 hex to put in "
              "api_key_hashes or api_keys_file)")
        return 0
    key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        print("hash-key: no key on stdin", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0
