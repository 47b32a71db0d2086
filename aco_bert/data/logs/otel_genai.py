"""OpenTelemetry GenAI spans in OTLP JSON: ``{"resourceSpans": [{"resource": {...}, "scopeSpans": [{"spans":
[...]}]}]}``, as the OTLP/HTTP JSON encoding and the Collector's file exporter write it.

Files: ``.json`` (one export request) or ``.jsonl`` (one export request per line: the file exporter). Attribute
values are OTLP ``AnyValue``s (``stringValue``, ``intValue`` (a string in JSON), ``doubleValue``, ``boolValue``,
``arrayValue``, ``kvlistValue``). Rows are named ``[line N ]resourceSpans[r].scopeSpans[s].spans[k]``.

==========================================  ===============  =================================================
span attribute (semantic conventions)       canonical        note
==========================================  ===============  =================================================
``gen_ai.request.model`` (else              model            the model that was asked for
``gen_ai.response.model``)
``gen_ai.input.messages`` [{role, parts}]   prompt           last user message; ``gen_ai.system_instructions``
(else ``gen_ai.prompt.<i>.role/content``,                    is the system prompt (``--include_system``)
``gen_ai.prompt``, or the
``gen_ai.user.message`` event)
``gen_ai.usage.input_tokens`` (else         input_tokens
``gen_ai.usage.prompt_tokens``)
``gen_ai.usage.output_tokens`` (else        output_tokens
``gen_ai.usage.completion_tokens``)
``endTimeUnixNano - startTimeUnixNano``     latency_s
``gen_ai.usage.cost``                       cost_usd         not in the conventions (OpenLIT sets it);
                                                             ``--cost_field`` names another attribute
``gen_ai.output.messages`` (else            response
``gen_ai.completion.<i>.content``,
``gen_ai.completion``, ``gen_ai.choice``)
``--score <attribute>``, e.g.               success          span attributes over resource attributes; a dotted
``aco.eval.passed``                                          attribute key is matched whole
==========================================  ===============  =================================================

Skipped (counted): spans without a GenAI model attribute, non-inference operations (embeddings, tools, agents)
and spans with status ERROR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aco_bert.data.io import read_json_source, read_jsonl
from aco_bert.data.logs.base import LogFormat, LogRecord
from aco_bert.data.logs.fields import as_messages
from aco_bert.data.schema import DataError

NON_INFERENCE_OPS = ("embeddings", "execute_tool", "create_agent", "invoke_agent")


def any_value(v: Any) -> Any:
    """An OTLP JSON ``AnyValue`` as a Python value."""
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return attributes((v["kvlistValue"] or {}).get("values", []))
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP ``[{key, value: AnyValue}]`` -> ``{key: value}``."""
    if not isinstance(kvs, list):
        return {}
    return {kv["key"]: any_value(kv.get("value")) for kv in kvs if isinstance(kv, dict) and "key" in kv}


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Flattened ``prefix.<i>.role`` / ``prefix.<i>.content`` attributes (OpenLLMetry) as messages."""
    out: dict[int, dict[str, Any]] = {}
    for k, v in attrs.items():
        if k.startswith(prefix + "."):
            idx, _, leaf = k[len(prefix) + 1:].partition(".")
            if idx.isdigit() and leaf in ("role", "content"):
                out.setdefault(int(idx), {})[leaf] = v
    return [out[i] for i in sorted(out)]


def _event_attr(events: list[dict[str, Any]], names: tuple[str, ...], keys: tuple[str, ...]) -> Any:
    for e in events:
        if isinstance(e, dict) and e.get("name") in names:
            a = attributes(e.get("attributes"))
            for k in keys:
                if a.get(k) is not None:
                    return a[k]
    return None


class OTelGenAISpans(LogFormat):
    __doc__ = __doc__
    name = "otel-genai"

    def records(self, path: str) -> Iterator[LogRecord]:
        if Path(path).suffix.lower() in (".jsonl", ".ndjson"):
            for i, doc in read_jsonl(path):
                yield from self._doc(path, doc, f"line {i} ")
        elif Path(path).suffix.lower() == ".json":
            yield from self._doc(path, read_json_source(path), "")
        else:
            raise DataError(f"unsupported file type {Path(path).suffix!r}; expected .json or .jsonl", file=path)

    def _doc(self, path: str, doc: Any, where: str) -> Iterator[LogRecord]:
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            raise DataError("not an OTLP JSON trace export (no resourceSpans list)", file=path,
                            row=where.strip() or None)
        for r, rs in enumerate(doc["resourceSpans"]):
            res = attributes((rs.get("resource") or {}).get("attributes"))
            for s, ss in enumerate(rs.get("scopeSpans") or []):
                for k, span in enumerate(ss.get("spans") or []):
                    yield self._span(path, f"{where}resourceSpans[{r}].scopeSpans[{s}].spans[{k}]", res, span)

    def _span(self, path: str, row: str, res: dict[str, Any], span: dict[str, Any]) -> LogRecord:
        a = attributes(span.get("attributes"))
        view = {**res, **a, "name": span.get("name"), "traceId": span.get("traceId"), "spanId": span.get("spanId")}
        model = a.get("gen_ai.request.model") or a.get("gen_ai.response.model")
        op = a.get("gen_ai.operation.name")
        status = (span.get("status") or {}).get("code")
        if not model:
            return LogRecord(row=row, view=view, skip="not a GenAI span (no gen_ai.request.model)")
        if op in NON_INFERENCE_OPS:
            return LogRecord(row=row, view=view, skip=f"not an inference span (gen_ai.operation.name {op})")
        if status in (2, "STATUS_CODE_ERROR"):
            return LogRecord(row=row, view=view, skip="failed call (span status ERROR)")
        events = span.get("events") or []
        messages: Any = a.get("gen_ai.input.messages")
        if messages is None:
            messages = _indexed(a, "gen_ai.prompt") or a.get("gen_ai.prompt")
        if messages is None:
            user = _event_attr(events, ("gen_ai.user.message",), ("content",))
            messages = [{"role": "user", "content": user}] if user is not None else \
                _event_attr(events, ("gen_ai.content.prompt",), ("gen_ai.prompt",))
        system = a.get("gen_ai.system_instructions")
        if system is not None and isinstance(messages, (list, str)):
            msgs = as_messages(messages)
            sys_msg = {"role": "system", "parts": system} if isinstance(system, list) else \
                {"role": "system", "content": str(system)}
            messages = [sys_msg, *(msgs if isinstance(msgs, list) else [{"role": "user", "content": msgs}])]
        response = a.get("gen_ai.output.messages")
        if response is None:
            done = _indexed(a, "gen_ai.completion")
            response = done[-1].get("content") if done else a.get("gen_ai.completion")
        if response is None:
            response = _event_attr(events, ("gen_ai.choice", "gen_ai.content.completion"),
                                   ("message", "content", "gen_ai.completion"))
        try:
            latency = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e9 \
                if span.get("endTimeUnixNano") and span.get("startTimeUnixNano") else None
        except (TypeError, ValueError):
            raise DataError("span times are not integer nanoseconds", file=path, row=row) from None
        return LogRecord(
            row=row, view=view, messages=messages, model=model, response=response,
            cost_usd=a.get("gen_ai.usage.cost"),
            input_tokens=a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens")),
            output_tokens=a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens")),
            latency_s=latency,
        )
