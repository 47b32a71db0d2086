"""Handcrafted prompt features: cheap, interpretable signals of difficulty, shape and domain.

Why: a router's text encoder sees tokens, not structure. Counts of code blocks, stack-trace frames, file paths and
"hard" words (segfault, race condition, production ...) are cheap hints of how hard a prompt is, they do not depend
on a tokenizer, and they are usable both as extra inputs to learned routers and as a transparent baseline. Domain
flags feed the *safety floors* of a :class:`~aco_bert.spec.RouterSpec` through :func:`detect_domains`.

Counts are ``log1p``-scaled so one pathological prompt (a 20k-line log) cannot dominate a linear model. Speed:
byte-level statistics (tokens, digits, capitals, numbers, questions) are ``bytes.translate`` + ``bytes.count``
passes (no numpy call per text: the router featurises one prompt per request); the rest are compiled regexes that start with a literal or a character class (so ``re`` can skip ahead)
and ``str.count``; keywords are whole words found by one set intersection per text.
``python scripts/bench_features.py`` prints the timing (10k SWE-bench-sized texts: well under 2 s on one core).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from aco_bert.data.schema import STEP_TYPES

# --- keyword lists -------------------------------------------------------------------------------------------
# Terms are lower case and match whole words; punctuation between words is ignored ("thread safe" = "thread-safe").

EASY_KEYWORDS = (
    "typo", "typos", "simple", "simply", "minor", "rename", "renamed", "renaming", "docs", "documentation",
    "docstring", "docstrings", "trivial", "trivially", "cosmetic", "spelling", "wording", "readme", "one liner",
    "straightforward", "small change", "small fix", "quick fix", "easy fix", "deprecation warning",
)
HARD_KEYWORDS = (
    "critical", "crash", "crashes", "crashed", "segfault", "segmentation fault", "production", "security",
    "race condition", "deadlock", "memory leak", "leak", "leaks", "regression", "performance", "slow", "hang",
    "hangs", "concurrency", "concurrent", "thread safe", "thread safety", "corrupt", "corrupted", "corruption",
    "data loss", "intermittent", "intermittently", "flaky", "nondeterministic", "non deterministic",
    "infinite loop", "infinite recursion", "recursion", "overflow", "refactor", "architecture",
    "backwards compatibility", "backward compatibility", "edge case", "edge cases", "inconsistent",
)

# Domain terms: a few *strong* terms each; one hit flags the domain. Trade-off: floors are a safety mechanism, so
# a false positive only costs money (the prompt goes to a pricier tier) while a false negative can send a legal or
# medical question to a weak model; still, everyday programming words are left out on purpose, because they would
# flag most coding prompts and make the floor meaningless:
#   legal    - not "contract" (API / smart contract), "license" (MIT license), "court", "case", "claim", "law".
#   medical  - not "symptom", "diagnose" (bug reports), "side effect", "doctor" (`brew doctor`), "health"
#              (health checks), "patient" alone ("please be patient"): only "patients" / "the patient" / "a patient".
#   finance  - not "stock", "bank", "portfolio", "interest", "balance", "payment", "price" (inventory, load
#              balancers, web shops); "securities"/"investment" stay although they are broader.
#   security - attack and vulnerability vocabulary only; not "security", "auth", "csrf", "token", "password",
#              "permission" (framework features). "exploit" also matches its rare non-security sense.
# A term flags a *topic*, not a need for expert advice: a grade-school word problem about a lawyer's fee or a
# "surgery" concept word flags too (accepted: it costs money, not safety). Flag rates measured once on the shared
# data: SWE-bench Verified issues 0/500 for every domain; LLMRouter's queries: mbpp, human_eval,
# math, logic grids 0 %; gsm8k 1.1 % (lawyer, patients, interest rate); MMLU 2.5 % legal, 8.5 % medical, 1.6 %
# finance; BFCL function-calling questions 6.5 % finance (loans, mortgages, stock prices), 2.2 % legal (lawsuits).
DOMAIN_TERMS: dict[str, tuple[str, ...]] = {
    "legal": (
        "plaintiff", "plaintiffs", "defendant", "defendants", "lawsuit", "lawsuits", "litigation", "attorney",
        "attorneys", "lawyer", "lawyers", "indemnify", "indemnification", "indemnified", "breach of contract",
        "legal advice", "legally binding", "governing law", "jurisdiction", "statute of limitations", "tort",
        "torts", "non disclosure agreement", "hereinafter", "hereby agrees", "prosecutor", "prosecution", "felony",
        "misdemeanor", "supreme court", "appellate", "testator", "easement", "negligence", "copyright infringement",
        "contract law", "criminal law", "landlord",
    ),
    "medical": (
        "patients", "the patient", "a patient", "diagnosis", "diagnosed", "prognosis", "dosage", "prescription",
        "prescribed", "medication", "medications", "clinical", "clinically", "physician", "physicians", "disease",
        "diseases", "cancer", "tumor", "tumour", "diabetes", "surgery", "surgical", "chemotherapy", "antibiotic",
        "antibiotics", "blood pressure", "heart attack", "overdose", "pregnancy", "pregnant", "syndrome",
        "vaccine", "vaccines", "vaccination", "mg kg", "myocardial", "pathology",
    ),
    "finance": (
        "mortgage", "mortgages", "loan", "loans", "interest rate", "interest rates", "401k", "401 k", "dividend",
        "dividends", "bankruptcy", "credit score", "financial advice", "hedge fund", "brokerage", "capital gains",
        "tax return", "tax returns", "income tax", "stock market", "stock price", "stock prices", "shareholder",
        "shareholders", "securities", "annuity", "retirement savings", "accounts receivable", "accounts payable",
        "depreciation", "amortization", "net present value", "balance sheet", "cash flow", "investment",
        "investments", "investor", "investors",
    ),
    "security": (
        "vulnerability", "vulnerabilities", "vulnerable to", "exploit", "exploits", "exploitable", "malware",
        "ransomware", "phishing", "privilege escalation", "sql injection", "command injection", "xss",
        "cross site scripting", "buffer overflow", "remote code execution", "penetration test",
        "penetration testing", "backdoor", "keylogger", "botnet", "zero day", "denial of service", "ddos",
        "password cracking", "reverse shell", "cve", "attacker", "attackers", "threat model", "security advisory",
    ),
}
DOMAINS: tuple[str, ...] = tuple(DOMAIN_TERMS)
_GROUPS: tuple[str, ...] = ("easy", "hard") + DOMAINS
_GROUP_TERMS: dict[str, tuple[str, ...]] = {"easy": EASY_KEYWORDS, "hard": HARD_KEYWORDS, **DOMAIN_TERMS}

# --- feature table -------------------------------------------------------------------------------------------

_TEXT_NAMES = (
    "log_chars", "log_tokens", "log_lines", "log_mean_line_len",
    "log_code_blocks", "frac_indented_lines", "has_code",
    "has_traceback", "log_trace_frames", "log_error_mentions",
    "log_file_paths", "log_urls", "log_numbers", "log_questions", "frac_digits", "frac_upper",
    "log_easy_kw", "log_hard_kw", "hard_minus_easy",
)
DOMAIN_FEATURES = tuple(f"domain_{d}" for d in DOMAINS)
STEP_FEATURES = tuple(f"step_{s}" for s in STEP_TYPES)
FEATURE_NAMES: tuple[str, ...] = _TEXT_NAMES + DOMAIN_FEATURES + STEP_FEATURES
N_FEATURES = len(FEATURE_NAMES)

# --- patterns ------------------------------------------------------------------------------------------------
# Line-anchored patterns start with a literal "\n" and run on "\n" + text + "\n" (a literal first char lets re
# jump between candidates instead of trying every position, which is what "^" with re.M would do).

_INDENTED = re.compile(r"\n(?:    |\t)[ \t]*(?![-*+] |\d+\. )\S")  # pasted code, not an indented list item
_PY_FRAME = re.compile(r'file "[^"\n]+", line \d+')
# Java "at pkg.Cls.method(File.java:12)", JS "at fn (file.js:3:7)" / "at file.js:3:7", always indented.
_AT_FRAME = re.compile(r"\n[ \t]+at [^\n]*:\d+\)?[ \t\r]*(?=\n)")
# Any scheme (http, https, ftp, file, s3, git+ssh ...): anchored on the literal "://" so re can jump to candidates.
_URL = re.compile(r"://[^\s<>\"'`)\]]+")  # the scheme before it is left in place: harmless for the path count
# a/b.py, ./x/y.txt, /usr/lib/z.so: a slash, optional directories, a file name with an extension (URLs removed first).
_UNIX_PATH = re.compile(r"/(?:[\w.-]+/)*[\w-]+\.[a-z][a-z0-9]{0,4}\b")
_WIN_PATH = re.compile(r":\\(?<=\b[a-z]:\\)[^\s\\:*?\"<>|]+")  # C:\Users\x.txt, drive letter checked behind
_ERROR_TOKENS = ("error:", "exception", "fatal:", "panic:")  # "ValueError:", "RuntimeException", "raises an exception"


# Keyword matching on words: the lower-cased UTF-8 bytes with every ASCII byte outside [a-z0-9_] turned into a space
# (bytes.translate), then split. A term matches whole words only ("change" does not contain "hang", "leakage" is not
# "leak"); "_" is a word character, so identifiers like production_mode never match; bytes >= 128 (non-ASCII
# letters) stay word characters; a phrase matches across any punctuation ("memory-leak", "401(k)").
_WORD_TABLE = bytes(
    c if (c >= 128 or chr(c) in "abcdefghijklmnopqrstuvwxyz0123456789_") else 32 for c in range(256))


def _words_of(low: str) -> list[bytes]:
    return low.encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()


def _build_terms() -> tuple[dict[bytes, list[int]], dict[bytes, list[tuple[bytes, bytes, list[int]]]], frozenset]:
    """Single-word terms -> group indices; phrases keyed by their first word -> (rest, " phrase ", groups)."""
    groups_of: dict[tuple[bytes, ...], set[int]] = {}
    for gi, g in enumerate(_GROUPS):
        for term in _GROUP_TERMS[g]:
            key = tuple(_words_of(term.lower()))
            if not key:
                raise ValueError(f"keyword {term!r} of group {g!r} has no word characters")
            groups_of.setdefault(key, set()).add(gi)
    single = {k[0]: sorted(v) for k, v in groups_of.items() if len(k) == 1}
    phrases: dict[bytes, list[tuple[bytes, bytes, list[int]]]] = {}
    for k, v in groups_of.items():
        if len(k) > 1:
            phrases.setdefault(k[0], []).append((k[1:], b" " + b" ".join(k) + b" ", sorted(v)))
    return single, phrases, frozenset(single) | frozenset(phrases)


_SINGLE_TERMS, _PHRASES, _FIRST_WORDS = _build_terms()
# Every word of every term: one set intersection with a text's words finds both the first words that hit and the
# other words of phrases that are present.
_TERM_WORDS = _FIRST_WORDS | frozenset(w for ps in _PHRASES.values() for rest, _, _ in ps for w in rest)


def _keyword_counts(low: str) -> list[int]:
    """Occurrences of each group's terms in lower-cased ``low``, indexed like :data:`_GROUPS`.

    Every term occurrence counts for its own groups, so a phrase and a term inside it both count ("memory leak" is
    two hard keywords: "memory leak" and "leak"; "security advisory" is the hard keyword "security" and a security
    domain term). Cost: one C-level set intersection per text; per-term work only for the few words that hit.
    """
    counts = [0] * len(_GROUPS)
    words = _words_of(low)
    present = _TERM_WORDS.intersection(words)
    if not present:
        return counts
    joined: bytes | None = None
    for w in present & _FIRST_WORDS:
        gs = _SINGLE_TERMS.get(w)
        if gs:
            n = words.count(w)
            for g in gs:
                counts[g] += n
        for rest, phrase, gs in _PHRASES.get(w, ()):
            if all(r in present for r in rest):
                if joined is None:
                    joined = b" " + b" ".join(words) + b" "
                n = joined.count(phrase)
                for g in gs:
                    counts[g] += n
    return counts


_DOMAIN_INDEX = [(d, _GROUPS.index(d)) for d in DOMAINS]


def detect_domains(text: str) -> list[str]:
    """Domains (a subset of :data:`DOMAINS`, in that order) whose strong terms occur in ``text``.

    Used for spec floors (domain -> minimum tier). Precision over recall: see the notes above :data:`DOMAIN_TERMS`.
    """
    if not isinstance(text, str):
        raise TypeError(f"detect_domains expects str, got {type(text).__name__}")
    counts = _keyword_counts(text.lower())
    return [d for d, i in _DOMAIN_INDEX if counts[i] > 0]


def domains_from_features(features: np.ndarray) -> list[list[str]]:
    """Per row of a :func:`featurize` matrix, the domains :func:`detect_domains` finds in its text, in the same order.

    The ``domain_*`` columns are exactly :func:`detect_domains`'s flags (the same keyword counts), so the router's
    floors read them instead of scanning every prompt a second time."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != N_FEATURES:
        raise ValueError(f"expected (n, {N_FEATURES}) featurize rows, got {features.shape}")
    first = FEATURE_NAMES.index(f"domain_{DOMAINS[0]}")
    found = features[:, first: first + len(DOMAINS)] > 0
    return [[d for d, f in zip(DOMAINS, row) if f] for row in found.tolist()]


