"""`data import-logs` on REAL outcomes: a slice of RouterBench (responses, costs) and of BFCL (tokens, latency,
costs) is rendered as each tool's log format (LiteLLM spend logs, a Langfuse export, an OTLP JSON file with the
OTel GenAI attributes), imported with the verb, and must come back as the same prompt x model matrix."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from aco_bert.data import DataError, load_outcomes
from aco_bert.data.import_logs import ImportLogsConfig, import_logs, main
from aco_bert.data.logs import LOG_FORMATS
from aco_bert.data.logs.fields import MISSING, lookup, prompt_hash, prompt_text

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
SYSTEM = "You are a careful assistant."


def _slice(table, models: list[str], n_prompts: int = 30) -> pd.DataFrame:
    """n_prompts x models real outcomes: every prompt answered by all models, prompt texts distinct."""
    df, n_models = table.df, len(models)
    df = df[df["model"].isin(models)]
    full = df.groupby("prompt_id")["model"].nunique()
    first = df.drop_duplicates("prompt_id").set_index("prompt_id")
    pids = [p for p in full.index[full == n_models] if first.loc[p, "prompt"].strip()]
    texts = first.loc[pids, "prompt"].map(lambda t: " ".join(t.split()))
    pids = sorted(texts.drop_duplicates(keep=False).index)[:n_prompts]
    return df[df["prompt_id"].isin(pids)].reset_index(drop=True)


@pytest.fixture(scope="module")
def slices(data_dir) -> dict[str, pd.DataFrame]:
    rb = load_outcomes("routerbench", data_dir=data_dir)
    # BFCL: two models with real tokens, latency and cost, one (Nexusflow) with latency only: NaN must stay NaN
    bfcl_models = ["claude-3-haiku-20240307", "gpt-3.5-turbo-0125", "Nexusflow-Raven-v2"]
    return {"routerbench": _slice(rb, rb.models[:3]), "bfcl": _slice(load_outcomes("bfcl", data_dir=data_dir),
                                                                      bfcl_models)}


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _times(i: int, latency) -> tuple[datetime, datetime]:
    start = T0 + timedelta(seconds=10 * i)
    return start, start + timedelta(seconds=_num(latency) or 0.0)


def _chat(prompt: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def litellm_rows(df: pd.DataFrame) -> list[dict]:
    """LiteLLM_SpendLogs rows (the proxy's schema.prisma columns), as GET /spend/logs returns them."""
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        start, end = _times(i, r.latency_s)
        row = {"request_id": f"chatcmpl-{i}", "call_type": "acompletion", "api_key": "88dc28d0f030c5",
               "startTime": start.isoformat(), "endTime": end.isoformat(), "model": f"provider/{r.model}",
               "model_group": r.model, "custom_llm_provider": "openai", "user": "", "status": "success",
               "messages": _chat(r.prompt), "cache_hit": "False",
               "metadata": {"user_api_key_team_id": "t1", "spend_logs_metadata": {"passed": float(r.success)}}}
        if _num(r.cost_usd) is not None:
            row["spend"] = float(r.cost_usd)
        if _num(r.input_tokens) is not None:
            row["prompt_tokens"], row["completion_tokens"] = int(r.input_tokens), int(r.output_tokens)
            row["total_tokens"] = int(r.input_tokens) + int(r.output_tokens)
        if isinstance(r.response, str):
            row["response"] = {"id": f"chatcmpl-{i}", "object": "chat.completion", "model": r.model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": r.response}}]}
        rows.append(row)
    rows.append({"request_id": "emb-1", "call_type": "aembedding", "model": "text-embedding-3-small", "spend": 1e-6,
                 "startTime": T0.isoformat(), "endTime": T0.isoformat(), "messages": {}, "metadata": {}})
    rows.append({**rows[0], "request_id": "failed-1", "status": "failure", "spend": 0.0})
    return rows


def langfuse_traces(df: pd.DataFrame, score=lambda s: float(s)) -> list[dict]:
    """Langfuse traces with full observations (a GENERATION and a SPAN) and a trace-level score `correctness`."""
    traces = []
    for i, r in enumerate(df.itertuples(index=False)):
        start, end = _times(i, r.latency_s)
        tid = f"trace-{i}"
        gen = {"id": f"obs-{i}", "traceId": tid, "type": "GENERATION", "name": "chat-completion",
               "startTime": start.isoformat(), "endTime": end.isoformat(), "model": r.model,
               "modelParameters": {"temperature": 0}, "input": _chat(r.prompt), "level": "DEFAULT",
               "output": {"role": "assistant", "content": r.response} if isinstance(r.response, str) else None}
        if _num(r.input_tokens) is not None:
            n_in, n_out = int(r.input_tokens), int(r.output_tokens)
            gen["usageDetails"] = {"input": n_in, "output": n_out, "total": n_in + n_out}
            gen["usage"] = {"input": n_in, "output": n_out, "total": n_in + n_out, "unit": "TOKENS"}
        if _num(r.cost_usd) is not None:
            gen["costDetails"] = {"total": float(r.cost_usd)}
            gen["calculatedTotalCost"] = float(r.cost_usd)
        span = {"id": f"span-{i}", "traceId": tid, "type": "SPAN", "name": "retrieve",
                "startTime": start.isoformat(), "endTime": start.isoformat()}
        traces.append({"id": tid, "timestamp": start.isoformat(), "name": "qa", "input": {"question": r.prompt},
                       "observations": [span, gen], "tags": ["prod"],
                       "scores": [{"id": f"s-{i}", "traceId": tid, "name": "correctness", "value": score(r.success),
                                   "dataType": "NUMERIC", "source": "EVAL", "observationId": None}]})
    return traces


def _attr(key: str, v) -> dict:
    if isinstance(v, bool):
        return {"key": key, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": key, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": key, "value": {"doubleValue": v}}
    return {"key": key, "value": {"stringValue": v}}


def otlp_export(df: pd.DataFrame) -> dict:
    """An OTLP JSON ExportTraceServiceRequest with one GenAI client span per call (semconv attribute names)."""
    spans = [{"traceId": "0" * 31 + "1", "spanId": "f" * 16, "name": "GET /health", "kind": 2,
              "startTimeUnixNano": "1748736000000000000", "endTimeUnixNano": "1748736000100000000",
              "attributes": [_attr("http.request.method", "GET")]}]
    for i, r in enumerate(df.itertuples(index=False)):
        start = 1748736000 * 10**9 + i * 10**10
        end = start + round((_num(r.latency_s) or 0.0) * 1e9)
        attrs = [_attr("gen_ai.operation.name", "chat"), _attr("gen_ai.provider.name", "openai"),
                 _attr("gen_ai.request.model", r.model), _attr("gen_ai.response.model", r.model + "-2025"),
                 _attr("gen_ai.system_instructions", json.dumps([{"type": "text", "content": SYSTEM}])),
                 _attr("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                     {"type": "text", "content": r.prompt}]}])),
                 _attr("aco.eval.passed", bool(r.success >= 0.5))]
        if isinstance(r.response, str):
            attrs.append(_attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "finish_reason": "stop",
                                                                       "parts": [{"type": "text",
                                                                                  "content": r.response}]}])))
        if _num(r.input_tokens) is not None:
            attrs += [_attr("gen_ai.usage.input_tokens", int(r.input_tokens)),
                      _attr("gen_ai.usage.output_tokens", int(r.output_tokens))]
        if _num(r.cost_usd) is not None:
            attrs.append(_attr("gen_ai.usage.cost", float(r.cost_usd)))
        spans.append({"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"chat {r.model}", "kind": 3,
                      "startTimeUnixNano": str(start), "endTimeUnixNano": str(end), "attributes": attrs,
                      "status": {}})
    return {"resourceSpans": [{"resource": {"attributes": [_attr("service.name", "qa-bot")]},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai"},
                                               "spans": spans}]}]}


