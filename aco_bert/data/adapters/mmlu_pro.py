"""MMLU-Pro 5-shot chain-of-thought outputs of 12 instruct/chat models: pass/fail per question per model.

Source: GitHub ``TIGER-AI-Lab/MMLU-Pro`` ``eval_results/model_outputs_<model>_5shots.zip`` at :data:`COMMIT` (local
copy ``<data_dir>/mmlu-pro``; online :data:`RAW_BASE`). Each zip holds one JSON list of records ``{question_id,
question, options, answer, category, src, pred, model_outputs | generated_text, ...}``, read in memory (nothing is
extracted to disk). Entries that are not records (DeepSeek-Coder-V2 has 43 bare strings: the keys of a summary dict
appended to the list) are skipped and counted; a record with a missing or bad field is a :class:`DataError` naming
the zip and the 0-based list index.

* success = ``pred == answer``. ``pred`` null (no answer letter could be extracted) is an outcome 0: the model ran
  and gave no valid answer. (The authors' own scorer replaces a null pred with a seeded random guess; we do not: a
  router must learn that the model fails there.) Null preds are counted per model in ``extras["no_answer"]``.
* prompt = ``Question:\\n<question>\\nOptions:\\nA. ...`` (one lettered line per option), i.e. what the model saw
  for the question itself, minus the 5 worked examples of its category (the same for every question of a category,
  so no routing signal) and the constant ``Answer: Let's think step by step.`` cue. prompt_id = question_id,
  category = MMLU-Pro category; ``src`` (original source dataset) is prompt meta.
* Questions whose text, options, answer key or category differ between the loaded files (MMLU-Pro revised 48 of
  them between runs: 31 answer keys, 17 texts/options) are dropped for every model and counted: models graded
  against different keys are not comparable. Their ids are in ``extras["revised_question_ids"]``.
* A question absent from a model's file (DeepSeek-Coder-V2 has 10,351 records, the Gemini files 12,012 / 12,020) is
  a missing cell, never a failure (``extras["absent"]`` per model).

Cost: none is published, so it is ESTIMATED as tokens x list price (``extras["cost_derivation"]``):

* input tokens = ceil(chars of the 5-shot CoT prompt / 4). The prompt is the header line (~190 characters), 5
  worked examples of the question's category, then the question with its options and the answer cue. The zips carry
  no examples (their ``cot_content`` is empty: the examples are MMLU-Pro's validation split), so by default each
  example is approximated as the category's median formatted question in this data plus a worked answer of
  :data:`SHOT_ANSWER_CHARS` (350) characters: the 70 validation answers (as reprinted in NVIDIA NeMo-Skills'
  ``nemo_skills/prompt/few_shot_examples/mmlu_pro.py``) are mostly 150-600 characters. Pass ``shots=`` (the
  validation records as JSON/JSONL, or ``hf:TIGER-Lab/MMLU-Pro``) to count the real examples instead. Not modelled:
  the local script drops examples when a prompt exceeds its context window (long history/law questions).
* output tokens = ceil(chars of the model's output text / 4). chars/4 is the usual English rule of thumb and costs
  nothing; the packaged MiniLM WordPiece tokenizer gives 3.1 chars/token on Llama-3.1-8B's outputs but takes ~4 s
  per model and is not these models' tokenizer either.
  ``input_tokens``/``output_tokens`` hold these estimates.
* prices (USD per 1M tokens, input / output), :data:`PRICE_KEYS` and :data:`FALLBACK_PRICES`. Rule: a model the
  authors ran through its vendor's API gets that vendor's list price; an open-weights model (run locally with vLLM)
  gets Together AI's serverless price for its parameter count, from LiteLLM 1.110.2's ``together-ai-<size>`` keys,
  so every open model is priced by one provider and one rule (MoE models by total parameters):

  ==============================  ==================================  ===============  ============================
  model                           price key                           in / out         why
  ==============================  ==================================  ===============  ============================
  DeepSeek-Coder-V2               LiteLLM ``deepseek/deepseek-coder`` 0.14 / 0.28      vendor API (served Coder-V2)
  gemini-1.5-pro-002              fallback (not in LiteLLM 1.110.2)   1.25 / 5.00      Google list price, <=128k
  gemini-1.5-flash-002            fallback (not in LiteLLM 1.110.2)   0.075 / 0.30     Google list price, <=128k
  Meta-Llama-3_1-70B-Instruct     LiteLLM ``together-ai-41.1b-80b``   0.90 / 0.90      70B
  Qwen1.5-72B-Chat                LiteLLM ``together-ai-41.1b-80b``   0.90 / 0.90      72B
  Mixtral-8x7B-Instruct-v0.1      LiteLLM ``together-ai-41.1b-80b``   0.90 / 0.90      46.7B total (MoE)
  c4ai-command-r-v01              LiteLLM ``together-ai-21.1b-41b``   0.80 / 0.80      35B
  Meta-Llama-3_1-8B-Instruct      LiteLLM ``together-ai-4.1b-8b``     0.20 / 0.20      8.0B
  Qwen1.5-7B-Chat                 LiteLLM ``together-ai-4.1b-8b``     0.20 / 0.20      7.7B
  Mistral-7B-Instruct-v0.2        LiteLLM ``together-ai-4.1b-8b``     0.20 / 0.20      7.2B
  Yi-6b-Chat                      LiteLLM ``together-ai-4.1b-8b``     0.20 / 0.20      6.1B
  Phi-3-mini-4k-instruct          LiteLLM ``together-ai-up-to-4b``    0.10 / 0.10      3.8B
  ==============================  ==================================  ===============  ============================

  The Gemini prices are Google's Gemini API list prices for prompts up to 128k tokens from 2024-10-01 (Google
  Developers Blog, 2024-09-24, "Updated production-ready Gemini models, reduced 1.5 Pro pricing"; ai.google.dev
  pricing page), when the ``-002`` models were current. A model in neither map gets NaN cost, counted in
  ``extras["cost_unknown"]``.
"""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from aco_bert.data.prices import Price, PriceTable
from aco_bert.data.schema import DataError, OutcomeTable, rows_to_table

COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
RAW_BASE = f"https://raw.githubusercontent.com/TIGER-AI-Lab/MMLU-Pro/{COMMIT}/eval_results"
HF_DATASET = "TIGER-Lab/MMLU-Pro"
MODELS = (
    "DeepSeek-Coder-V2", "Meta-Llama-3_1-70B-Instruct", "Meta-Llama-3_1-8B-Instruct", "Mistral-7B-Instruct-v0.2",
    "Mixtral-8x7B-Instruct-v0.1", "Phi-3-mini-4k-instruct", "Qwen1.5-72B-Chat", "Qwen1.5-7B-Chat", "Yi-6b-Chat",
    "c4ai-command-r-v01", "gemini-1.5-flash-002", "gemini-1.5-pro-002",
)
LETTERS = "ABCDEFGHIJKLMNOP"
CHARS_PER_TOKEN = 4.0
N_SHOTS = 5
SHOT_ANSWER_CHARS = 350  # approximate length of one worked validation answer (see the module docstring)
HEADER = ('The following are multiple choice questions (with answers) about {subject}. Think step by step and then '
          'finish your answer with "the answer is (X)" where X is the correct letter choice.\n')
ANSWER_CUE = "Answer: Let's think step by step."

# model -> LiteLLM 1.110.2 key (see the table in the module docstring); None = use FALLBACK_PRICES.
PRICE_KEYS: dict[str, str | None] = {
    "DeepSeek-Coder-V2": "deepseek/deepseek-coder",
    "gemini-1.5-pro-002": None,
    "gemini-1.5-flash-002": None,
    "Meta-Llama-3_1-70B-Instruct": "together-ai-41.1b-80b",
    "Qwen1.5-72B-Chat": "together-ai-41.1b-80b",
    "Mixtral-8x7B-Instruct-v0.1": "together-ai-41.1b-80b",
    "c4ai-command-r-v01": "together-ai-21.1b-41b",
    "Meta-Llama-3_1-8B-Instruct": "together-ai-4.1b-8b",
    "Qwen1.5-7B-Chat": "together-ai-4.1b-8b",
    "Mistral-7B-Instruct-v0.2": "together-ai-4.1b-8b",
    "Yi-6b-Chat": "together-ai-4.1b-8b",
    "Phi-3-mini-4k-instruct": "together-ai-up-to-4b",
}
# model -> (USD per 1M input, per 1M output, source) for models LiteLLM 1.110.2 no longer lists.
FALLBACK_PRICES: dict[str, tuple[float, float, str]] = {
    "gemini-1.5-pro-002": (1.25, 5.00, "Google Gemini API list price, prompts <=128k tokens, from 2024-10-01"),
    "gemini-1.5-flash-002": (0.075, 0.30, "Google Gemini API list price, prompts <=128k tokens, from 2024-10-01"),
}
REQUIRED = ("question_id", "question", "options", "answer", "category", "pred")
OUTPUT_FIELDS = ("model_outputs", "generated_text")