# --- byte-level statistics -------------------------------------------------------------------------------------

_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32, 0]] = True  # ASCII whitespace; NUL also marks the text's two ends
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0"):ord("9") + 1] = True
_UPPER = np.zeros(256, dtype=bool)
_UPPER[ord("A"):ord("Z") + 1] = True
_WORDISH = _DIGIT | _UPPER | np.isin(np.arange(256), [ord(c) for c in "abcdefghijklmnopqrstuvwxyz_."])
_WORDISH[128:] = True  # UTF-8 bytes of non-ASCII letters
_Q_END = _WS | np.isin(np.arange(256), [ord(c) for c in "\"')]"])
# bytes.translate tables that turn each count into a count of a 2-byte pattern (C speed, no per-text numpy calls):
# token start = " x" (whitespace then not), number start = " 1" (a digit after a non-word byte),
# question = "? " (a "?" before whitespace, a closing quote/bracket or the end).
_T_TOKEN = bytes(32 if _WS[c] else ord("x") for c in range(256))
_T_NUMBER = bytes(ord("1") if _DIGIT[c] else ord("a") if _WORDISH[c] else 32 for c in range(256))
_T_QUESTION = bytes(ord("?") if c == ord("?") else 32 if _Q_END[c] else ord("x") for c in range(256))
_DIGIT_BYTES = bytes(np.flatnonzero(_DIGIT).tolist())
_UPPER_BYTES = bytes(np.flatnonzero(_UPPER).tolist())


