"""The ``Registry`` interface and how a registry URL becomes an instance.

Layout shared by every registry (DESIGN.md section 4)::

    {service}/providers/{encoded provider URL}    live providers (gone with their process)
    {service}/consumers/{encoded consumer URL}    live consumers
    {service}/configurators/{name}                overrides, persistent text
    {service}/routers/{name}                      route rules, persistent text
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Callable, ClassVar

from govrpc.exceptions import ConfigurationError
from govrpc.url import CONSUMER, URL

__all__ = [
    "CATEGORIES",
    "RULE_CATEGORIES",
    "NotifyListener",
    "Registry",
    "RuleListener",
    "acquire_registry",
    "release_registry",
]

log = logging.getLogger("govrpc.registry")

PROVIDERS, CONSUMERS, CONFIGURATORS, ROUTERS = "providers", "consumers", "configurators", "routers"
CATEGORIES = (PROVIDERS, CONSUMERS, CONFIGURATORS, ROUTERS)
RULE_CATEGORIES = (CONFIGURATORS, ROUTERS)

NotifyListener = Callable[[list[URL]], None]
"""Receives the whole current list of provider URLs of a service, after every change."""
RuleListener = Callable[[dict[str, str]], None]
"""Receives every rule of one category of a service (name -> text), after every change."""


def category_of(url: URL) -> str:
    return CONSUMERS if url.scheme == CONSUMER else PROVIDERS


def check_rule_category(category: str) -> None:
    if category not in RULE_CATEGORIES:
        raise ConfigurationError(f"rule category {category!r} is not one of {', '.join(RULE_CATEGORIES)}")


def check_rule_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise ConfigurationError(f"invalid rule name {name!r}")


class Registry(abc.ABC):
    """Where providers announce themselves and consumers find them (group ``govrpc.registry``).

    Contract: one instance per registry URL per process, shared by its servers and
    clients; thread-safe; listeners are called with the full current list at once
    on subscribe and then after each change, once per change, in order, never
    while the registry holds a lock; a listener that raises is logged and kept.
    """

    scheme: ClassVar[str] = ""

    def __init__(self, url: URL) -> None:
        self.url = url

    # -- providers and consumers ------------------------------------------
    @abc.abstractmethod
    def register(self, url: URL) -> None:
        """Announce a provider URL (or a ``consumer://`` URL) while this process lives."""

    @abc.abstractmethod
    def unregister(self, url: URL) -> None:
        """Withdraw a URL registered before; unknown URLs are ignored."""

    @abc.abstractmethod
    def subscribe(self, service: str, listener: NotifyListener) -> None:
        """Call ``listener`` with the provider list of ``service`` now and on every change."""

    @abc.abstractmethod
    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        """Stop calling ``listener``."""

    @abc.abstractmethod
    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        """The URLs registered now under ``service``'s ``providers`` or ``consumers``."""

    @abc.abstractmethod
    def services(self) -> list[str]:
        """Every service name the registry knows, sorted."""

    # -- rules (configurators and routers) ----------------------------------
    @abc.abstractmethod
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        """Store rule ``name`` (persistent) under ``service``'s ``category``."""

    @abc.abstractmethod
    def delete_rule(self, service: str, category: str, name: str) -> None:
        """Remove a rule; an unknown name is ignored."""

    @abc.abstractmethod
    def rules(self, service: str, category: str) -> dict[str, str]:
        """Every rule of ``service``'s ``category``: name -> text."""

    @abc.abstractmethod
    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        """Call ``listener`` with the rules now and after every change."""

    @abc.abstractmethod
    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        """Stop calling ``listener``."""

    def close(self) -> None:
        """Withdraw what this process registered and release connections."""

    @property
    def propagation_delay(self) -> float:
        """Seconds a change may take to reach another process (shutdown waits this long)."""
        return 0.0

    @classmethod
    def parse_address(cls, address: str) -> URL:
        """The URL for a registry address; registries whose addresses are not plain URLs
        (several hosts, credentials) override this. Raises ``ConfigurationError``."""
        return URL.parse(address)


def safe_call(listener: Callable[..., None], *args: object) -> None:
    """Run a listener; an exception is logged, never propagated into the registry."""
    try:
        listener(*args)
    except Exception:  # noqa: BLE001 - a listener's bug must not stop the registry
        log.exception("registry listener %r failed", listener)


# -- one shared instance per registry URL per process --------------------------

_instances: dict[str, tuple[Registry, int]] = {}
_instances_lock = threading.Lock()


def _scheme_of(address: str | None) -> tuple[str, str]:
    if address is None or address == "":
        address = "memory://"
    if not isinstance(address, str) or "://" not in address:
        raise ConfigurationError(
            f"registry address {address!r} is not a URL; use memory://, file:///dir or zookeeper://host:port")
    scheme = address.split("://", 1)[0]
    if not scheme:
        raise ConfigurationError(f"registry address {address!r} has no scheme")
    return address, scheme


def acquire_registry(address: str | Registry | None) -> Registry:
    """The process's registry for ``address`` (created on first use), counted for release."""
    from govrpc.extension import get_extension

    if isinstance(address, Registry):
        return address
    address, scheme = _scheme_of(address)
    cls = get_extension("govrpc.registry", scheme)
    url = cls.parse_address(address)
    key = str(url)
    with _instances_lock:
        entry = _instances.get(key)
        if entry is not None:
            _instances[key] = (entry[0], entry[1] + 1)
            return entry[0]
    registry = cls(url)
    with _instances_lock:
        entry = _instances.get(key)
        if entry is not None:  # lost a race: keep the first one
            _instances[key] = (entry[0], entry[1] + 1)
            registry.close()
            return entry[0]
        _instances[key] = (registry, 1)
    return registry


def release_registry(registry: Registry) -> None:
    """Give back a registry from ``acquire_registry``; the last release closes it."""
    with _instances_lock:
        for key, (instance, count) in list(_instances.items()):
            if instance is registry:
                if count > 1:
                    _instances[key] = (instance, count - 1)
                    return
                del _instances[key]
                break
        else:
            return  # not shared: owned by the caller
    registry.close()
