"""The torch-free routing runtime: ``Router.load(bundle).route(prompt)``."""

from aco_bert.runtime.router import Router

__all__ = ["Router"]
