"""Router spec: the ordered model tiers a router chooses between, their prices, and safety minimums.

Tier 1 is the cheapest. Floors (domain -> minimum tier) and step-type minimums are part of the spec, not of a
policy, so every policy and the runtime enforce the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aco_bert.config import from_dict

SPECS_DIR = Path(__file__).parent / "specs"
# Per-prompt fields known only after the prompt ran (or the outcome itself): never a routing-time input.
POST_HOC_FIELDS = ("difficulty", "success", "cost_usd", "input_tokens", "output_tokens", "api_calls", "latency_s",
                   "prompt", "prompt_id", "model")


@dataclass
class Tier:
    model: str
    name: str | None = None  # display name; defaults to the model
    input_price: float | None = None  # USD per 1M input tokens
    output_price: float | None = None  # USD per 1M output tokens
    upstream: str | None = None  # base URL of an OpenAI-compatible endpoint serving this model (serve proxy)
    upstream_model: str | None = None  # model id sent upstream; defaults to `model`
    api_key_env: str | None = None  # environment variable holding the upstream key

    @property
    def label(self) -> str:
        return self.name or self.model


@dataclass
class RouterSpec:
    name: str
    tiers: list[Tier]
    dataset: str | None = None
    description: str = ""
    frontier: str | None = None  # model treated as "always-frontier"; default: the best-success model
    floors: dict[str, int] = field(default_factory=dict)  # domain -> minimum tier (1-based)
    step_type_min: dict[str, int] = field(default_factory=dict)  # step type -> minimum tier (1-based)
    # per-prompt metadata columns known when a prompt is routed (e.g. repo, category, language): the "metadata"
    # stacker signal one-hot encodes them, and the runtime takes them per request
    metadata: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError(f"router spec {self.name!r}: no tiers")
        models = [t.model for t in self.tiers]
        if len(set(models)) != len(models):
            raise ValueError(f"router spec {self.name!r}: a model appears twice in tiers")
        for kind, mins in (("floors", self.floors), ("step_type_min", self.step_type_min)):
            for k, v in mins.items():
                if not 1 <= int(v) <= len(self.tiers):
                    raise ValueError(f"router spec {self.name!r}: {kind}[{k!r}] = {v} is not a tier in 1..{len(self.tiers)}")
        post_hoc = [c for c in self.metadata if c in POST_HOC_FIELDS]
        if post_hoc:
            raise ValueError(f"router spec {self.name!r}: metadata {post_hoc} are known only after a prompt ran (or "
                             f"are the prompt itself); declare only columns available at routing time")
        if len(set(self.metadata)) != len(self.metadata):
            raise ValueError(f"router spec {self.name!r}: a metadata column appears twice in {self.metadata}")
        if self.frontier is not None and self.frontier not in models:
            raise ValueError(f"router spec {self.name!r}: frontier {self.frontier!r} is not one of its tiers")

    @property
    def models(self) -> list[str]:
        return [t.model for t in self.tiers]

    @property
    def n_tiers(self) -> int:
        return len(self.tiers)

    def min_tier(self, domains: list[str] | tuple[str, ...] = (), step_type: str | None = None) -> int:
        """Lowest tier (1-based) allowed by the floors of ``domains`` and ``step_type``."""
        m = 1
        for d in domains:
            m = max(m, int(self.floors.get(d, 1)))
        if step_type:
            m = max(m, int(self.step_type_min.get(step_type, 1)))
        return m

    @classmethod
    def every_model(cls, table: Any, name: str, dataset: str | None = None) -> "RouterSpec":
        """Without a spec: every model of an outcome table, cheapest first by mean observed cost (models without
        any cost last), frontier = the best-success model. What ``train`` and ``report`` use for a user file, so
        a table with no spec written for it still routes."""
        mean_cost = table.df.groupby("model", sort=False)["cost_usd"].mean()
        models = sorted(table.models, key=lambda m: (not np.isfinite(mean_cost.get(m, np.nan)),
                                                      mean_cost.get(m, np.inf)))
        return cls(name=name, tiers=[Tier(model=m) for m in models], dataset=dataset,
                   description="every model of the dataset, cheapest first by mean cost")

    @classmethod
    def from_dict(cls, data: dict, where: str = "spec") -> "RouterSpec":
        return from_dict(cls, data, where=where)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "RouterSpec":
        """Load a spec from a YAML path, or by name from the specs shipped in the package."""
        p = Path(name_or_path)
        if not p.exists():
            shipped = SPECS_DIR / f"{name_or_path}.yaml"
            if not shipped.exists():
                avail = sorted(x.stem for x in SPECS_DIR.glob("*.yaml"))
                raise FileNotFoundError(f"no router spec {str(name_or_path)!r}: not a file, nor a shipped spec {avail}")
            p = shipped
        with open(p) as f:
            return cls.from_dict(yaml.safe_load(f), where=str(p))

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        with open(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)