def zip_name(model: str) -> str:
    return f"model_outputs_{model}_5shots.zip"


def format_question(question: str, options: list[str]) -> str:
    """The routed text: the question and its lettered options, as the MMLU-Pro prompt shows them."""
    return f"Question:\n{question}\nOptions:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def _open_bytes(path_or_url: str) -> bytes:
    if path_or_url.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(path_or_url, timeout=120) as r:  # noqa: S310 - pinned public URL
            return r.read()
    with open(path_or_url, "rb") as f:
        return f.read()


def _options(v: Any, file: str, row: int) -> list[str]:
    if isinstance(v, str):  # some MMLU-Pro dumps store the list's str(): parse it as a literal, never eval
        try:
            v = ast.literal_eval(v)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise DataError(f"options is not a list literal: {e}", file=file, row=row) from e
    if not isinstance(v, list) or not v or not all(isinstance(o, str) for o in v):
        raise DataError("options is not a non-empty list of strings", file=file, row=row)
    return [o for o in v if o != "N/A"]  # the MMLU-Pro scripts drop N/A padding before prompting


def read_outputs(path_or_url: str | Path) -> tuple[list[dict[str, Any]], int]:
    """(checked records, number of non-record entries skipped) from one ``model_outputs_*.zip``.

    Each record keeps ``question_id`` (str), ``question``, ``options`` (list), ``answer``, ``category``, ``src``,
    ``pred`` (letter or None) and ``output`` (the model's text). Errors name the zip and the 0-based list index.
    """
    p = str(path_or_url)
    try:
        zf = zipfile.ZipFile(io.BytesIO(_open_bytes(p)))
    except zipfile.BadZipFile as e:
        raise DataError(f"not a zip file: {e}", file=p) from e
    members = [n for n in zf.namelist() if n.endswith(".json") and not n.startswith("__MACOSX")]
    if len(members) != 1:
        raise DataError(f"expected exactly one .json member, found {members}", file=p)
    try:
        data = json.loads(zf.read(members[0]).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"invalid JSON in {members[0]}: {e}", file=p) from e
    if not isinstance(data, list):
        raise DataError(f"{members[0]} holds a {type(data).__name__}, not a list of records", file=p)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    non_records = 0
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            non_records += 1
            continue
        for k in REQUIRED:
            if k not in r:
                raise DataError(f"missing field {k!r}", file=p, row=i)
        field = next((f for f in OUTPUT_FIELDS if f in r), None)
        if field is None:
            raise DataError(f"no output text field (one of {OUTPUT_FIELDS})", file=p, row=i)
        qid = r["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid).strip() == "":
            raise DataError(f"question_id {qid!r} is not an id", file=p, row=i)
        qid = str(qid)
        if qid in seen:
            raise DataError(f"duplicate question_id {qid!r}", file=p, row=i)
        seen.add(qid)
        q = r["question"]
        if not isinstance(q, str) or not q.strip():
            raise DataError("empty or non-string question", file=p, row=i)
        opts = _options(r["options"], p, i)
        ans = r["answer"]
        if not isinstance(ans, str) or len(ans) != 1 or ans not in LETTERS[: len(opts)]:
            raise DataError(f"answer {ans!r} is not one of the {len(opts)} option letters", file=p, row=i)
        pred = r["pred"]
        if pred is not None and not isinstance(pred, str):
            raise DataError(f"pred {pred!r} is not a letter or null", file=p, row=i)
        text = r[field]
        if text is not None and not isinstance(text, str):
            raise DataError(f"{field} is a {type(text).__name__}, not text", file=p, row=i)
        if not isinstance(r["category"], str) or not r["category"].strip():
            raise DataError("empty or non-string category", file=p, row=i)
        out.append({"question_id": qid, "question": q, "options": opts, "answer": ans, "category": r["category"],
                    "src": r.get("src"), "pred": pred, "output": text or ""})
    return out, non_records


def read_shots(source: str | Path) -> list[dict[str, Any]]:
    """MMLU-Pro validation records (``question, options, cot_content, category``): JSON list, JSONL or ``hf:<name>``."""
    s = str(source)
    if s.startswith("hf:"):
        import datasets

        return [dict(r) for r in datasets.load_dataset(s[3:], split="validation")]
    text = _open_bytes(s).decode("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        from aco_bert.data.io import iter_jsonl

        data = [r for _, r in iter_jsonl(text.split("\n"), s)]
    if not isinstance(data, list):
        raise DataError("expected a list of validation records", file=s)
    for i, r in enumerate(data):
        if not isinstance(r, dict) or any(k not in r for k in ("question", "options", "cot_content", "category")):
            raise DataError("validation record needs question, options, cot_content, category", file=s, row=i)
    return data


def shot_chars(questions: pd.DataFrame, shots: list[dict[str, Any]] | None, k: int = N_SHOTS) -> dict[str, float]:
    """Category -> characters of its k worked examples in the 5-shot prompt (exact with ``shots``, else estimated)."""
    if shots is not None:
        per: dict[str, list[int]] = {}
        for i, r in enumerate(shots):
            opts = _options(r["options"], "<shots>", i)
            cot = str(r["cot_content"]).replace("A: Let's think step by step.", ANSWER_CUE)
            per.setdefault(r["category"], []).append(len(format_question(r["question"], opts)) + 1 + len(cot) + 2)
        return {c: float(sum(v[:k])) for c, v in per.items()}
    lens = questions["text"].str.len()
    med = lens.groupby(questions["category"]).median()
    return {c: float(k * (m + 1 + len(ANSWER_CUE) + 1 + SHOT_ANSWER_CHARS + 2)) for c, m in med.items()}


def model_prices(models: Iterable[str], table: PriceTable | None) -> tuple[dict[str, Price], dict[str, str]]:
    """(model -> Price, model -> where the price came from) for the models that have one."""
    prices: dict[str, Price] = {}
    source: dict[str, str] = {}
    for m in models:
        key = PRICE_KEYS.get(m)
        if key is not None and table is not None:
            prices[m] = table.lookup(key)  # an explicit key missing from the table is an error, not a NaN
            source[m] = f"LiteLLM {key}"
        elif m in FALLBACK_PRICES:
            pin, pout, why = FALLBACK_PRICES[m]
            prices[m] = Price(pin / 1e6, pout / 1e6, f"fallback:{m}")
            source[m] = why
    return prices, source


def load_mmlu_pro(
    source: str | Path = RAW_BASE,
    *,
    models: Iterable[str] = MODELS,
    prices: PriceTable | str | Path | None = None,
    shots: str | Path | None = None,
    chars_per_token: float = CHARS_PER_TOKEN,
    with_responses: bool = False,
) -> OutcomeTable:
    """Canonical table of MMLU-Pro outcomes with estimated cost (see the module docstring).

    ``source``: a folder holding the zips or the raw URL base (:data:`RAW_BASE`); ``prices``: a :class:`PriceTable`
    or LiteLLM JSON path (default: the data dir's copy, else the pinned URL); ``shots``: MMLU-Pro validation records
    for an exact input-token count. ``with_responses=True`` puts every output text (the full CoT answer) in the
    canonical ``response`` column, the post-run trace the cascade's verifier reads (about 60 MB for all 12 models,
    so off by default); ``extras["responses"][model][prompt_id]`` (the same string objects) and
    ``extras["preds"][model][prompt_id]`` (the extracted letter) stay for older callers.
    """
    models = list(models)
    src = str(source).rstrip("/")
    per_model: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, int] = {}
    for m in models:
        loc = f"{src}/{zip_name(m)}"
        recs, non_records = read_outputs(loc)
        per_model[m] = recs
        if non_records:
            skipped[f"non-record entries in {zip_name(m)}"] = non_records

    # One version per question across files, else the question is dropped for everyone.
    version: dict[str, tuple] = {}
    revised: set[str] = set()
    for m, recs in per_model.items():
        for r in recs:
            key = (r["question"], tuple(r["options"]), r["answer"], r["category"])
            if version.setdefault(r["question_id"], key) != key:
                revised.add(r["question_id"])
    all_ids = [q for q in version if q not in revised]

    rows = [(m, r) for m, recs in per_model.items() for r in recs if r["question_id"] not in revised]
    n_rev_rows = sum(1 for recs in per_model.values() for r in recs if r["question_id"] in revised)
    if n_rev_rows:
        skipped["outcome rows of questions revised between runs (text, options or answer key differ)"] = n_rev_rows
    if not rows:
        raise DataError("no usable records", file=src)

    q = pd.DataFrame({"prompt_id": all_ids,
                      "text": [format_question(version[i][0], list(version[i][1])) for i in all_ids],
                      "category": [version[i][3] for i in all_ids]})
    shot_len = shot_chars(q, read_shots(shots) if shots is not None else None)
    unknown_cats = sorted(set(q["category"]) - set(shot_len))
    if unknown_cats:
        raise DataError(f"no validation examples for categories {unknown_cats}", file=str(shots))
    header = {c: len(HEADER.format(subject=c)) for c in shot_len}
    in_chars = (q["category"].map(header) + q["category"].map(shot_len) + q["text"].str.len() + 1 + len(ANSWER_CUE))
    in_tok = dict(zip(q["prompt_id"], np.ceil(in_chars.to_numpy(dtype=float) / chars_per_token)))
    text_of = dict(zip(q["prompt_id"], q["text"]))

    table = prices if isinstance(prices, PriceTable) else PriceTable.from_litellm(prices)
    price, price_source = model_prices(models, table)

    df = pd.DataFrame({
        "prompt_id": [r["question_id"] for _, r in rows],
        "model": [m for m, _ in rows],
        "success": [float(r["pred"] == r["answer"]) for _, r in rows],
        "output_chars": [len(r["output"]) for _, r in rows],
        "category": [r["category"] for _, r in rows],
    })
    df["prompt"] = df["prompt_id"].map(text_of)
    df["input_tokens"] = df["prompt_id"].map(in_tok)
    df["output_tokens"] = np.ceil(df.pop("output_chars").to_numpy(dtype=float) / chars_per_token)
    pin = df["model"].map({m: p.input for m, p in price.items()}).astype(float)
    pout = df["model"].map({m: p.output for m, p in price.items()}).astype(float)
    df["cost_usd"] = df["input_tokens"] * pin + df["output_tokens"] * pout
    df["source"] = "mmlu-pro"
    if with_responses:
        df["response"] = [r["output"] for _, r in rows]

    present = df.groupby("model", sort=False)["prompt_id"].size()
    src_of = {r["question_id"]: r["src"] for recs in per_model.values() for r in recs}
    extras: dict[str, Any] = {
        "prompt_meta": {"src": {i: src_of.get(i) for i in all_ids}},
        "no_answer": {m: sum(1 for r in recs if r["pred"] is None and r["question_id"] not in revised)
                      for m, recs in per_model.items()},
        "absent": {m: len(all_ids) - int(present.get(m, 0)) for m in models},
        "revised_question_ids": sorted(revised, key=lambda s: (len(s), s)),
        "cost_unknown": {m: int(present.get(m, 0)) for m in models if m not in price},
        "cost_unknown_reason": {m: "no price" for m in models if m not in price},
        "prices_per_1m": {m: [p.input_per_1m, p.output_per_1m] for m, p in price.items()},
        "price_source": price_source,
        "cost_derivation": {
            "estimated": True,
            "chars_per_token": float(chars_per_token),
            "input": (f"{N_SHOTS}-shot CoT prompt: header + {N_SHOTS} examples of the category "
                      + ("(counted from the given validation records)" if shots is not None else
                         f"(approximated: category median question + {SHOT_ANSWER_CHARS}-char answer each)")
                      + " + the question, options and answer cue"),
            "output": "the model's output text",
            "formula": "ceil(chars/chars_per_token) tokens x USD per token (input and output)",
        },
    }
    if with_responses:
        resp: dict[str, dict[str, str]] = {}
        for m, recs in per_model.items():
            resp[m] = {r["question_id"]: r["output"] for r in recs if r["question_id"] not in revised}
        extras["responses"] = resp
        extras["preds"] = {m: {r["question_id"]: r["pred"] for r in recs if r["question_id"] not in revised}
                           for m, recs in per_model.items()}
    return rows_to_table(df, file=src, name="mmlu-pro", skipped=skipped, extras=extras)
