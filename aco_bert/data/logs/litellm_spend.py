"""LiteLLM spend logs: the proxy's ``LiteLLM_SpendLogs`` rows (``GET /spend/logs``, a DB dump) or the
``StandardLoggingPayload`` that LiteLLM's logging callbacks (S3 / GCS / custom loggers) write.

Files: ``.json`` (a list of rows, or a page ``{"data": [...]}``) or ``.jsonl`` (one row per line).

=========================================  ===============  ==================================================
source field                               canonical        note
=========================================  ===============  ==================================================
``model_group`` (else ``model``)           model            the public name the proxy routes to; else the
                                                            deployment's model (``--model_field model``)
``messages`` (else                         prompt           last user message (``--include_system``); needs
``proxy_server_request.messages``)                          ``store_prompts_in_spend_logs: true``
``spend`` (else ``response_cost``)         cost_usd         USD, as LiteLLM priced the call
``prompt_tokens``                          input_tokens
``completion_tokens``                      output_tokens
``request_duration_ms`` / 1000 (else       latency_s
``endTime - startTime``)
``response.choices[0].message.content``    response         a ModelResponse object, or text
``--score`` path, e.g.                     success          user metadata rides in ``metadata`` (a JSON
``metadata.spend_logs_metadata.passed``                     object or its JSON string)
=========================================  ===============  ==================================================

Skipped (counted): ``status == "failure"`` (a failed call says nothing about the model's answer) and non-chat
calls (``call_type`` of embeddings, images, audio, moderation, rerank).
"""

from __future__ import annotations

from collections.abc import Iterator

from aco_bert.data.logs.base import LogFormat, LogRecord
from aco_bert.data.logs.fields import duration, json_records, parse_json_text
from aco_bert.data.schema import DataError

NON_CHAT_CALLS = ("embedding", "image", "transcription", "speech", "moderation", "rerank")


class LiteLLMSpendLogs(LogFormat):
    __doc__ = __doc__
    name = "litellm-spend"

    def records(self, path: str) -> Iterator[LogRecord]:
        for i, r in json_records(path):
            view = dict(r)
            for k in ("metadata", "messages", "response", "proxy_server_request"):
                if k in view:
                    view[k] = parse_json_text(view[k])
            status = str(view.get("status") or "").lower()
            call = str(view.get("call_type") or "").lower()
            skip = None
            if status == "failure":
                skip = "failed call (status failure)"
            elif any(c in call for c in NON_CHAT_CALLS):
                skip = f"not a chat/completion call (call_type {call})"
            messages = view.get("messages")
            psr = view.get("proxy_server_request")
            if (messages in (None, {}, [], "")) and isinstance(psr, dict):
                messages = psr.get("messages", psr.get("prompt"))
            model = view.get("model_group") or view.get("model")
            if "spend" in view and view["spend"] is not None:
                cost = view["spend"]
            else:
                cost = view.get("response_cost")
            ms = view.get("request_duration_ms")
            try:
                latency = float(ms) / 1000.0 if ms is not None else duration(view.get("startTime"),
                                                                              view.get("endTime"))
            except (TypeError, ValueError) as e:
                raise DataError(f"bad request time: {e}", file=path, row=i) from None
            yield LogRecord(row=i, view=view, messages=messages, model=model, response=view.get("response"),
                            cost_usd=cost, input_tokens=view.get("prompt_tokens"),
                            output_tokens=view.get("completion_tokens"), latency_s=latency, skip=skip)