def _byte_counts(text: str) -> tuple[int, int, int, int, int]:
    """Whitespace tokens, digits, ASCII capitals, numbers, questions of one text (its UTF-8 bytes).

    A number is a digit run not glued to a word ("v2", "py3" and the "14" of "3.14" are not new numbers); a question
    is a "?" followed by whitespace, a closing quote/bracket or the end (not a URL query). The text is bracketed by
    NULs, which count as whitespace: the start and the end behave like a space.
    """
    b = b"\x00" + text.encode("utf-8", "surrogatepass") + b"\x00"
    return (b.translate(_T_TOKEN).count(b" x"), len(b) - len(b.translate(None, _DIGIT_BYTES)),
            len(b) - len(b.translate(None, _UPPER_BYTES)), b.translate(_T_NUMBER).count(b" 1"),
            b.translate(_T_QUESTION).count(b"? "))


def _regex_row(text: str) -> list[float]:
    low = text.lower()
    padded = "\n" + low + "\n"
    n_lines = text.count("\n") + 1 if text else 0
    fences = low.count("```") + low.count("~~~")
    blocks = (fences + 1) // 2
    indented = len(_INDENTED.findall(padded))
    frames = len(_PY_FRAME.findall(low)) + len(_AT_FRAME.findall(padded))
    tb = "traceback (most recent call last)" in low or frames >= 2
    errors = sum(low.count(e) for e in _ERROR_TOKENS)
    no_urls, urls = _URL.subn(" ", low)
    paths = len(_UNIX_PATH.findall(no_urls)) + len(_WIN_PATH.findall(no_urls))
    has_code = blocks >= 1 or indented >= 2 or ">>> " in text
    kw = _keyword_counts(low)
    easy, hard = kw[0], kw[1]
    return [
        n_lines, blocks, indented, float(has_code), float(tb), frames, errors, paths, urls, easy, hard,
        *(float(c > 0) for c in kw[2:]),
    ]


