"""Code answers: the (last fenced, else whole) code block, normalised; valid = it parses as Python.

Normalisation drops comments, docstrings and blank lines and collapses whitespace, so two solutions that differ
only in comments agree fully; otherwise agreement is the Jaccard overlap of their tokens (two correct solutions of
one task share most identifiers and calls; a wrong one usually does not). ``valid`` is 1 when the code parses with
:func:`ast.parse`, 0 when it does not (truncated or not Python), which is itself evidence of failure.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize

from aco_bert.verify.extractors.base import Answer, AnswerExtractor

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|$)", re.S)
CODE_HINT = re.compile(r"^\s*(def |class |import |from \w+ import|for |while |if __name__)", re.M)


def code_block(response: str) -> str | None:
    blocks = [b for lang, b in FENCE.findall(response) if lang.lower() in ("", "python", "py", "python3")]
    if blocks:
        return max(blocks, key=len)
    return response if CODE_HINT.search(response) else None


def normalise(code: str) -> str:
    """Comment/docstring-free token stream of Python code (falls back to whitespace collapsing)."""
    try:
        toks = []
        prev = None
        for t in tokenize.generate_tokens(io.StringIO(code).readline):
            if t.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
                continue
            if t.type == tokenize.STRING and prev in (None, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                prev = t.type
                continue  # a docstring / bare string statement
            prev = t.type
            toks.append("\n" if t.type == tokenize.NEWLINE else t.string)
        return " ".join(toks).replace(" \n ", "\n").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(code.split())


def parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


class CodeExtractor(AnswerExtractor):
    name = "code"

    def extract(self, response: str) -> Answer | None:
        block = code_block(response)
        if block is None or not block.strip():
            return None
        return Answer("code", normalise(block), 1.0 if parses(block) else 0.0)
