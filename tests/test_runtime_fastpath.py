"""The runtime's fast paths give exactly the numbers of the straightforward code they replace.

- tokenisation: :func:`aco_bert.model.tokenization.encode_truncated` (head/tail windows, full count without tokenising
  the whole prompt) == the Rust tokenizer on the whole text + :func:`truncate_ids`, ids and full token count, on
  real texts of every dataset, crafted and random texts, several max_length / strategies / tail sizes;
- features: :func:`aco_bert.signals.handcrafted.featurize` == the previous implementation (kept below as the reference),
  bit for bit;
- calibration: the all-tiers-at-once interpolation == ``np.interp`` tier by tier, bit for bit;
- decision layer: floors from the feature matrix == floors from :func:`detect_domains`;
- trees: :class:`aco_bert.decision.trees.TreeEnsemble` == its previous implementation, chunked == whole; the
  cost model's all-tiers-at-once expression == tier by tier.
"""

from __future__ import annotations

import functools
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aco_bert.signals import handcrafted as F
from aco_bert.decision.calibration import IsotonicCalibrator
from aco_bert.data.schema import STEP_TYPES
from aco_bert.model.tokenization import (
    fast_path,
    encode_ids,
    encode_truncated,
    load_tokenizer,
    truncate_ids,
)

LENGTHS = (4, 16, 64, 256, 512)
CUTS = (("head_tail", None), ("head", None), ("head_tail", 0), ("head_tail", 7), ("head_tail", 10_000))


@pytest.fixture(scope="module")
def tok():
    return _minilm()


@pytest.fixture(scope="module")
def real_texts(data_dir) -> list[str]:
    """Every SWE-bench Verified issue text (often thousands of tokens) and a few hundred short prompts."""
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        out = [json.loads(line)["problem_statement"] for line in f if line.strip()]
    with open(data_dir / "bfcl-v2" / "questions.jsonl") as f:
        out += [line[:6000] for _, line in zip(range(200), f)]
    with open(data_dir / "dcrouter" / "default_query_test.jsonl") as f:
        out += [json.loads(line).get("query", "") for _, line in zip(range(200), f)]
    return [t for t in out if isinstance(t, str)]


def _reference(tok, texts, max_length, strategy, tail):
    encs = tok.encode_batch(list(texts), add_special_tokens=True)
    return [truncate_ids(e.ids, e.special_tokens_mask, max_length, strategy, tail) for e in encs], \
        [len(e.ids) for e in encs]


def _assert_same(tok, texts, lengths=LENGTHS, cuts=CUTS):
    for max_length in lengths:
        for strategy, tail in cuts:
            want_ids, want_n = _reference(tok, texts, max_length, strategy, tail)
            got_ids, got_n = encode_truncated(tok, texts, max_length, strategy, tail)
            for i, t in enumerate(texts):
                assert got_n[i] == want_n[i], (max_length, strategy, tail, t[:200])
                assert got_ids[i] == want_ids[i], (max_length, strategy, tail, t[:200])


# --- tokenisation --------------------------------------------------------------------------------------------


def test_fast_path_is_used_for_the_minilm_tokenizer(tok):
    assert fast_path(tok) is not None


def test_truncated_ids_and_full_count_equal_full_tokenisation_on_real_texts(tok, real_texts):
    long = sum(len(tok.encode(t).ids) > 512 for t in real_texts[:500])
    assert long > 50, "needs many prompts longer than the largest max_length"
    assert sum(not t.isascii() for t in real_texts) > 100, "needs many non-ASCII prompts"
    _assert_same(tok, real_texts)


CRAFTED = [
    "", " ", "\n\t \r\n", "a", "[CLS]", "fix [SEP] then [MASK] it", "[sep] lower-case is plain text", "[UNK]" * 40,
    "x" * 5000, "ab" * 3000 + " tail", " ".join(["y" * 101] * 30), "z" * 99 + " " + "z" * 100 + " " + "z" * 101,
    "a" * 4000 + "é" + "b" * 4000, "é" * 3000, "中文" * 1500, "ΑΣ ΣΑΣ σς " * 300, "naïve café résumé " * 200,
    "\u200b" * 50 + "zero\u200bwidth " * 300, "nbsp\xa0between\xa0words " * 300, "\x00\x01\x02ctl\x7f\x1f " * 300,
    "\x0bvt\x0cff\x85nel\u2028ls\u2029ps " * 200, "emoji 😀👍🏽 " * 300, "combining e\u0301 a\u0300 " * 300,
    "tabs\tand\rreturns\r\n" * 300, "!!!???...,,,;;;" * 300, "CamelCaseHTTPServer snake_case_name 0xDEADBEEF " * 200,
    "mixed " * 200 + "’“”—…⎢ℤ±µ¶₀" * 20 + " end " * 200, "ünï" * 30 + " " + "w " * 2000 + "ünï" * 30,
    "a" * 300 + "\u200b" + "b" * 300 + " " + "c " * 1500, " ".join(f"word{i}" for i in range(3000)),
]