def _text_row(text: str) -> list[float]:
    """The text columns of :data:`FEATURE_NAMES` (text and domain features) *before* ``log1p``, as float64 values.

    Ratios and signs are computed here (IEEE division, the same numbers numpy gives); :func:`featurize` applies
    ``np.log1p`` to the ``log_*`` columns of all rows in one call."""
    chars = float(len(text))
    tok, dig, upp, nums, qs = _byte_counts(text)
    lines, blocks, indented, has_code, tb, frames, errors, paths, urls, easy, hard, *domains = _regex_row(text)
    safe_chars, safe_lines = max(chars, 1.0), max(float(lines), 1.0)
    return [
        chars, tok, lines, chars / safe_lines, blocks, indented / safe_lines, has_code, tb, frames, errors, paths,
        urls, nums, qs, dig / safe_chars, upp / safe_chars, easy, hard, float((hard > easy) - (hard < easy)),
        *domains,
    ]


_LOG_COLS = np.array([i for i, n in enumerate(_TEXT_NAMES) if n.startswith("log_")])


def step_type_onehot(step_types: Sequence[str | None]) -> np.ndarray:
    """(n, len(STEP_TYPES)) one-hot; a missing value (None, NaN, pd.NA: what ``OutcomeMatrix.meta["step_type"]``
    holds for a plain prompt) means "not an agent step" (all zeros). Unknown type -> ValueError naming it."""
    out = np.zeros((len(step_types), len(STEP_TYPES)), dtype=np.float32)
    index = {s: i for i, s in enumerate(STEP_TYPES)}
    for r, s in enumerate(step_types):
        if s is None or (not isinstance(s, str) and pd.isna(s)):
            continue
        if s not in index:
            raise ValueError(f"unknown step type {s!r} at position {r}; expected one of {STEP_TYPES} or None")
        out[r, index[s]] = 1.0
    return out


