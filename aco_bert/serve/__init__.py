"""HTTP serving of a router bundle: routing endpoints, metrics, and an OpenAI-compatible routing proxy.

Torch-free: imports the ONNX runtime (via :mod:`aco_bert.runtime`), FastAPI, uvicorn and httpx only.
"""

from aco_bert.serve.app import create_app
from aco_bert.serve.config import ServeConfig, UpstreamConfig, load_serve_config

__all__ = ["create_app", "ServeConfig", "UpstreamConfig", "load_serve_config"]
