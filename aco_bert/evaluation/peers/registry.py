"""The peer registry: a peer router's name (``--peers knn,mlp``) -> its :class:`~.base.PeerRouter` class.

Same shape as :mod:`aco_bert.policies.registry`: each peer's module registers its class with ``@register``, so a
new peer is one new file plus its import line in :mod:`aco_bert.evaluation.peers`, and an unknown name is refused
where the report's config is read, naming the known ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from aco_bert.evaluation.peers.base import PeerRouter

P = TypeVar("P", bound=type)

_PEERS: dict[str, type] = {}


def register(name: str) -> Callable[[P], P]:
    """Class decorator: ``@register("knn")`` makes the peer name ``knn`` build that class (and sets its ``name``)."""

    def deco(cls: P) -> P:
        if name in _PEERS and _PEERS[name] is not cls:
            raise ValueError(f"peer router {name!r} is already registered ({_PEERS[name].__name__})")
        cls.name = name
        _PEERS[name] = cls
        return cls

    return deco


def names() -> tuple[str, ...]:
    """Every registered peer name."""
    return tuple(_PEERS)


def peer_class(name: str) -> type:
    """The class registered as ``name`` (ValueError naming the known ones otherwise)."""
    try:
        return _PEERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown peer router {name!r}; expected one of {names()}") from None


def make_peer(name: str, seed: int = 0) -> "PeerRouter":
    """A fresh, unfitted peer of that name with its default knobs and ``seed``."""
    return peer_class(name)(seed=seed)
