"""``govrpc.Admin``: what an operator sees and changes in a running system.

Reads the registry (services, providers, consumers) and writes the persistent
rule nodes (``configurators``, ``routers``) that every process watches. Works
the same on every registry.
"""

from __future__ import annotations

from typing import Any

from govrpc.registry.base import CONSUMERS, PROVIDERS, Registry, acquire_registry, release_registry
from govrpc.url import URL

__all__ = ["Admin"]


class Admin:
    """Operator's handle on a registry: ``Admin("zookeeper://127.0.0.1:2181")``."""

    def __init__(self, registry: str | Registry | None = None) -> None:
        self._owned = not isinstance(registry, Registry)
        self.registry = acquire_registry(registry)

    def services(self) -> list[str]:
        """Every service name in the registry, sorted."""
        return self.registry.services()

    def providers(self, service: str) -> list[URL]:
        """The live provider URLs of ``service``."""
        return sorted(self.registry.lookup(service, PROVIDERS), key=str)

    def consumers(self, service: str) -> list[URL]:
        """The live consumer URLs of ``service``."""
        return sorted(self.registry.lookup(service, CONSUMERS), key=str)

    def rules(self, service: str, category: str) -> dict[str, str]:
        """The stored rules of ``service`` in ``category`` (``configurators`` or ``routers``)."""
        return self.registry.rules(service, category)

    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        """Store a rule as it is (callers that know the rule's grammar validate it first)."""
        self.registry.put_rule(service, category, name, text)

    def delete_rule(self, service: str, category: str, name: str) -> None:
        self.registry.delete_rule(service, category, name)

    def close(self) -> None:
        if self._owned:
            release_registry(self.registry)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
