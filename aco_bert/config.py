"""Dataclass configs loaded from YAML, with ``--key value`` command-line overrides.

One loader for every config in the project (router specs, training, stacking) so that a YAML key, a dataclass
field and a command-line flag always mean the same thing.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _coerce(tp: Any, value: Any) -> Any:
    """Coerce a YAML/CLI value to a dataclass field type (handles Optional, nested dataclasses, lists)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return [_coerce(inner, v) for v in value]
    if tp is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if tp in (int, float) and isinstance(value, str):
        return tp(value)
    if tp is float and isinstance(value, int):
        return float(value)
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(tp)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            # mappings become the dataclass; anything else is left for the owner's __post_init__ (e.g. a serve
            # upstream given as a bare URL) to accept or refuse
            return {k: _coerce(args[1], v) if isinstance(v, dict) else v for k, v in value.items()}
    if tp in (list, dict) or origin in (list, dict):
        if isinstance(value, str):
            value = yaml.safe_load(value)
    _check_type(tp, value)
    return value


def _check_type(tp: Any, value: Any) -> None:
    """Refuse a value of the wrong kind (``--stacker 5``, ``--k true``, ``cascade: 5``) instead of passing it on to
    fail later as an AttributeError deep inside a stage. Unions of several types and ``Any`` are not checked."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        ok = isinstance(value, tp)
        want = "a mapping"
    elif tp is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif tp is int:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif tp is float:
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif tp is str:
        ok, want = isinstance(value, str), "a string"
    elif tp is list or origin in (list, tuple):
        ok, want = isinstance(value, (list, tuple)), "a list"
    elif tp is dict or origin is dict:
        ok, want = isinstance(value, dict), "a mapping"
    else:
        return
    if not ok:
        raise TypeError(f"expected {want}, got {type(value).__name__} {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error (a typo must not be silently ignored)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    kwargs = {}
    for k, v in data.items():
        try:
            kwargs[k] = _coerce(hints[k], v)
        except (TypeError, ValueError) as e:  # `--workers two`: say which key, not just int()'s complaint
            raise ValueError(f"{where}: {k}={v!r}: {e}") from e
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a missing required field or a __post_init__ check: say where
        msg = str(e)
        raise ValueError(msg if msg.startswith(f"{where}:") else f"{where}: {msg}") from e


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
                keep_none: bool = False) -> T:
    """Load ``cls`` from a YAML file, then apply ``overrides`` (e.g. parsed ``--max_steps 10``).

    A mapping override is merged into the file's mapping (``--stacker "{nthread: 1}"`` keeps the file's other
    stacker keys). None overrides are dropped (library callers pass "not given" as None) unless ``keep_none``: the
    command line only holds flags actually given, so there ``--cascade null`` means null."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at top level")
    for k, v in (overrides or {}).items():
        if v is None and not keep_none:
            continue
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    return from_dict(cls, data, where=str(path) if path else "arguments")


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """Parse ``--key value`` / ``--key=value`` / bare ``--flag`` (True) pairs into a dict (dashes -> underscores)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise ValueError(f"unexpected argument {a!r}; overrides look like --key value")
        key = a[2:]
        if "=" in key:
            key, val = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            val = argv[i + 1]
            i += 2
        else:
            val = "true"
            i += 1
        out[key.replace("-", "_")] = yaml.safe_load(val) if val not in ("",) else val
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def save_config(obj: Any, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(obj), f, sort_keys=False)


# --- command lines generated from config dataclasses ------------------------------------------------------------


class CliError(ValueError):
    """A bad command line: the verb prints it as one line (no traceback) and exits 2."""


def _field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` -> {name: comment}, read from the class source (help text for free)."""
    import inspect
    import re

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, flags=re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