RENDER = {  # format -> (file name, render(df) -> JSON document, score path)
    "litellm-spend": ("spend_logs.json", lambda df: {"data": litellm_rows(df), "total": len(df) + 2},
                      "metadata.spend_logs_metadata.passed"),
    "langfuse": ("langfuse_traces.json", langfuse_traces, "scores.correctness"),
    "otel-genai": ("otlp_traces.json", otlp_export, "aco.eval.passed"),
}


def _write(tmp_path, fmt: str, df: pd.DataFrame, render=None) -> str:
    name, default, _ = RENDER[fmt]
    p = tmp_path / name
    p.write_text(json.dumps((render or default)(df)))
    return str(p)


def _import(capsys, fmt, inputs, out, *extra) -> str:
    rc = main(["--format", fmt, "--score", RENDER[fmt][2], *inputs, "--out", str(out), *extra])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return cap.out


@pytest.mark.parametrize("source", ["routerbench", "bfcl"])
@pytest.mark.parametrize("fmt", sorted(RENDER))
def test_round_trip_real_outcomes(slices, tmp_path, capsys, fmt, source):
    src = slices[source]
    out = tmp_path / "table.jsonl"
    printed = _import(capsys, fmt, [_write(tmp_path, fmt, src)], out)
    n = len(src)
    extra = {"litellm-spend": 2, "langfuse": 0, "otel-genai": 1}[fmt]  # an embedding + a failed call / an HTTP span
    assert f"{n + extra} records read, {n} kept, {extra} skipped" in printed
    assert "30 prompts answered by >= 2 models" in printed
    got = load_outcomes(str(out)).matrix()
    want = load_outcomes_matrix(src)
    assert sorted(got.models) == sorted(want.models)
    assert set(got.prompt_ids) == {prompt_hash(p) for p in want.prompts}  # one prompt per text, 3 outcomes each
    gi = [got.prompt_ids.index(prompt_hash(p)) for p in want.prompts]
    gm = [got.models.index(m) for m in want.models]
    assert [got.prompts[i] for i in gi] == want.prompts  # the last user message, not the system prompt
    np.testing.assert_array_equal(got.success[np.ix_(gi, gm)], want.success)
    np.testing.assert_allclose(got.cost[np.ix_(gi, gm)], want.cost, rtol=1e-12, equal_nan=True)
    for col in ("input_tokens", "output_tokens"):
        np.testing.assert_array_equal(got.traces[col][np.ix_(gi, gm)], want.traces[col])
    if source == "bfcl":  # real latencies (microsecond ISO timestamps / nanosecond OTLP times)
        lat = want.traces["latency_s"]
        assert np.isfinite(lat).all() and np.isfinite(src["input_tokens"]).sum() == 60
        np.testing.assert_allclose(got.traces["latency_s"][np.ix_(gi, gm)], np.nan_to_num(lat), atol=2e-6)
    else:  # real model answers come back as the response column
        assert want.responses is not None
        assert (got.responses[np.ix_(gi, gm)] == want.responses).all()