def test_crafted_texts_with_unicode_controls_specials_and_long_runs(tok):
    _assert_same(tok, CRAFTED)


def test_random_mixtures_of_real_text_and_odd_characters(tok, real_texts):
    rng = random.Random(0)
    odd = list("éΣς中😀\u200b\xa0’—…\x00\x0b\x85\x7f\t\r") + ["[SEP]", "x" * 120, "  ", "\n\n", "e\u0301"]
    texts = []
    for t in real_texts[:300]:
        s = list(t)
        for _ in range(rng.randint(1, 15)):
            s.insert(rng.randrange(len(s) + 1), rng.choice(odd))
        texts.append("".join(s))
    _assert_same(tok, texts, lengths=(16, 256))


_PIECES = list("ab Z9_.,(\t\n\r\x00\x0b") + ["é", "中", "\u200b", "\xa0", "😀", "[SEP]", "hello", "x" * 40]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=300).map("".join))
def test_random_texts(text):
    _assert_same(_minilm(), [text], lengths=(4, 16, 64), cuts=CUTS[:3])


@functools.cache
def _minilm():
    return load_tokenizer("minilm")


def test_encode_ids_uses_the_same_cut(tok, real_texts):
    texts = real_texts[:80]
    want, _ = _reference(tok, texts, 128, "head_tail", None)
    assert [a.tolist() for a in encode_ids(tok, texts, 128)] == want


def test_lone_surrogates_fail_like_the_tokenizer(tok):
    bad = "abc \ud800 def"
    with pytest.raises(Exception) as want:
        tok.encode_batch([bad])
    with pytest.raises(want.type):
        encode_truncated(tok, [bad], 16)


def test_tokenizers_it_cannot_reproduce_use_the_rust_path(tok):
    from tokenizers import Tokenizer, models, pre_tokenizers

    wl = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    assert fast_path(wl) is None
    assert encode_truncated(wl, ["a b c a"], 3) == ([[1, 2, 0]], [4])
    cut = load_tokenizer("minilm")
    cut.enable_truncation(8)
    assert fast_path(cut) is None
    with pytest.raises(ValueError, match="no room"):
        encode_truncated(tok, ["a b c d e"], 2)
    with pytest.raises(ValueError, match="unknown truncation"):
        encode_truncated(tok, ["a"], 8, "middle")


# --- features: the previous implementation, kept as the reference ---------------------------------------------------


def _old_keyword_counts(low: str) -> list[int]:
    counts = [0] * len(F._GROUPS)
    words = F._words_of(low)
    hits = F._FIRST_WORDS.intersection(words)
    if not hits:
        return counts
    present = None
    joined = None
    for w in hits:
        gs = F._SINGLE_TERMS.get(w)
        if gs:
            n = words.count(w)
            for g in gs:
                counts[g] += n
        for rest, phrase, gs in F._PHRASES.get(w, ()):
            if present is None:
                present = set(words)
            if all(r in present for r in rest):
                if joined is None:
                    joined = b" " + b" ".join(words) + b" "
                n = joined.count(phrase)
                for g in gs:
                    counts[g] += n
    return counts


