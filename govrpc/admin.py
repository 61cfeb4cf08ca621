"""``govrpc.Admin``: what an operator sees and changes in a running system.

Reads the registry (services, providers, consumers) and writes the persistent
rule nodes (``configurators``, ``routers``) that every process watches. Works
the same on every registry.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from govrpc.configurator import parse_configurator
from govrpc.invocation import Invocation
from govrpc.registry.base import (
    CONFIGURATORS,
    CONSUMERS,
    PROVIDERS,
    ROUTERS,
    Registry,
    acquire_registry,
    release_registry,
)
from govrpc.router.chain import RouteStep, compile_rule, explain_route
from govrpc.url import CONSUMER, PROVIDER_SCHEMES, URL, ServiceKey

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
        """Check and store a rule: route rules (``routers``) and overrides (``configurators``).

        Raises ``RuleError`` naming the position of the mistake; nothing is stored then.
        """
        self.check_rule(category, text, name)
        self.registry.put_rule(service, category, name, text)

    def check_rule(self, category: str, text: str, name: str = "") -> None:
        """Parse a rule as ``put_rule`` would, storing nothing; raises ``RuleError`` with the position."""
        if category == ROUTERS:
            compile_rule(text, name)
        elif category == CONFIGURATORS:
            parse_configurator(text, name)

    def set_override(self, service: str, name: str, text: str) -> None:
        """Check and store configurator ``name`` of ``service`` (see ``govrpc.configurator``)."""
        self.put_rule(service, CONFIGURATORS, name, text)

    # -- route rules -----------------------------------------------------------------
    def add_route(self, service: str, name: str, text: str) -> None:
        """Check and store route rule ``name`` of ``service`` (replacing one of that name).

        Raises ``RuleError`` naming the position of the mistake; nothing is stored then.
        """
        self.put_rule(service, ROUTERS, name, text)

    def routes(self, service: str) -> dict[str, str]:
        """The route rules of ``service`` stored in the registry: name -> text."""
        return self.registry.rules(service, ROUTERS)

    def remove_route(self, service: str, name: str) -> None:
        """Delete route rule ``name`` of ``service`` (an unknown name is ignored)."""
        self.registry.delete_rule(service, ROUTERS, name)

    def explain_route(self, service: str, method: str, *, application: str = "govrpc-consumer",
                      host: str = "127.0.0.1", args: Sequence[Any] = (),
                      attachments: Mapping[str, str] | None = None,
                      consumer: Mapping[str, str] | None = None,
                      rules: Mapping[str, str] | None = None) -> list[RouteStep]:
        """Dry run: for a call of ``method`` from this consumer, what each router keeps and why.

        ``rules`` (name -> text) replaces the stored route rules: what a rule would do before it is saved.
        """
        params = {"application": application, **(consumer or {})}
        consumer_url = URL(CONSUMER, host, 0, service, params)
        key = ServiceKey(service, params.get("version", ""), params.get("group", ""))
        providers = [u for u in self.registry.lookup(service, PROVIDERS)
                     if u.scheme in PROVIDER_SCHEMES and (key.matches(u) or not (key.version or key.group))]
        invocation = Invocation(key, method, tuple(args), {}, dict(attachments or {}))
        stored = self.routes(service) if rules is None else dict(rules)
        return explain_route(consumer_url, sorted(providers, key=str), stored, invocation)

    def delete_rule(self, service: str, category: str, name: str) -> None:
        self.registry.delete_rule(service, category, name)

    def close(self) -> None:
        if self._owned:
            release_registry(self.registry)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
