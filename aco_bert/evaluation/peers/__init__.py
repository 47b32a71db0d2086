"""Peer reference routers for the nested report: what a user would otherwise use instead of the neural router.

- :mod:`.base`: :class:`PeerRouter` (``fit(x, success) -> self``, ``predict(x) -> (n, T)`` P(success); NaN
  outcomes masked), :mod:`.registry`: name -> class, :mod:`.crossfit`: the report's held-out/test protocol.
- one module per peer: :mod:`.knn` (cosine kNN, k by leave-one-out), :mod:`.mlp` (shared-hidden-layer MLP),
  :mod:`.mf` (RouteLLM-style matrix factorisation), :mod:`.tfidf_lr` (TF-IDF + LR, on texts);
  :mod:`.gd` is the numpy training loop of the MLP and MF peers.

A new peer: one new module with a ``@register("name")`` :class:`PeerRouter` subclass, and its import line below.
"""

from aco_bert.evaluation.peers.base import PeerRouter
from aco_bert.evaluation.peers.crossfit import cross_fit
from aco_bert.evaluation.peers.registry import make_peer, names, peer_class, register

# the registration: importing a peer's module registers it
from aco_bert.evaluation.peers.knn import KnnPeer
from aco_bert.evaluation.peers.mlp import MLPPeer
from aco_bert.evaluation.peers.mf import MFPeer
from aco_bert.evaluation.peers.tfidf_lr import TfidfLRPeer

__all__ = ["KnnPeer", "MFPeer", "MLPPeer", "PeerRouter", "TfidfLRPeer", "cross_fit", "make_peer", "names",
           "peer_class", "register"]
