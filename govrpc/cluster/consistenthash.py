"""Consistent hashing: the same arguments go to the same provider while it lives.

Each provider owns ``hash.nodes`` points (default 160) on a ring of 2**32,
placed by the MD5 of its address, so the ring depends only on who is there:
when one of N providers leaves, only the keys it owned (about 1/N) move, and
no other key does. The key of a call is made of the arguments at the indexes
in ``hash.arguments`` (default ``0``, the first). ``hash.nodes`` is at most
``MAX_NODES`` (10,000): the ring is built on a calling thread, and a huge one
would stall every call that needs it.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Sequence

from govrpc.cluster.loadbalance import LoadBalancer, WeightTable, _TableCache
from govrpc.exceptions import ConfigurationError
from govrpc.invocation import Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["ConsistentHashLoadBalancer", "MAX_NODES", "check_hash_arguments", "parse_hash_arguments"]

MAX_NODES = 10_000


def parse_hash_arguments(text: str) -> tuple[int, ...]:
    """``"0,2"`` -> ``(0, 2)``; raises ``ConfigurationError`` for anything but indexes >= 0."""
    indexes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigurationError(
                f"hash.arguments={text!r}: {part!r} is not an argument index (0 is the first argument)")
        indexes.append(int(part))
    if len(set(indexes)) != len(indexes):
        raise ConfigurationError(f"hash.arguments={text!r} names an argument twice")
    return tuple(indexes)


def check_hash_arguments(consumer: URL, providers: Sequence[URL]) -> None:
    """Refuse ``hash.arguments`` that name an argument the providers' methods do not have.

    Providers publish each method's positional arity as ``{method}.args``; a
    method that consistenthash balances (for the whole service or per method)
    must have every chosen index. Raises ``ConfigurationError`` naming the method.
    """
    service_wide = consumer.get("loadbalance") == "consistenthash"
    for provider in providers:
        for method in provider.methods:
            if not (service_wide or consumer.get(f"{method}.loadbalance") == "consistenthash"):
                continue
            arity = provider.get(f"{method}.args")
            if arity is None or not arity.isdigit():
                continue
            text = consumer.get(f"{method}.hash.arguments") or consumer.get("hash.arguments") or "0"
            missing = [i for i in parse_hash_arguments(text) if i >= int(arity)]
            if missing and int(arity) > 0:
                raise ConfigurationError(
                    f"hash.arguments={text} for {consumer.path}.{method}: the method takes {arity} positional "
                    f"argument(s) (provider {provider.address}), so index {missing[0]} does not exist")


def _points(address: str, nodes: int) -> list[int]:
    """``nodes`` ring positions for ``address``: four 32-bit points per MD5 digest (as Dubbo)."""
    points: list[int] = []
    for i in range((nodes + 3) // 4):
        digest = hashlib.md5(f"{address}-{i}".encode()).digest()
        for k in range(4):
            if len(points) < nodes:
                points.append(int.from_bytes(digest[4 * k:4 * k + 4], "little"))
    return points


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.md5(key.encode()).digest()[:4], "little")


class _Ring(WeightTable):
    __slots__ = ("points", "owners")
    nodes = 160

    def __init__(self, invokers: Sequence[Invoker]) -> None:
        super().__init__(invokers)
        ring = sorted((point, invoker.url.address, index)
                      for index, invoker in enumerate(invokers)
                      for point in _points(invoker.url.address, self.nodes))
        self.points = [p for p, _, _ in ring]
        self.owners = [invokers[i] for _, _, i in ring]

    def fresh(self) -> bool:
        return True  # positions do not depend on weights, so warm-up changes nothing

    def owner(self, point: int) -> Invoker:
        index = bisect.bisect_left(self.points, point)
        return self.owners[index if index < len(self.points) else 0]


class ConsistentHashLoadBalancer(LoadBalancer):
    """Ring of virtual nodes keyed on the chosen arguments (``hash.arguments``, ``hash.nodes``)."""

    ARGUMENTS = Option("hash.arguments", parse_hash_arguments, (0,), "indexes of the arguments hashed",
                       "argument indexes such as 0 or 0,2")
    NODES = Option.integer("hash.nodes", 160, low=1, high=MAX_NODES, doc="virtual nodes per provider")
    options = (ARGUMENTS, NODES)

    def __init__(self, url: URL | None = None) -> None:
        super().__init__(url)
        self.arguments: tuple[int, ...] = self.ARGUMENTS.read(url)
        nodes: int = self.NODES.read(url)
        ring_class = type("_Ring", (_Ring,), {"nodes": nodes, "__slots__": ()})
        self._tables: _TableCache[_Ring] = _TableCache(ring_class)
        self._width = max(self.arguments) + 1

    def key(self, invocation: Invocation) -> str:
        args = invocation.args
        if not args:  # a method without arguments: all its calls share one key
            return ""
        if len(args) < self._width:
            raise ConfigurationError(
                f"{invocation}: consistenthash hashes argument(s) {list(self.arguments)} "
                f"(hash.arguments) but the call passes {len(args)} positional argument(s)",
                invocation=invocation)
        if len(self.arguments) == 1:
            return str(args[self.arguments[0]])
        return ",".join(str(args[i]) for i in self.arguments)

    def select(self, invokers: Sequence[Invoker], invocation: Invocation) -> Invoker:
        ring = self._tables.get(invokers)
        return ring.owner(key_hash(self.key(invocation)))