def _old_byte_stats(texts: list[str]) -> np.ndarray:
    enc = [t.encode("utf-8", "surrogatepass") for t in texts]
    lens = np.fromiter((len(e) + 1 for e in enc), dtype=np.int64, count=len(enc))
    buf = np.frombuffer(b"\x00" + b"\x00".join(enc) + b"\x00", dtype=np.uint8)
    starts = np.concatenate([[1], 1 + np.cumsum(lens)[:-1]]) if len(enc) else np.zeros(0, dtype=np.int64)
    ends = starts + lens - 1
    cur, prev, nxt = buf[1:-1], buf[:-2], buf[2:]
    ws = F._WS[cur]
    dig = F._DIGIT[cur]
    flags = (~ws & F._WS[prev], dig, F._UPPER[cur], dig & ~F._WORDISH[prev], (cur == ord("?")) & F._Q_END[nxt])
    out = np.empty((len(enc), len(flags)), dtype=np.int64)
    for j, f in enumerate(flags):
        pos = np.flatnonzero(f)
        out[:, j] = np.searchsorted(pos, ends - 1) - np.searchsorted(pos, starts - 1)
    return out


def _old_regex_row(text: str) -> list[float]:
    low = text.lower()
    padded = "\n" + low + "\n"
    n_lines = text.count("\n") + 1 if text else 0
    blocks = (low.count("```") + low.count("~~~") + 1) // 2
    indented = len(F._INDENTED.findall(padded))
    frames = len(F._PY_FRAME.findall(low)) + len(F._AT_FRAME.findall(padded))
    tb = "traceback (most recent call last)" in low or frames >= 2
    errors = sum(low.count(e) for e in F._ERROR_TOKENS)
    no_urls, urls = F._URL.subn(" ", low)
    paths = len(F._UNIX_PATH.findall(no_urls)) + len(F._WIN_PATH.findall(no_urls))
    has_code = blocks >= 1 or indented >= 2 or ">>> " in text
    kw = _old_keyword_counts(low)
    return [n_lines, blocks, indented, float(has_code), float(tb), frames, errors, paths, urls, kw[0], kw[1],
            *(float(c > 0) for c in kw[2:])]


def _old_featurize(texts: list[str], step_types=None) -> np.ndarray:
    n = len(texts)
    col = {name: i for i, name in enumerate(F.FEATURE_NAMES)}
    steps = F.step_type_onehot(list(step_types) if step_types is not None else [None] * n)
    out = np.zeros((n, F.N_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    chars = np.fromiter((len(t) for t in texts), dtype=np.float64, count=n)
    tok, dig, upp, nums, qs = _old_byte_stats(texts).T.astype(np.float64)
    r = np.array([_old_regex_row(t) for t in texts], dtype=np.float64)
    lines, blocks, indented, has_code, tb, frames, errors, paths, urls, easy, hard = r[:, :11].T
    safe_chars, safe_lines = np.maximum(chars, 1), np.maximum(lines, 1)
    cols = {
        "log_chars": np.log1p(chars), "log_tokens": np.log1p(tok), "log_lines": np.log1p(lines),
        "log_mean_line_len": np.log1p(chars / safe_lines), "log_code_blocks": np.log1p(blocks),
        "frac_indented_lines": indented / safe_lines, "has_code": has_code, "has_traceback": tb,
        "log_trace_frames": np.log1p(frames), "log_error_mentions": np.log1p(errors),
        "log_file_paths": np.log1p(paths), "log_urls": np.log1p(urls), "log_numbers": np.log1p(nums),
        "log_questions": np.log1p(qs), "frac_digits": dig / safe_chars, "frac_upper": upp / safe_chars,
        "log_easy_kw": np.log1p(easy), "log_hard_kw": np.log1p(hard), "hard_minus_easy": np.sign(hard - easy),
    }
    for name, v in cols.items():
        out[:, col[name]] = v
    for j, d in enumerate(F.DOMAINS):
        out[:, col[f"domain_{d}"]] = r[:, 11 + j]
    out[:, len(F._TEXT_NAMES) + len(F.DOMAINS):] = steps
    return out


def _feature_texts(real_texts: list[str]) -> list[str]:
    rng = random.Random(1)
    alphabet = list("aZ09 _-.,;:!?()[]{}'\"\\/\t\n\r\x0b\x0c\x00\x01\x1f\x7f`~>*#@$") + list("éΣς中😀\u200b\xa0’—…") + [
        "```", "~~~", "    ", "\tat foo(A.java:3)", 'File "x.py", line 3', "http://a.b/c", "C:\\x\\y.txt",
        "/usr/lib/a.so", ">>> ", "3.14", "v2", "? ", "error:", "Exception", "segfault", "memory leak", "typo",
        "lawsuit", "the patient", "sql injection", "security advisory", "401(k)", "thread-safe", "\n\n"]
    rand = ["".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 20, 300, 3000]))) for _ in range(400)]
    return real_texts + rand


