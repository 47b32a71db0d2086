"""The peer registry: a peer router's name (``--peers knn,mlp``) -> its :class:`~.base.PeerRouter` class.

Same shape as :mod:`aco_bert.policies.registry`: each peer's module registers its class with ``@register``, so a
new peer is one new file plus its import line in :mod:`aco_bert.evaluation.peers`, and an unknown name is refused
where the report's config is read, naming the known ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from aco_bert.registry import Registry

if TYPE_CHECKING:
    from aco_bert.evaluation.peers.base import PeerRouter

REGISTRY = Registry("peer router", set_name=True)  # a peer's ``name`` is its registered name
register: Callable[[str], Callable[[type], type]] = REGISTRY.register  # ``@register("knn")``
names = REGISTRY.names  # every registered peer name
peer_class = REGISTRY.get  # the class registered as a name (ValueError naming the known ones otherwise)


def make_peer(name: str, seed: int = 0) -> "PeerRouter":
    """A fresh, unfitted peer of that name with its default knobs and ``seed``."""
    return peer_class(name)(seed=seed)
