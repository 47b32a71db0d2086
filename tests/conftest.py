"""Shared fixtures: real data comes from ACO_BERT_DATA_DIR (default: ../shared/data beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
# LiteLLM fetches its model cost map from the internet on import unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


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


FIVE_MODELS = ["Qwen2.5-Coder 32B Instruct", "GPT-5 nano (2025-08-07) (medium reasoning)", "Devstral small (2512)",
               "GPT-5 mini (2025-08-07) (medium reasoning)", "Claude 4.5 Sonnet (20250929)"]


@pytest.fixture(scope="session")
def five_models() -> list[str]:
    """Five real SWE-bench Verified models, cheapest first: the tiers of :func:`spec_path`."""
    return list(FIVE_MODELS)


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory, five_models) -> str:
    """A 5-tier spec over real SWE-bench models (independent of which specs the package ships)."""
    import yaml

    p = tmp_path_factory.mktemp("spec") / "five.yaml"
    p.write_text(yaml.safe_dump({"name": "five", "dataset": "swebench-verified",
                                 "tiers": [{"model": m} for m in five_models]}))
    return str(p)


# --- the real tiny router bundle (aco_bert.testing.build_test_bundle): train -> stack -> export, ~30 s ---------

# Every package file that shapes the tiny bundle (hashed: the cached bundle rebuilds when one of them changes).
_BUNDLE_SOURCE_GLOBS = ("aco_bert/**/*.py", "configs/tiny-test.yaml", "aco_bert/specs/*.yaml")


def _bundle_sources() -> list[str]:
    skip = ("aco_bert/serve/", "aco_bert/score/", "aco_bert/evaluation/metrics/")
    out = {p.relative_to(REPO).as_posix() for g in _BUNDLE_SOURCE_GLOBS for p in REPO.glob(g)}
    return sorted(r for r in out if not r.startswith(skip))


def _bundle_source_key() -> str:
    import hashlib

    h = hashlib.sha256()
    for rel in _bundle_sources():
        p = REPO / rel
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


def _cached_tiny_bundle(data_dir: Path, root: Path, mode: str) -> Path:
    """Build (or reuse, when the code that makes it is unchanged and it still verifies) a tiny bundle under root."""
    import fcntl

    with open(root / ".lock", "w") as lock:  # one builder at a time when sessions share a cache dir
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_or_reuse(data_dir, root, mode)


def _build_or_reuse(data_dir: Path, root: Path, mode: str) -> Path:
    from aco_bert.artifacts.bundle import verify_bundle
    from aco_bert.types import BundleError
    from aco_bert.testing import build_test_bundle

    out, key_file = root / f"bundle-{mode}", root / f"bundle-{mode}.key"
    key = _bundle_source_key()
    if out.exists() and key_file.exists() and key_file.read_text() == key:
        try:
            verify_bundle(out)
            return out
        except BundleError:
            pass
    work_key = root / "work.key"
    if not work_key.exists() or work_key.read_text() != key:
        import shutil

        shutil.rmtree(root / "work", ignore_errors=True)  # a training run made by other code: redo it
    build_test_bundle(out, data_dir, mode=mode, work_dir=root / "work")
    work_key.write_text(key)
    key_file.write_text(key)
    return out


def _tiny_bundle_root(tmp_path_factory) -> Path:
    cache = os.environ.get("ACO_BERT_TEST_BUNDLE_CACHE")  # reuse across sessions (dev loops); unset in CI
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        return Path(cache)
    return tmp_path_factory.getbasetemp() / "tiny_bundle"


@pytest.fixture(scope="session")
def tiny_bundle(data_dir, tmp_path_factory) -> Path:
    """A real *stacked* router bundle with model.onnx + model.int8.onnx: a 2-layer random DistilBERT trained 3-fold
    (+ final fit) on 64 SWE-bench Verified prompts, stacker/calibrators/cost model/verifier fitted on its
    out-of-fold outputs, exported with every parity gate passed. Built once per session (~30 s); set
    ACO_BERT_TEST_BUNDLE_CACHE=DIR to reuse it across sessions while the code that builds it is unchanged."""
    root = _tiny_bundle_root(tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    return _cached_tiny_bundle(data_dir, root, "stacked")


@pytest.fixture(scope="session")
def tiny_heads_bundle(data_dir, tmp_path_factory, tiny_bundle) -> Path:
    """The same trained model exported in heads-only mode (calibrated head probabilities, per-tier mean cost)."""
    return _cached_tiny_bundle(data_dir, tiny_bundle.parent, "heads")


@pytest.fixture(scope="module")
def upstream():
    """A loopback fake OpenAI upstream (tests/fake_upstream.py), one per test module: its request log is the
    module's own."""
    from fake_upstream import FakeUpstream

    with FakeUpstream() as u:
        yield u


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> str:
    """The tiny stacked bundle's folder as a string (what ScoreConfig / the CLI take)."""
    return str(tiny_bundle)


@pytest.fixture(scope="session")
def two_tier_prompts(tiny_bundle, swebench) -> list[tuple[str, int]]:
    """Two real SWE-bench Verified prompts the tiny bundle sends to different tiers, found by asking the bundle (so
    a test holds whatever the tiny model learnt): [(prompt, 1-based tier), (prompt, another tier)]."""
    from aco_bert.runtime import Router

    prompts = swebench.df.drop_duplicates("prompt_id")["prompt"].head(64).tolist()
    tiers = [d.tier for d in Router.load(tiny_bundle).route_batch(prompts)]
    other = next((i for i, t in enumerate(tiers) if t != tiers[0]), None)
    assert other is not None, f"the tiny bundle sent 64 real prompts all to tier {tiers[0]}"
    return [(prompts[0], tiers[0]), (prompts[other], tiers[other])]
