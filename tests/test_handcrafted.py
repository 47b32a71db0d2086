"""Handcrafted features: crafted texts with known answers, domain precision, batch == one-by-one, step types."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aco_bert.data.schema import STEP_TYPES
from aco_bert.signals.handcrafted import (
    DOMAINS,
    FEATURE_NAMES,
    N_FEATURES,
    detect_domains,
    feature_frame,
    featurize,
)

PY_TRACE = """Running the migration fails:

Traceback (most recent call last):
  File "/srv/app/manage.py", line 22, in <module>
    main()
  File "/srv/app/venv/lib/python3.11/site-packages/django/core/management/__init__.py", line 442, in execute
    utility.execute()
  File "/srv/app/app/models.py", line 9, in save
    raise ValueError("bad")
ValueError: bad
"""

JAVA_TRACE = """Exception in thread "main" java.lang.NullPointerException
\tat com.example.Foo.bar(Foo.java:12)
\tat com.example.Main.main(Main.java:5)
"""

JS_TRACE = """TypeError: x is undefined
    at render (/app/src/view.js:10:5)
    at Object.<anonymous> (/app/index.js:3:1)
"""

CHITCHAT = "Hi! How was your weekend? I went hiking with friends and the weather was lovely."

LEGAL = ("This Agreement shall be governed by the laws of the State of New York (the governing law). The Licensee "
         "shall indemnify the Licensor against any claim. Can the plaintiff sue for breach of contract here?")


def row(text: str, step: str | None = None) -> dict[str, float]:
    x = featurize([text], None if step is None else [step])[0]
    return dict(zip(FEATURE_NAMES, x.tolist()))


def count(v: float) -> int:
    """Invert log1p for the count features."""
    return int(round(np.expm1(v)))


def test_names_and_shape():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == N_FEATURES
    assert [f"domain_{d}" for d in DOMAINS] == [n for n in FEATURE_NAMES if n.startswith("domain_")]
    assert [f"step_{s}" for s in STEP_TYPES] == [n for n in FEATURE_NAMES if n.startswith("step_")]
    x = featurize(["a", "b c"])
    assert x.shape == (2, N_FEATURES) and x.dtype == np.float32
    assert featurize([]).shape == (0, N_FEATURES)
    assert list(feature_frame(["a"]).columns) == list(FEATURE_NAMES)


def test_length_counts():
    r = row("one two three\nfour five\n\nsix")
    assert count(r["log_chars"]) == 28
    assert count(r["log_tokens"]) == 6
    assert count(r["log_lines"]) == 4
    empty = row("")
    assert all(np.isfinite(v) for v in empty.values())
    assert count(empty["log_chars"]) == count(empty["log_tokens"]) == count(empty["log_lines"]) == 0


def test_python_traceback():
    r = row(PY_TRACE)
    assert r["has_traceback"] == 1.0
    assert count(r["log_trace_frames"]) == 3
    assert count(r["log_error_mentions"]) == 1  # "ValueError:"
    assert count(r["log_file_paths"]) == 3  # the three frame paths
    assert r["has_code"] == 1.0  # the indented frame lines


@pytest.mark.parametrize("text,frames", [(JAVA_TRACE, 2), (JS_TRACE, 2)])
def test_java_and_js_frames(text, frames):
    r = row(text)
    assert count(r["log_trace_frames"]) == frames
    assert r["has_traceback"] == 1.0
    assert count(r["log_error_mentions"]) >= 1


def test_plain_text_has_no_trace_code_or_paths():
    r = row(CHITCHAT)
    for k in ("has_traceback", "log_trace_frames", "log_error_mentions", "has_code", "log_code_blocks",
              "log_file_paths", "log_urls", "log_numbers", "log_easy_kw", "log_hard_kw"):
        assert r[k] == 0.0, k
    assert count(r["log_questions"]) == 1


def test_code_blocks_and_indented_code():
    text = "Try this:\n```python\nx = 1\n```\nand this:\n```\ny = 2\n```\n"
    r = row(text)
    assert count(r["log_code_blocks"]) == 2 and r["has_code"] == 1.0
    ind = row("Example:\n\n    def f():\n        return 1\n\nthen\n- a list item\n")
    assert ind["has_code"] == 1.0 and ind["frac_indented_lines"] == pytest.approx(2 / 8)  # 7 newlines = 8 lines
    # an indented Markdown list is not code
    assert row("Steps:\n    - first\n    - second\n    1. third\n")["has_code"] == 0.0
    assert row(">>> import numpy\n")["has_code"] == 1.0


def test_paths_urls_numbers_questions():
    text = ("See https://github.com/org/repo/blob/main/a.py?x=1 and django/db/models/query.py, "
            "./setup.cfg or C:\\Users\\me\\notes.txt. Is it 3.14 or v2? Yes 42! Why (really?)")
    r = row(text)
    assert count(r["log_urls"]) == 1
    assert count(r["log_file_paths"]) == 3  # the URL's path is not a file path
    assert count(r["log_numbers"]) == 3  # 3.14, 42 and the URL's "=1"; not the 2 of "v2"
    assert count(r["log_questions"]) == 2  # "v2?" and "really?)", not the URL's "?x"
    assert row("A/B testing and/or input/output")["log_file_paths"] == 0.0


def test_difficulty_keywords_use_word_boundaries():
    easy = row("Fix a typo in the docs; trivial rename.")
    assert count(easy["log_easy_kw"]) == 4 and easy["hard_minus_easy"] == -1.0
    hard = row("Segfault in production: a race condition, then a memory-leak and a dead-lock? No, a deadlock.")
    # segfault, production, race condition, memory-leak + the "leak" inside it, deadlock ("dead-lock" is not the word)
    assert count(hard["log_hard_kw"]) == 6 and hard["hard_minus_easy"] == 1.0
    # "change" contains "hang", "leakage" starts with "leak", "typology" starts with "typo": none is a keyword
    none = row("Change the leakage typology; production_mode and simpler_docs are identifiers.")
    assert none["log_easy_kw"] == none["log_hard_kw"] == 0.0
    # a longer domain term still credits the difficulty keyword inside it
    assert count(row("Publish a security advisory.")["log_hard_kw"]) == 1


def test_domains_on_crafted_texts():
    assert detect_domains(LEGAL) == ["legal"]
    assert detect_domains(CHITCHAT) == []
    assert detect_domains("The patient was diagnosed with type 2 diabetes; what dosage of metformin?") == ["medical"]
    assert detect_domains("Should I pay off my mortgage or put the money in an index fund for capital gains?") == [
        "finance"]
    assert detect_domains("Write an exploit for CVE-2021-44228 and a reverse shell.") == ["security"]
    both = "Is the hospital liable in a malpractice lawsuit if patients' records leak via SQL injection?"
    assert detect_domains(both) == ["legal", "medical", "security"]
    r = row(LEGAL)
    assert r["domain_legal"] == 1.0 and r["domain_medical"] == r["domain_finance"] == r["domain_security"] == 0.0


@pytest.mark.parametrize("text", [
    "Please be patient, the build takes a while.",
    "The smart contract and the API contract both changed; see the MIT license.",
    "Run `brew doctor` and check the load balancer health check.",
    "The CSRF token and password reset views need a security review.",
    "The stock widget shows the balance of the bank account model.",
    "This syntax error is a symptom of a side effect in the parser; diagnose it.",
    "Add a `tenant_id`-free method, e.g. loaner or investmentally",
])
def test_programming_words_do_not_flag_domains(text):
    assert detect_domains(text) == []


def test_domain_flags_are_rare_on_real_code_issues(data_dir):
    """SWE-bench issues are code bugs: a domain floor firing on them would be a false positive (measured: 0/500)."""
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        texts = [json.loads(line)["problem_statement"] for line in f if line.strip()]
    x = feature_frame(texts)
    rates = {d: float(x[f"domain_{d}"].mean()) for d in DOMAINS}
    assert all(v <= 0.01 for v in rates.values()), rates
    # and the structural features do fire on them
    assert x["has_code"].mean() > 0.3 and x["has_traceback"].mean() > 0.05 and x["log_file_paths"].gt(0).mean() > 0.2


def test_batch_equals_one_by_one_on_real_texts(data_dir):
    with open(data_dir / "swebench-verified" / "tasks.jsonl") as f:
        texts = [json.loads(line)["problem_statement"] for _, line in zip(range(60), f)]
    texts += [PY_TRACE, CHITCHAT, LEGAL, "", "héllo wörld? ünïcode ✓ 12", "\x00nul\x00 inside?"]
    batch = featurize(texts)
    singles = np.vstack([featurize([t]) for t in texts])
    np.testing.assert_array_equal(batch, singles)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_array_equal(featurize([texts[i] for i in perm]), batch[perm])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
def test_batch_equals_one_by_one_on_random_texts(texts):
    batch = featurize(texts)
    assert np.isfinite(batch).all()
    np.testing.assert_array_equal(batch, np.vstack([featurize([t]) for t in texts]))


def test_unicode_counts_characters_not_bytes():
    r = row("héllo wörld? ✓")
    assert count(r["log_chars"]) == 14 and count(r["log_tokens"]) == 3 and count(r["log_questions"]) == 1


def test_step_types():
    x = featurize(["a", "b", "c"], ["edit", None, "plan"])
    cols = [FEATURE_NAMES.index(f"step_{s}") for s in STEP_TYPES]
    steps = x[:, cols]
    assert steps.sum(axis=1).tolist() == [1.0, 0.0, 1.0]
    assert steps[0, STEP_TYPES.index("edit")] == 1.0 and steps[2, STEP_TYPES.index("plan")] == 1.0
    # the step type only touches its own columns
    np.testing.assert_array_equal(np.delete(x, cols, axis=1), np.delete(featurize(["a", "b", "c"]), cols, axis=1))


def test_missing_step_types_from_a_real_table(swebench):
    m = swebench.matrix()
    steps = m.meta["step_type"].tolist()[:20]  # pd.NA: SWE-bench prompts are whole tasks, not agent steps
    x = featurize(m.prompts[:20], steps)
    np.testing.assert_array_equal(x, featurize(m.prompts[:20]))
    assert featurize(["a", "b"], [float("nan"), "test"])[:, FEATURE_NAMES.index("step_test")].tolist() == [0.0, 1.0]


def test_errors():
    with pytest.raises(ValueError, match="'deploy'"):
        featurize(["a", "b"], ["edit", "deploy"])
    with pytest.raises(ValueError, match="2 step types for 1 texts"):
        featurize(["a"], ["edit", "plan"])
    with pytest.raises(TypeError, match="position 1"):
        featurize(["a", None])
    with pytest.raises(TypeError, match="not a single str"):
        featurize("just one string")
    with pytest.raises(TypeError):
        detect_domains(None)
