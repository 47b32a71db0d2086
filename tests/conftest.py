"""Shared fixtures: real data comes from ACO_BERT_DATA_DIR (default: ../shared/data beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("ACO_BERT_DATA_DIR", DEFAULT_DATA_DIR))
    if not (d / "README.md").exists():
        pytest.skip(f"real outcome data not found at {d}; set ACO_BERT_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def swebench(data_dir):
    """The SWE-bench Verified canonical table (24 models), loaded once per session."""
    from aco_bert.data import load_outcomes

    return load_outcomes("swebench-verified", data_dir=data_dir)
