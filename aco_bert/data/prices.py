"""Model price tables: USD per input / output token, with an explicit, reportable name lookup.

Cost is half of every routing decision, so a price must never be guessed silently. :class:`PriceTable` resolves a
model name in a fixed, documented order and records which key it used (``table.resolved``), so a report can show
exactly where each price came from:

1. the alias map (``aliases``: name -> key, case-sensitive), e.g. a benchmark's config name -> a LiteLLM key;
2. the exact key;
3. the key compared case-insensitively;
4. keys ending in ``/<name>`` (compared case-insensitively), e.g. ``openai/gpt-4o`` for ``gpt-4o`` or
   ``deepinfra/mistralai/Mixtral-8x7B-Instruct-v0.1`` for ``mistralai/Mixtral-8x7B-Instruct-v0.1``;
5. the *normalised* name (:func:`normalise_name`: lower case, last ``/``-component, leading letter-only dotted
   segments such as ``us.anthropic.`` dropped, a Bedrock version suffix ``-v1:0`` dropped, ``@ _ .`` -> ``-``)
   equal to a key's normalised form: ``claude-3-haiku-20240307`` finds ``vertex_ai/claude-3-haiku@20240307``;
6. the normalised name *without a date or revision suffix* (:func:`undated`: a trailing ``-YYYYMMDD``,
   ``-YYYY-MM-DD``, ``-NNN`` such as ``-001``, or ``-latest``) equal to a key's undated normalised form:
   ``gemini-2.0-flash-001`` finds ``vertex_ai/gemini-2.0-flash``.

The first rule with candidates decides. Keys of *regional* (data-residency) endpoints -- a region path segment
(``bedrock/us-gov-west-1/``, ``azure/eu/``) or a geo prefix (``eu.``, ``us.``, ``apac.``) -- are set aside when a
global key is among the candidates: list prices are the global endpoint's, regions carry surcharges (Bedrock
GovCloud +20 %), so ``claude-3-5-sonnet-20240620`` resolves to 3/15 per 1M instead of failing. Several candidates with the same price are fine (the first in sorted order
is recorded); different prices raise :class:`AmbiguousPrice` unless a *provider* is given (``provider=`` or the
table's ``provider``; ``--price_provider`` on the command line): it keeps the candidates whose key starts with
``<provider>/`` or whose LiteLLM ``litellm_provider`` field equals it, and only breaks such ties (it never changes
an unambiguous answer). ``table.resolved_by`` records the rule that matched (``alias``, ``exact``, ``case``,
``suffix``, ``normalised``, ``undated``), plus ``+provider`` when the provider broke a tie.
Anything else raises :class:`PriceNotFound` with close matches as *suggestions* (never used automatically).
Entries listed without a per-token price (LiteLLM lists some models with ``null`` prices) count as absent.

Two sources are supported: LiteLLM's ``model_prices_and_context_window`` JSON (USD per token, keys sometimes
provider-prefixed) and per-dataset tables in USD per 1M tokens (LLMRouter's ``default_llm.json``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aco_bert.data.io import read_json_source
from aco_bert.data.schema import DataError

# The shared copy is the backup table shipped in the PyPI wheel litellm 1.110.2; online, the same file from the tag.
LITELLM_VERSION = "1.110.2"
LITELLM_URL = (
    "https://raw.githubusercontent.com/BerriAI/litellm/"
    f"v{LITELLM_VERSION}/litellm/model_prices_and_context_window_backup.json"
)
LITELLM_RELPATH = "prices/litellm_model_prices.json"  # under the data dir


class PriceNotFound(KeyError):
    """No price for a model name (the message lists close keys as suggestions, never used automatically)."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the sentence as written
        return str(self.args[0]) if self.args else ""


class AmbiguousPrice(PriceNotFound):
    """Several keys match a name with *different* prices: pass a provider (``--price_provider``) or an alias."""


_DOTTED_VENDOR = re.compile(r"^(?:[a-z]+\.)+(?=[a-z])")  # "us.anthropic." in "us.anthropic.claude-..."
_BEDROCK_VERSION = re.compile(r"(?:-v\d+)?:\d+$")  # "-v1:0"
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|\d{3}|latest)$")


def normalise_name(name: str) -> str:
    """The form rule 5 compares (module docstring): ``us.anthropic.claude-3-5-sonnet-20240620-v1:0`` ->
    ``claude-3-5-sonnet-20240620``; ``Mixtral-8x7B-Instruct-v0.1`` -> ``mixtral-8x7b-instruct-v0-1``."""
    n = name.rsplit("/", 1)[-1].lower()
    n = _BEDROCK_VERSION.sub("", _DOTTED_VENDOR.sub("", n))
    return re.sub(r"[@_.]", "-", n)