def test_featurize_equals_the_previous_implementation_bit_for_bit(real_texts):
    texts = _feature_texts(real_texts)
    rng = random.Random(2)
    steps = [rng.choice([None, *STEP_TYPES]) for _ in texts]
    want = _old_featurize(texts, steps)
    got = F.featurize(texts, steps)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    one = np.vstack([F.featurize([t], [s]) for t, s in zip(texts[::9], steps[::9])])
    np.testing.assert_array_equal(one.view(np.uint32), want[::9].view(np.uint32))
    assert [F.detect_domains(t) for t in texts] == [
        [d for d, i in F._DOMAIN_INDEX if _old_keyword_counts(t.lower())[i] > 0] for t in texts]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_featurize_equals_the_previous_implementation_on_random_text(text):
    np.testing.assert_array_equal(F.featurize([text]).view(np.uint32), _old_featurize([text]).view(np.uint32))


# --- calibration ---------------------------------------------------------------------------------------------


def _interp_each(cal: IsotonicCalibrator, scores: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores)
    for t in range(cal.n_tiers):
        out[:, t] = np.interp(scores[:, t], cal.x[t], cal.y[t])
    return out


def test_calibration_equals_np_interp_per_tier_bit_for_bit():
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for _ in range(24):
        n = int(rng.integers(1, 30))
        xs.append(np.unique(rng.uniform(-0.5, 1.5, n)))
        ys.append(np.sort(rng.uniform(0, 1, len(xs[-1]))))
    xs += [np.array([0.3]), np.array([0.0, 1.0]), np.array([0.2, 0.4, 0.6])]
    ys += [np.array([0.7]), np.array([0.0, 0.0]), np.array([0.0, 0.5, 1.0])]
    cal = IsotonicCalibrator(xs, ys)
    assert cal._packed() is not None
    s = rng.uniform(-1, 2, (4000, cal.n_tiers))
    s[:300] = rng.choice(np.concatenate(xs), (300, cal.n_tiers))  # exactly on thresholds
    s[300:310] = np.nextafter(s[:10], np.inf)
    np.testing.assert_array_equal(cal.transform(s), _interp_each(cal, s))
    np.testing.assert_array_equal(np.signbit(cal.transform(s)), np.signbit(_interp_each(cal, s)))
    np.testing.assert_array_equal(cal.transform(s[:1]), _interp_each(cal, s[:1]))
    bad = s[:5].copy()
    bad[0, 0], bad[1, 1], bad[2, 2] = np.nan, np.inf, -np.inf  # np.interp's own rules, tier by tier
    np.testing.assert_array_equal(cal.transform(bad), _interp_each(cal, bad))


def test_calibration_maps_outside_the_packed_rules_use_np_interp():
    cal = IsotonicCalibrator([np.array([0.1, 0.1, 0.5]), np.array([0.0, 1.0])],
                             [np.array([0.2, 0.4, 0.6]), np.array([-0.0, 1.0])])
    assert cal._packed() is None
    s = np.array([[0.1, 0.0], [0.05, -1.0], [0.3, 0.5]])
    np.testing.assert_array_equal(cal.transform(s), _interp_each(cal, s))


def test_real_bundle_calibrators_pack(tiny_bundle):
    cal = IsotonicCalibrator.load(tiny_bundle / "calibrators.json")
    assert cal._packed() is not None
    s = np.random.default_rng(1).uniform(-0.1, 1.1, (500, cal.n_tiers))
    np.testing.assert_array_equal(cal.transform(s), _interp_each(cal, s))


# --- decision layer ------------------------------------------------------------------------------------------


def test_floors_from_the_feature_matrix_equal_floors_from_detect_domains(tiny_bundle, real_texts):
    from aco_bert.runtime import Router

    layer = Router.load(tiny_bundle, threads=1).layer
    rng = random.Random(3)
    texts = real_texts[:40] + ["the patient needs a dosage", "a lawsuit about a mortgage and an sql injection"]
    n = len(texts)
    doms = [rng.choice([None, [], ["legal"], ["medical", "legal"], ["legal", "legal"], ["security"]]) for _ in texts]
    steps = [rng.choice([None, *STEP_TYPES]) for _ in texts]
    mins = [rng.choice([None, 1, layer.spec.n_tiers]) for _ in texts]
    feats = F.featurize(texts, steps)
    probs = np.full((n, layer.spec.n_tiers), 0.5)
    costs = np.ones((n, layer.spec.n_tiers))
    _, a = layer.context(texts, probs, costs, steps, doms, [None] * n, mins)
    _, b = layer.context(texts, probs, costs, steps, doms, [None] * n, mins, features=feats)
    assert a.reasons == b.reasons and a.domains == b.domains
    np.testing.assert_array_equal(a.min_tier, b.min_tier)
    assert any(a.domains[-2:])


