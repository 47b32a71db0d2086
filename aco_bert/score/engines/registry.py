"""Engine name -> engine class, imported on first use (the Ray engine must not import ray unless chosen)."""

from __future__ import annotations

import importlib

from aco_bert.score.engines.base import ScoringEngine

ENGINES = {"local": "aco_bert.score.engines.local:LocalEngine", "ray": "aco_bert.score.engines.ray:RayEngine"}


def get_engine(name: str) -> ScoringEngine:
    if name not in ENGINES:
        raise ValueError(f"unknown scoring engine {name!r}; expected one of {sorted(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
