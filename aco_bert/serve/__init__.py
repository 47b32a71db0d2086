"""HTTP serving of a router bundle: routing endpoints, metrics, and an OpenAI-compatible routing proxy.

Torch-free: imports the ONNX runtime (via :mod:`aco_bert.runtime.router`), FastAPI, uvicorn and httpx only.
"""

from aco_bert.serve.app import create_app
from aco_bert.serve.config import ServeConfig, UpstreamConfig, load_serve_config


def main(argv: list[str] | None = None) -> int:
    """``aco-bert serve ...`` (the console script imports this package): same as ``python -m aco_bert.serve``."""
    from aco_bert.serve.__main__ import main as _main  # imported lazily: `-m aco_bert.serve` runs it as __main__

    return _main(argv)


__all__ = ["create_app", "main", "ServeConfig", "UpstreamConfig", "load_serve_config"]
