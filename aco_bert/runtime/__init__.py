"""The torch-free routing runtime: ``Router.load(bundle).route(prompt)``.

:mod:`.router` (load, encode, forward, route, escalate), :mod:`.layer` (the decision layer after the encoder),
:mod:`.inputs` (request validation, the tokenised batch).
"""

from aco_bert.runtime.router import Router

__all__ = ["Router"]