def featurize(texts: Sequence[str], step_types: Sequence[str | None] | None = None) -> np.ndarray:
    """``(len(texts), N_FEATURES)`` float32 matrix whose columns are named by :data:`FEATURE_NAMES`.

    Each row depends on its own text and step type only: featurizing a batch equals featurizing one by one.
    """
    if isinstance(texts, str):
        raise TypeError("featurize expects a sequence of texts, not a single str")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text at position {i} is {type(t).__name__}, not str")
    if step_types is not None and len(step_types) != len(texts):
        raise ValueError(f"{len(step_types)} step types for {len(texts)} texts")
    n = len(texts)
    steps = step_type_onehot(list(step_types) if step_types is not None else [None] * n)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    x = np.array([_text_row(t) for t in texts], dtype=np.float64)
    x[:, _LOG_COLS] = np.log1p(x[:, _LOG_COLS])
    out[:, : x.shape[1]] = x
    out[:, len(_TEXT_NAMES) + len(DOMAINS):] = steps
    return out


def feature_frame(texts: Sequence[str], step_types: Sequence[str | None] | None = None):
    """:func:`featurize` as a pandas DataFrame with named columns (for inspection and reports)."""
    return pd.DataFrame(featurize(texts, step_types), columns=list(FEATURE_NAMES))