# --- stacked mode: trees and expected cost -----------------------------------------------------------------------


def _old_margins(te, x: np.ndarray) -> np.ndarray:
    """TreeEnsemble.margins as it was (2-D fancy indexing, np.where on both children)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    node = np.broadcast_to(te.roots, (n, te.n_trees)).copy()
    rows = np.arange(n)[:, None]
    for _ in range(te.depth):
        v = x[rows, te.feat[node]]
        go_left = np.where(np.isnan(v), te.dleft[node], v < te.thr[node])
        node = np.where(go_left, te.left[node], te.right[node])
    return np.add.reduceat(te.val[node].astype(np.float64), te.starts, axis=1) + te.offset


def _old_predict(te, x: np.ndarray) -> np.ndarray:
    m = _old_margins(te, x)
    for k, link in enumerate(te.links):
        if link == "sigmoid":
            m[:, k] = 1.0 / (1.0 + np.exp(-m[:, k]))
    return m


def _probe_rows(n_features: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((n, n_features)) * 2).astype(np.float32)
    x[::3, ::4] = np.nan
    return x


def test_tree_ensemble_equals_its_previous_implementation(tiny_bundle):
    import xgboost as xgb

    from aco_bert.decision.trees import TreeEnsemble
    from aco_bert.runtime import Router

    layer = Router.load(tiny_bundle, threads=1).layer
    forests = [m.fast_trees() for m in (layer.stacker, layer.cost_model, layer.verifier)]
    forests = [f for f in forests if f is not None]
    assert len(forests) == 3
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    boosters = [xgb.train({"objective": obj, "max_depth": 3, "nthread": 1}, xgb.DMatrix(x, y), 20)
                for obj, y in [("binary:logistic", (x[:, t] > 0).astype(float)) for t in range(12)]
                + [("reg:squarederror", x[:, t] * 3) for t in range(12)]]  # 24 tiers, both links, interleaved
    boosters = [b for pair in zip(boosters[:12], boosters[12:]) for b in pair]
    forests.append(TreeEnsemble(boosters, 40))
    for te in forests:
        rows = _probe_rows(te.n_features)
        for part in (rows, rows[:1], rows[:32]):
            np.testing.assert_array_equal(te.predict(part), _old_predict(te, part))
            np.testing.assert_array_equal(te.margins(part), _old_margins(te, part))


def test_tree_ensemble_rows_are_independent_so_chunking_changes_nothing(tiny_bundle, monkeypatch):
    """Big offline batches are descended in row chunks (bounded memory): the same numbers as one pass."""
    from aco_bert.decision import trees
    from aco_bert.runtime import Router

    te = Router.load(tiny_bundle, threads=1).layer.stacker.fast_trees()
    rows = _probe_rows(te.n_features, 1000)
    whole = te.predict(rows)
    monkeypatch.setattr(trees, "CHUNK_NODES", te.n_trees * 7)  # 7 rows per chunk, the last one shorter
    np.testing.assert_array_equal(te.predict(rows), whole)


def test_expected_cost_equals_tier_by_tier(tiny_bundle, real_texts):
    from aco_bert.decision.cost_model import EPS, design_matrix
    from aco_bert.runtime import Router

    router = Router.load(tiny_bundle, threads=1)
    layer = router.layer
    texts = real_texts[:40]
    _, outputs = router.infer(texts)
    feats = F.featurize(texts)
    cm, lay = layer.cost_model, layer.cost_model.layout
    heads = layer.cost_heads(outputs) if lay.get("heads") else None
    x = design_matrix(feats if lay.get("features") else None, outputs["pooled"] if lay.get("pca") else None, heads,
                      cm.pca)
    want = np.tile(cm.mean, (len(texts), 1)).astype(float)
    fast = cm.fast_trees().predict(x)
    for k, t in enumerate([t for t, b in enumerate(cm.boosters) if b is not None]):
        want[:, t] = np.maximum(np.exp(fast[:, k]) * cm.smear[t] - EPS, 0.0)
    np.testing.assert_array_equal(layer.expected_cost(outputs, feats), want)
    # (both against the libraries' own predict:
    # tests/test_runtime.py::test_fast_tree_path_equals_the_library_predictions)


# --- routing policy: the registry's composition == the runtime's previous hand-written dispatch ---------------------


def _old_choose(default, per_step, ctx):
    """DecisionLayer.choose + _policy_reason as they were (request budget > per-step policy > default)."""
    from aco_bert.policies import Budget

    p = ctx.shape[0]
    raw = np.asarray(default.choose(ctx), dtype=int)
    names = [default.name] * p
    for step, pol in per_step.items():
        m = np.array([s == step for s in ctx.step_types])
        if m.any():
            raw = np.where(m, np.asarray(pol.choose(ctx), dtype=int), raw)
            for i in np.flatnonzero(m):
                names[i] = f"{pol.name} ({step})"
    has_budget = ~np.isnan(ctx.budget)
    if has_budget.any():
        raw = np.where(has_budget, np.asarray(Budget(None).choose(ctx), dtype=int), raw)
        for i in np.flatnonzero(has_budget):
            names[i] = "budget"
    reasons = []
    allowed_all = ctx.allowed()
    for i in range(p):
        probs, cost, allowed, r = ctx.probs[i], ctx.exp_cost[i], allowed_all[i], raw[i]
        name = names[i]
        if name == "budget":
            b = float(ctx.budget[i])
            reasons.append(f"budget ${b:.4g}: highest P(success) among tiers with E[cost] <= budget"
                           if (allowed & (cost <= b)).any() else
                           f"budget ${b:.4g}: no allowed tier fits; cheapest allowed tier")
            continue
        pol = per_step.get(name.split(" (")[-1].rstrip(")"), default) if "(" in name else default
        if hasattr(pol, "tau"):
            tau = float(pol.tau)
            reasons.append(f"threshold {tau:.3f}: P(success)={probs[r]:.3f} is the cheapest allowed tier >= tau"
                           if probs[r] >= tau and allowed[r] else
                           f"threshold {tau:.3f}: no allowed tier reaches tau; highest P(success)={probs[r]:.3f}")
        elif hasattr(pol, "lam"):
            reasons.append(f"utility: argmax P(success) - {float(pol.lam):.4g} * E[cost]")
        else:
            reasons.append(pol.name)
    return raw, np.maximum(raw, ctx.min_tier), names, reasons


@pytest.mark.parametrize("routing", [
    {"policy": "target-success", "tau": 0.62, "target": 0.7, "delta": 0.1, "guaranteed": True},
    {"policy": "utility", "lam": 0.8, "per_step": {"edit": {"policy": "threshold", "tau": 0.5},
                                                   "plan": {"policy": "utility", "lam": 3.0}}},
    {"policy": "threshold", "tau": 0.7, "per_step": {"search": {"policy": "target-success", "tau": 0.3}}},
])
def test_routing_policy_equals_the_previous_runtime_dispatch(routing):
    from aco_bert.policies import RoutingConfig, StepContext, from_config, named_policy

    cfg = RoutingConfig.from_dict(routing)
    rng = np.random.default_rng(7)
    n, t = 400, 5
    ctx = StepContext(rng.random((n, t)), np.sort(rng.random((n, t)), axis=1), rng.integers(0, 3, n),
                      np.where(rng.random(n) < 0.3, rng.choice([0.0, 0.2, 0.5, 3.0], n), np.nan),
                      step_types=[rng.choice([None, *STEP_TYPES]) for _ in range(n)])
    old = _old_choose(named_policy(cfg), {k: named_policy(v) for k, v in cfg.per_step.items()}, ctx)
    pol = from_config(cfg)
    raw = pol.choose(ctx)
    np.testing.assert_array_equal(raw, old[0])
    np.testing.assert_array_equal(pol.decide(ctx), old[1])
    assert [pol.label(ctx, i) for i in range(n)] == old[2]
    assert [pol.reason(ctx, i, int(raw[i])) for i in range(n)] == old[3]
    assert len(set(old[2])) == 2 + len(cfg.per_step)  # default, budget requests and every per-step policy ran