def _is_text(tp: Any) -> bool:
    """str or Optional[str]: such a flag's value is taken verbatim (``--dataset no`` is the string "no")."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)] == [str]
    return tp is str


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:  # list[float], dict[str, int], X | None
        return str(tp).replace("typing.", "")
    s = getattr(tp, "__name__", None) or str(tp)
    return s.replace("typing.", "")


def _one_line_parser():
    import argparse

    class OneLineErrors(argparse.ArgumentParser):
        """argparse that raises :class:`CliError` (one line) instead of printing usage and exiting."""

        def error(self, message: str):  # type: ignore[override]
            raise CliError(f"{self.prog}: {message} (see --help)")

    return OneLineErrors


def build_parser(cls: type, prog: str, description: str = "", *, config_file: bool = True,
                 required: tuple[str, ...] = ()):
    """An ``argparse`` parser whose flags are ``cls``'s fields: ``--field_name`` (and ``--field-name``).

    Values are parsed as YAML (``--stacker "{nthread: 1}"``, ``--taus "[0.5, 0.6]"``) and coerced to the field's
    type by :func:`from_dict`, so a YAML key, a dataclass field and a flag are always the same name and type. A
    bare boolean flag means true. ``config_file`` adds ``--config FILE.yaml`` (flags override the file).
    """
    import argparse

    ap = _one_line_parser()(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if config_file:
        ap.add_argument("--config", default=None, help="YAML file with any of the fields below (flags override it)")
    hints = typing.get_type_hints(cls)
    notes = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        if f.default is not dataclasses.MISSING:
            default = f"default {f.default!r}"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
            default = (f"a mapping of {', '.join(x.name for x in dataclasses.fields(tp))}"
                       if dataclasses.is_dataclass(tp) else f"default {value!r}")
        else:
            default = "required"
        is_bool = tp is bool or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                                 and bool in typing.get_args(tp))
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS,
                                  help=f"{notes.get(f.name, '')} [{_type_name(tp)}; {default}]".strip())
        if is_bool:
            kw["nargs"] = "?"
            kw["const"] = "true"
        if f.name in required or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                                  and not config_file):  # type: ignore[misc]
            kw["required"] = True
        ap.add_argument(*flags, **kw)
    return ap


def flag_values(cls: type, parsed: dict[str, Any]) -> dict[str, Any]:
    """Parsed flag strings -> YAML values for ``cls``'s fields (text fields verbatim: ``--dataset no`` is "no").
    A value that is not valid YAML raises ``ValueError`` naming the flag."""
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in parsed.items():
        if _is_text(hints[k]) or not isinstance(v, str) or v == "":
            out[k] = v
            continue
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ValueError(f"--{k} {v!r} is not a valid value: {' '.join(str(e).split())}") from None
    return out


def parse_config(cls: type[T], argv: list[str] | None, prog: str, description: str = "", *,
                 config_file: bool = True, required: tuple[str, ...] = ()) -> T:
    """Parse ``argv`` into ``cls`` (``--config`` YAML first, then the flags). Raises :class:`CliError`, never a
    traceback for a user's mistake; ``-h`` prints the generated help and exits 0 (argparse's own behaviour)."""
    import sys

    ap = build_parser(cls, prog, description, config_file=config_file, required=required)
    ns = vars(ap.parse_args(sys.argv[1:] if argv is None else argv))
    path = ns.pop("config", None)
    try:
        return load_config(cls, path, flag_values(cls, ns), keep_none=True)
    except (ValueError, TypeError, OSError, yaml.YAMLError) as e:
        raise CliError(f"{prog}: {' '.join(str(e).split())}") from e


# Errors a verb reports as one line (exit 2): bad input, not a bug. $ACO_BERT_TRACEBACK=1 shows the traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError)
TRACEBACK_ENV = "ACO_BERT_TRACEBACK"


def run_verb(fn, cls: type[T], argv: list[str] | None, prog: str, description: str = "", **kw: Any) -> int:
    """The whole ``main`` of a thin verb: parse ``cls`` from the command line, call ``fn(cfg)``, and turn a
    :class:`CliError` into one line on stderr with exit code 2."""
    import sys

    try:
        cfg = parse_config(cls, argv, prog, description, **kw)
    except CliError as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        rc = fn(cfg)
    except USER_ERRORS as e:  # a missing run dir, an unknown dataset, a malformed file: one line, not a traceback
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{prog}: {type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return int(rc or 0)