def load_outcomes_matrix(src: pd.DataFrame):
    from aco_bert.data.schema import OutcomeTable

    return OutcomeTable(src.reset_index(drop=True), "src").matrix()


def test_evaluate_runs_on_imported_table(slices, tmp_path, capsys):
    from aco_bert.cli import main as cli
    from aco_bert.evaluate import main as evaluate

    out = tmp_path / "table.jsonl"
    log = _write(tmp_path, "otel-genai", slices["routerbench"])
    assert cli(["data", "import-logs", "--format", "otel-genai", "--score", "aco.eval.passed", log,
                "--out", str(out)]) == 0
    capsys.readouterr()
    assert evaluate(["--dataset", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "30 prompts, 3 models" in printed and "Policy" in printed


def test_score_threshold_and_soft_labels(slices, tmp_path):
    src = slices["routerbench"]
    five = lambda s: 1.0 + 4.0 * float(s)
    p = _write(tmp_path, "langfuse", src, lambda df: langfuse_traces(df, five))
    cfg = ImportLogsConfig(format="langfuse", score="scores.correctness", out=str(tmp_path / "t.jsonl"), inputs=[p])
    with pytest.raises(DataError, match=r"not in \[0, 1\].*--score_threshold") as e:
        import_logs(cfg)
    assert e.value.file == p and e.value.row == 0
    cfg.score_threshold = 3.0
    df, _ = import_logs(cfg)
    assert df["success"].tolist() == [1.0 if s >= 0.5 else 0.0 for s in src["success"]]
    # without a threshold a score in [0, 1] is kept as a soft label
    soft = _write(tmp_path, "langfuse", src, lambda d: langfuse_traces(d, lambda s: 0.25 + 0.5 * float(s)))
    df, _ = import_logs(ImportLogsConfig(format="langfuse", score="scores.correctness", out=cfg.out, inputs=[soft]))
    assert sorted(set(df["success"])) == [0.25, 0.75]


def test_bad_records_name_file_and_row(slices, tmp_path, capsys):
    src = slices["bfcl"]
    rows = litellm_rows(src)
    del rows[4]["metadata"]["spend_logs_metadata"]
    rows[7]["metadata"]["spend_logs_metadata"]["passed"] = 1.7
    rows[9]["messages"] = {}
    p = tmp_path / "spend.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ImportLogsConfig(format="litellm-spend", score="metadata.spend_logs_metadata.passed",
                           out=str(tmp_path / "t.jsonl"), inputs=[str(p)])
    with pytest.raises(DataError, match="no score at 'metadata.spend_logs_metadata.passed'") as e:
        import_logs(cfg)
    assert (e.value.file, e.value.row) == (str(p), 4)
    rows[4]["metadata"]["spend_logs_metadata"] = {"passed": 1}
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"1\.7 is not in \[0, 1\]") as e:
        import_logs(cfg)
    assert (e.value.file, e.value.row) == (str(p), 7)
    rows[7]["metadata"]["spend_logs_metadata"]["passed"] = True
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="no prompt") as e:
        import_logs(cfg)
    assert (e.value.file, e.value.row) == (str(p), 9)
    # the verb: one line on stderr naming file and row, exit 2, nothing written
    rc = main(["--format", "litellm-spend", "--score", cfg.score, str(p), "--out", cfg.out])
    err = capsys.readouterr().err
    assert rc == 2 and f"file {p}, row 9: no prompt" in err and not (tmp_path / "t.jsonl").exists()
    # --on_missing skip counts it instead
    cfg.on_missing = "skip"
    df, lines = import_logs(cfg)
    assert len(df) == len(src) - 1 and "  skipped 1: no prompt (no user message)" in lines


