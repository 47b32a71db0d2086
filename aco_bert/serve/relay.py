"""What the proxy relays from an upstream, and what it never does: the relay rules of every proxied call.

An upstream is a third party holding the proxy's credential, so nothing it says reaches the client unchecked:

* **headers** are allow-listed (:data:`RELAY_HEADERS`, each value checked against a pattern); cookies, ``Location``,
  hop-by-hop and the upstream's internal headers are dropped;
* **error bodies** are never relayed: a failure becomes status + a fixed text + at most one short reason token
  (the upstream's ``error.code`` / ``error.type`` when it is a plain identifier that is not the credential);
* **statuses** are mapped (:func:`map_status`): 3xx is never followed nor relayed (502), 401/403 mean the proxy's
  credential is wrong (502 with ``x-should-retry: false``, so OpenAI clients do not multiply upstream calls),
  400/404/422 are the client's request (400-class), 429 keeps a checked ``Retry-After``, 5xx is 502, a timeout 504.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

MAX_ERROR_BODY = 64 * 1024  # bytes of an upstream error body read (to find its reason token), never relayed
DEFAULT_RETRY_AFTER_S = 1  # Retry-After of a relayed 429 whose upstream gave none (or an unusable one)
MAX_RETRY_AFTER_S = 3600  # longer upstream Retry-After values are clamped to this
MAX_HEADER_VALUE = 256  # longer upstream header values are dropped

_TOKEN = re.compile(r"[a-z][a-z0-9_]{1,47}")  # OpenAI-style codes: invalid_api_key, context_length_exceeded
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9_-]+=[A-Za-z0-9_.\"-]+)*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_VERSION = re.compile(r"[0-9A-Za-z_.-]{1,32}")

# upstream response header -> the pattern its value must match to be relayed. Deliberately absent: set-cookie,
# location, server/via/x-powered-by and other internal headers, and the x-ratelimit-* family (they describe the
# proxy's shared account, so one client could watch the others' traffic through them).
RELAY_HEADERS: dict[str, re.Pattern[str]] = {
    "content-type": _MEDIA_TYPE,
    "x-request-id": _REQUEST_ID,
    "openai-processing-ms": _NUMBER,
    "openai-version": _VERSION,
}


class ProxyError(Exception):
    """An upstream problem reported to the client: status, code, fixed message, upstream status, relay headers.

    ``headers`` (e.g. ``Retry-After``, ``x-should-retry``) always travel with the answer: assigning the route's
    headers to ``aco_headers`` adds to them rather than replacing them."""

    def __init__(self, status: int, code: str, message: str, upstream_status: int | None = None,
                 upstream_body: Any = None, headers: Mapping[str, str] | None = None,
                 upstream_reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.upstream_status, self.upstream_reason = upstream_status, upstream_reason
        self.upstream_body = upstream_body  # kept for callers; the relay never sets it (bodies are not relayed)
        self.headers: dict[str, str] = dict(headers or {})
        self._route_headers: dict[str, str] = {}

    @property
    def aco_headers(self) -> dict[str, str]:
        return {**self._route_headers, **self.headers}

    @aco_headers.setter
    def aco_headers(self, value: Mapping[str, str] | None) -> None:
        self._route_headers = dict(value or {})


@dataclass(frozen=True)
class StatusRule:
    status: int  # what the client gets
    code: str
    text: str  # fixed text: never the upstream's words
    retry: bool  # whether a client retry can help (False -> x-should-retry: false)


def map_status(upstream: int) -> StatusRule:
    """The client's status for an upstream's non-2xx status (see the module docstring)."""
    if 300 <= upstream < 400:
        return StatusRule(502, "upstream_redirect", "a redirect, which the proxy never follows", False)
    if upstream in (401, 403, 407):
        return StatusRule(502, "upstream_auth_failed", "the proxy's credential was refused (a proxy "
                          "configuration problem; retrying will not help)", False)
    if upstream == 404:
        return StatusRule(400, "upstream_not_found", "the upstream has no such model or route for this request", False)
    if upstream == 408:
        return StatusRule(504, "upstream_timeout", "the upstream timed out reading the request", True)
    if upstream == 413:
        return StatusRule(413, "upstream_request_too_large", "the request is too large for the upstream", False)
    if upstream == 429:
        return StatusRule(429, "upstream_rate_limited", "rate limited; retry after Retry-After seconds", True)
    if 400 <= upstream < 500:
        return StatusRule(upstream if upstream == 422 else 400, "upstream_rejected_request",
                          "the upstream rejected the request as invalid", False)
    if 500 <= upstream < 600:
        return StatusRule(502, "upstream_error", "the upstream failed", True)
    return StatusRule(502, "upstream_bad_response", "an unexpected status", False)


def _leaks(value: str, secret: str | None) -> bool:
    """Whether ``value`` carries the credential (or a long enough piece of it)."""
    if not secret:
        return False
    return secret in value or (len(value) >= 6 and value in secret)


def reason_token(raw: bytes, secret: str | None = None) -> str | None:
    """The upstream's ``error.code`` or ``error.type`` when it is a short plain identifier, else None."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    for key in ("code", "type"):
        v = err.get(key)
        if isinstance(v, str) and _TOKEN.fullmatch(v) and not _leaks(v, secret):
            return v
    return None


def relay_headers(headers: Mapping[str, str], secret: str | None = None) -> dict[str, str]:
    """The allow-listed upstream headers whose values match their pattern and carry no credential."""
    out: dict[str, str] = {}
    for k, v in headers.items():
        pattern = RELAY_HEADERS.get(k.lower())
        if pattern is None or len(v) > MAX_HEADER_VALUE or not pattern.fullmatch(v) or _leaks(v, secret):
            continue
        out[k.lower()] = v
    return out


def retry_after(headers: Mapping[str, str]) -> dict[str, str]:
    """``Retry-After`` (whole seconds, clamped) and ``retry-after-ms`` for a relayed 429: the upstream's numeric
    values when usable, else :data:`DEFAULT_RETRY_AFTER_S` (an HTTP-date is not relayed: clocks differ)."""
    lower = {k.lower(): v for k, v in headers.items()}
    seconds: float | None = None
    ms = lower.get("retry-after-ms", "").strip()
    if _NUMBER.fullmatch(ms):
        seconds = float(ms) / 1000.0
    ra = lower.get("retry-after", "").strip()
    if seconds is None and _NUMBER.fullmatch(ra):
        seconds = float(ra)
    if seconds is None or seconds <= 0:
        seconds = float(DEFAULT_RETRY_AFTER_S)
    seconds = min(seconds, float(MAX_RETRY_AFTER_S))
    whole = max(1, int(seconds + 0.999))
    return {"retry-after": str(whole), "retry-after-ms": str(int(seconds * 1000))}


def upstream_failure(tier: int, status: int, headers: Mapping[str, str], raw: bytes,
                     secret: str | None = None) -> ProxyError:
    """The ProxyError for an upstream's non-2xx answer: mapped status, fixed text, at most a reason token."""
    rule = map_status(status)
    reason = reason_token(raw, secret) if status >= 400 else None
    message = f"tier {tier} upstream answered HTTP {status}" + (f" ({reason})" if reason else "") + f": {rule.text}"
    out_headers: dict[str, str] = {}
    if status == 429:
        out_headers.update(retry_after(headers))
    if not rule.retry:
        out_headers["x-should-retry"] = "false"  # read by the OpenAI SDKs before their own retry rules
    return ProxyError(rule.status, rule.code, message, upstream_status=status, headers=out_headers,
                      upstream_reason=reason)