def undated(name: str) -> str:
    """:func:`normalise_name` without one trailing date / revision suffix (rule 6): ``gemini-2.0-flash-001`` ->
    ``gemini-2-0-flash``."""
    return _DATE_SUFFIX.sub("", normalise_name(name))


@dataclass(frozen=True)
class Price:
    """USD per token, plus the table key it came from."""

    input: float
    output: float
    key: str

    @property
    def input_per_1m(self) -> float:
        return self.input * 1e6

    @property
    def output_per_1m(self) -> float:
        return self.output * 1e6

    def cost(self, input_tokens: Any, output_tokens: Any) -> Any:
        """USD for the given token counts (scalars or arrays; NaN tokens give NaN)."""
        return np.asarray(input_tokens, dtype=float) * self.input + np.asarray(output_tokens, dtype=float) * self.output


@dataclass
class PriceTable:
    """Prices in USD per token keyed by model name, with an alias map; see the module docstring for lookup."""

    prices: dict[str, tuple[float, float]]
    aliases: dict[str, str] = field(default_factory=dict)
    name: str = "prices"
    resolved: dict[str, str] = field(default_factory=dict)  # every successful lookup: name -> key used
    providers: dict[str, str] = field(default_factory=dict)  # key -> LiteLLM's litellm_provider (when known)
    provider: str | None = None  # default tie-breaking provider (see module docstring)
    resolved_by: dict[str, str] = field(default_factory=dict)  # every successful lookup: name -> rule used

    def __post_init__(self) -> None:
        self._lower: dict[str, list[str]] = {}
        self._suffix: dict[str, list[str]] = {}
        self._norm: dict[str, list[str]] = {}
        self._undated: dict[str, list[str]] = {}
        for k in self.prices:
            self._lower.setdefault(k.lower(), []).append(k)
            self._suffix.setdefault(k.rsplit("/", 1)[-1].lower(), []).append(k)
            self._norm.setdefault(normalise_name(k), []).append(k)
            self._undated.setdefault(undated(k), []).append(k)

    def __len__(self) -> int:
        return len(self.prices)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    # -- lookup ---------------------------------------------------------------------------------------------------
    def resolve(self, name: str, provider: str | None = None) -> str:
        """The key used for ``name`` (see module docstring); raises :class:`PriceNotFound` / :class:`AmbiguousPrice`."""
        key, how = self._resolve(name, provider or self.provider)
        self.resolved[name] = key
        self.resolved_by[name] = how
        return key

    def _candidates(self, name: str) -> tuple[str, list[str]]:
        """(rule, candidate keys) of the first rule 3..6 with any candidate."""
        low = name.lower()
        tail = [k for k in self._suffix.get(low.rsplit("/", 1)[-1], []) if k.lower().endswith("/" + low)]
        for how, cands in (("case", self._lower.get(low, [])), ("suffix", tail),
                           ("normalised", self._norm.get(normalise_name(name), [])),
                           ("undated", self._undated.get(undated(name), []))):
            if cands:
                return how, cands
        return "", []

    def _of_provider(self, key: str, provider: str) -> bool:
        return key.lower().startswith(provider.lower() + "/") or self.providers.get(key) == provider

    def _resolve(self, name: str, provider: str | None) -> tuple[str, str]:
        if name in self.aliases:
            target = self.aliases[name]
            if target not in self.prices:
                raise PriceNotFound(f"{self.name}: alias {name!r} -> {target!r}, but {target!r} has no price "
                                    "in the table")
            return target, "alias"
        if name in self.prices:
            return name, "exact"
        how, cands = self._candidates(name)
        if cands:
            cands = [k for k in cands if not is_regional(k)] or cands
            if len({self.prices[k] for k in cands}) == 1:
                return sorted(cands)[0], how
            mine = [k for k in cands if provider and self._of_provider(k, provider)]
            if mine and len({self.prices[k] for k in mine}) == 1:
                return sorted(mine)[0], how + "+provider"
            listing = ", ".join(f"{k} [{self.providers.get(k, k.split('/')[0] if '/' in k else '?')}] "
                                f"({self.prices[k][0] * 1e6:g}/{self.prices[k][1] * 1e6:g} per 1M)"
                                for k in sorted(mine or cands)[:12])
            more = f" and {len(mine or cands) - 12} more" if len(mine or cands) > 12 else ""
            which = f"even for provider {provider!r} " if mine else (
                f"(none of provider {provider!r}) " if provider else "")
            raise AmbiguousPrice(f"{self.name}: {name!r} matches keys with different prices {which}"
                                 f"({how} rule): {listing}{more}; choose one with --price_provider PROVIDER "
                                 "(cost: {price_provider: ...} in --dataset_options) or add an alias")
        # Suggestions compare the name with whole keys and with their last "/"-component.
        close = difflib.get_close_matches(name, list(self.prices), n=5, cutoff=0.6)
        for suf in difflib.get_close_matches(name.lower(), list(self._suffix), n=5, cutoff=0.6):
            close += [k for k in self._suffix[suf] if k not in close]
        close = close[:8]
        hint = f"; close keys (not used): {close}" if close else ""
        raise PriceNotFound(f"{self.name}: no price for {name!r}{hint}")

    def lookup(self, name: str, provider: str | None = None) -> Price:
        key = self.resolve(name, provider)
        pin, pout = self.prices[key]
        return Price(pin, pout, key)

    def get(self, name: str, default: Price | None = None, provider: str | None = None) -> Price | None:
        """Like :meth:`lookup` but returns ``default`` when there is no (unambiguous) price."""
        try:
            return self.lookup(name, provider)
        except PriceNotFound:
            return default

    def cost(self, name: str, input_tokens: Any, output_tokens: Any, provider: str | None = None) -> Any:
        return self.lookup(name, provider).cost(input_tokens, output_tokens)

    @classmethod
    def from_litellm(cls, source: str | Path | Mapping[str, Any] | None = None, *,
                     aliases: Mapping[str, str] | None = None, data_dir: str | Path | None = None,
                     provider: str | None = None) -> "PriceTable":
        """LiteLLM's price JSON: a path, a URL, an already-parsed mapping, or None: the data dir's copy, else the
        table an installed ``litellm`` package ships (read as a file, litellm is not imported), else the pinned URL."""
        if source is None:
            from aco_bert.data.registry import resolve_data_dir

            d = resolve_data_dir(data_dir)
            source = d / LITELLM_RELPATH if d is not None and (d / LITELLM_RELPATH).exists() else \
                installed_litellm_table() or LITELLM_URL
        where, raw = _read_mapping(source, "model -> price fields")
        prices: dict[str, tuple[float, float]] = {}
        providers: dict[str, str] = {}
        for k, v in raw.items():
            if k == "sample_spec" or not isinstance(v, Mapping):
                continue
            pin, pout = v.get("input_cost_per_token"), v.get("output_cost_per_token")
            if _is_num(pin) and _is_num(pout):
                prices[str(k)] = (float(pin), float(pout))
                if isinstance(v.get("litellm_provider"), str):
                    providers[str(k)] = v["litellm_provider"]
        return cls(prices, dict(aliases or {}), name=f"litellm:{Path(where).name}", providers=providers,
                   provider=provider)

    @classmethod
    def from_per_million(cls, source: str | Path | Mapping[str, Any], *, input_field: str = "input_price",
                         output_field: str = "output_price", aliases: Mapping[str, str] | None = None,
                         name: str | None = None) -> "PriceTable":
        """A per-dataset table in USD per 1M tokens: ``{model: {input_price, output_price, ...}}`` (path or mapping).

        This is the format of LLMRouter's ``default_llm.json``. A model without numeric prices is a :class:`DataError`
        (a per-dataset table is small and curated, so a gap there is a mistake, not a fact about the market).
        """
        where, raw = _read_mapping(source, "model -> {input_price, output_price}")
        prices: dict[str, tuple[float, float]] = {}
        for k, v in raw.items():
            if not isinstance(v, Mapping):
                raise DataError(f"entry {k!r} is not an object", file=where, row=str(k))
            pin, pout = v.get(input_field), v.get(output_field)
            if not (_is_num(pin) and _is_num(pout)) or float(pin) < 0 or float(pout) < 0:
                raise DataError(f"entry {k!r}: {input_field}/{output_field} must be non-negative numbers, got "
                                f"{pin!r}/{pout!r}", file=where, row=str(k))
            prices[str(k)] = (float(pin) / 1e6, float(pout) / 1e6)
        return cls(prices, dict(aliases or {}), name=name or f"per-1M:{Path(where).name}")


def installed_litellm_table() -> Path | None:
    """The price JSON inside an installed ``litellm`` package (its offline backup), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "model_prices_and_context_window_backup.json"
    return p if p.exists() else None


_REGION = re.compile(r"^[^/]+/(?:[a-z]{2}(?:-gov)?-[a-z]+-\d+|eu|us|apac|jp|au|global)/|^(?:eu|us|apac|jp|au)\.",
                     re.IGNORECASE)


def is_regional(key: str) -> bool:
    """A key of a regional endpoint: ``bedrock/us-gov-west-1/...``, ``azure/eu/...``, ``eu.anthropic...``."""
    return bool(_REGION.search(key))


def _read_mapping(source: str | Path | Mapping[str, Any], what: str) -> tuple[str, Mapping[str, Any]]:
    """(where, parsed object) for a price source given as a path, a URL or an already-parsed mapping."""
    where = "<mapping>" if isinstance(source, Mapping) else str(source)
    raw = source if isinstance(source, Mapping) else read_json_source(source)
    if not isinstance(raw, Mapping):
        raise DataError(f"expected a JSON object of {what}", file=where)
    return where, raw


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