def test_otel_row_names_span_and_empty_table_refused(slices, tmp_path, capsys):
    src = slices["routerbench"]
    doc = otlp_export(src)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[3]["attributes"] = [a for a in spans[3]["attributes"] if a["key"] != "aco.eval.passed"]
    p = tmp_path / "otlp.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError) as e:
        import_logs(ImportLogsConfig(format="otel-genai", score="aco.eval.passed", out=str(tmp_path / "o.jsonl"),
                                     inputs=[str(p)]))
    assert e.value.row == "resourceSpans[0].scopeSpans[0].spans[3]"
    # a file with no GenAI span: skipped by reason, and no empty table is written
    q = tmp_path / "http_only.json"
    q.write_text(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans[:1]}]}]}))
    rc = main(["--format", "otel-genai", "--score", "aco.eval.passed", str(q), "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "no outcome rows" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


def test_repeats_merge_and_user_prompt_id(slices, tmp_path):
    src = slices["routerbench"].iloc[:6]
    rows = litellm_rows(src)[:6]
    again = {**rows[0], "request_id": "again", "metadata": {"spend_logs_metadata": {
        "passed": 1.0 - rows[0]["metadata"]["spend_logs_metadata"]["passed"], "task": "T0"}}}
    for r in rows:
        r["metadata"]["spend_logs_metadata"]["task"] = f"T{r['request_id']}"
    p = tmp_path / "spend.json"
    p.write_text(json.dumps(rows + [again]))
    cfg = ImportLogsConfig(format="litellm-spend", score="metadata.spend_logs_metadata.passed",
                           out=str(tmp_path / "t.jsonl"), inputs=[str(p)])
    df, lines = import_logs(cfg)
    assert len(df) == 6 and any("1 repeated prompt x model calls merged" in x for x in lines)
    assert df["success"].iloc[0] == 0.5  # a pass and a fail of one prompt x model: a soft label
    cfg.prompt_id = "metadata.spend_logs_metadata.task"
    df, _ = import_logs(cfg)
    assert df["prompt_id"].nunique() == 7 and "T0" in set(df["prompt_id"])


def test_field_paths_and_registry():
    assert sorted(LOG_FORMATS) == ["langfuse", "litellm-spend", "otel-genai"]
    for cls in LOG_FORMATS.values():
        assert "canonical" in (cls.__doc__ or "")  # the mapping table is the docstring
    rec = {"aco.eval.passed": True, "metadata": json.dumps({"a": {"b": 0.5}}),
           "scores": [{"name": "x", "value": None, "stringValue": "True"}, {"name": "y", "value": 0.2}]}
    assert lookup(rec, "aco.eval.passed") is True and lookup(rec, "metadata.a.b") == 0.5
    assert lookup(rec, "scores.x") == "True" and lookup(rec, "scores.y") == 0.2
    assert lookup(rec, "scores.z") is MISSING and lookup(rec, "metadata.c") is MISSING
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "2+2?"}]}]
    assert prompt_text(chat) == "2+2?" and prompt_text(chat, include_system=True) == "Be brief.\n\n2+2?"
    assert prompt_hash("What  is\n2+2?") == prompt_hash(" What is 2+2? ") != prompt_hash("What is 2+3?")
