"""Langfuse exports: traces with their observations and scores (the UI's JSON/JSONL export, or
``GET /api/public/traces/{id}`` bodies), or bare observations (``GET /api/public/observations``).

Files: ``.json`` (a list, or an API page ``{"data": [...]}``) or ``.jsonl`` (one trace or observation per line).
One row per ``GENERATION`` observation (the model call); a trace contributes each of its generations.

==========================================  ===============  =================================================
source field (of the generation)            canonical        note
==========================================  ===============  =================================================
``model``                                   model
``input`` (else the trace's ``input``)      prompt           messages list, ``{messages: [...]}`` or text;
                                                             last user message (``--include_system``)
``costDetails.total`` (else                 cost_usd         USD
``calculatedTotalCost``, else the
trace's ``totalCost``)
``usageDetails.input`` (else                input_tokens
``usage.input``, ``usage.promptTokens``)
``usageDetails.output`` (else               output_tokens
``usage.output``, ``usage.completionTokens``)
``endTime - startTime``                     latency_s        ISO-8601 timestamps
``output`` (else the trace's ``output``)    response
``--score scores.<name>``                   success          the ``value`` of the score named <name>
                                                             (``stringValue`` "True"/"False" for booleans)
==========================================  ===============  =================================================

Score paths see the generation's fields over the trace's (the trace itself also under ``trace.``). ``scores``
holds the generation's own scores (``observationId`` = its id) and, for a trace with ONE generation, the
trace-level scores: a trace-level score over several generations does not say which call earned it, so it is
not copied onto each of them (score those observations, or export one generation per trace).

Skipped (counted): traces without a generation, non-generation observations (SPAN, EVENT, ...), and generations
with ``level == "ERROR"`` (a failed call).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aco_bert.data.logs.base import LogFormat, LogRecord
from aco_bert.data.logs.fields import duration, json_records
from aco_bert.data.schema import DataError


def _first(*vals: Any) -> Any:
    return next((v for v in vals if v is not None), None)


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


class LangfuseExport(LogFormat):
    __doc__ = __doc__
    name = "langfuse"

    def records(self, path: str) -> Iterator[LogRecord]:
        for i, r in json_records(path):
            if "observations" in r or "type" not in r:
                yield from self._trace(path, i, r)
            else:
                yield self._generation(path, i, r, None, list(r.get("scores") or []), "")

    def _trace(self, path: str, i: int, trace: dict[str, Any]) -> Iterator[LogRecord]:
        obs = trace.get("observations") or []
        if not isinstance(obs, list):
            raise DataError("trace observations is not a list", file=path, row=i)
        if any(isinstance(o, str) for o in obs):
            raise DataError("trace observations are ids, not objects: export the traces with their observations "
                            "(GET /api/public/traces/{id}) or export the observations", file=path, row=i)
        gens = [(k, o) for k, o in enumerate(obs) if isinstance(o, dict) and o.get("type") == "GENERATION"]
        if not gens:
            yield LogRecord(row=i, view=trace, skip="trace without a GENERATION observation")
            return
        all_scores = [s for s in (trace.get("scores") or []) if isinstance(s, dict)]
        for k, g in gens:
            own = [s for s in all_scores if s.get("observationId") == g.get("id")] + list(g.get("scores") or [])
            trace_level = [s for s in all_scores if not s.get("observationId")]
            hint = ""
            if len(gens) == 1:
                own = trace_level + own
            elif trace_level:
                hint = (f" (this trace has {len(gens)} generations: its trace-level scores do not say which call "
                        "earned them, so they apply only to single-generation traces)")
            row = i if len(gens) == 1 else f"{i} observations[{k}]"
            yield self._generation(path, row, g, trace, own, hint, single=len(gens) == 1)

    def _generation(self, path: str, row: int | str, g: dict[str, Any], trace: dict[str, Any] | None,
                    scores: list[Any], hint: str, single: bool = True) -> LogRecord:
        t = trace or {}
        view: dict[str, Any] = {**t, **g, "scores": scores}
        if trace is not None:
            view["trace"] = trace
        if g.get("type", "GENERATION") != "GENERATION":
            return LogRecord(row=row, view=view, skip=f"not a GENERATION observation (type {g.get('type')})")
        if str(g.get("level") or "").upper() == "ERROR":
            return LogRecord(row=row, view=view, skip="failed call (level ERROR)")
        ud, us, cd = g.get("usageDetails"), g.get("usage"), g.get("costDetails")
        try:
            latency = duration(g.get("startTime"), g.get("endTime"))
        except ValueError as e:
            raise DataError(f"bad observation time: {e}", file=path, row=row) from None
        return LogRecord(
            row=row, view=view, score_hint=hint,
            messages=_first(g.get("input"), t.get("input") if single else None),
            model=g.get("model"),
            response=_first(g.get("output"), t.get("output") if single else None),
            cost_usd=_first(_get(cd, "total"), g.get("calculatedTotalCost"), t.get("totalCost") if single else None),
            input_tokens=_first(_get(ud, "input"), _get(us, "input"), _get(us, "promptTokens")),
            output_tokens=_first(_get(ud, "output"), _get(us, "output"), _get(us, "completionTokens")),
            latency_s=latency,
        )
