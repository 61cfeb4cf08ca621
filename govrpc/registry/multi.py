"""Several registries read as one: ``Client(registry=[url1, url2])`` (one ZooKeeper per machine room).

``MultiRegistry`` subscribes to every member and hands each listener the union of
their provider lists (the first, *preferred*, registry's URLs first, duplicates
once), so a consumer sees the providers of every room and keeps those of the
rooms whose registry is still there when one goes away (each member keeps its own
last list through an outage, as any registry does). Rules are merged the same way
(the preferred registry's rule wins a name both hold); rules are written to the
preferred registry only; a consumer registers in every member. Locality (which
room to call) is the zone router's business (``govrpc.router.zone``), as in
Dubbo's multi-registry zone-aware cluster.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence

from govrpc.exceptions import ConfigurationError, RegistryError
from govrpc.registry.base import (
    PROVIDERS,
    NotifyListener,
    Registry,
    RuleListener,
    acquire_registry,
    release_registry,
    safe_call,
)
from govrpc.url import URL

__all__ = ["MultiRegistry", "acquire_multi_registry", "registry_states"]

log = logging.getLogger("govrpc.registry")


class MultiRegistry(Registry):
    """The union of ``members`` (``Registry`` objects; the first is preferred). Thread-safe."""

    scheme = "multi"

    def __init__(self, members: Sequence[Registry]) -> None:
        if not members:
            raise ConfigurationError("a list of registries needs at least one registry")
        super().__init__(URL("multi", "", 0, "", {"members": ",".join(str(m.url) for m in members)}))
        self.members = tuple(members)
        self._lock = threading.Lock()
        # (service, listener id) -> per-member latest list / rules, and the member callbacks
        self._lists: dict[tuple[str, int], list[Any]] = {}
        self._hooks: dict[tuple[str, str, int], list[Callable[..., None]]] = {}

    # -- providers -------------------------------------------------------------------
    def register(self, url: URL) -> None:
        for member in self.members:
            member.register(url)

    def unregister(self, url: URL) -> None:
        for member in self.members:
            try:
                member.unregister(url)
            except RegistryError:
                log.warning("cannot deregister %s from %s", url, member.url)

    def _merged(self, key: tuple[str, int], index: int, value: Any, merge: Callable[[list[Any]], Any],
                listener: Callable[[Any], None]) -> None:
        with self._lock:
            slots = self._lists.get(key)
            if slots is None:
                return
            slots[index] = value
            merged = merge([s for s in slots if s is not None])
        safe_call(listener, merged)

    def subscribe(self, service: str, listener: NotifyListener) -> None:
        self._watch(service, PROVIDERS, listener, _union, lambda m, cb: m.subscribe(service, cb))

    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        self._unwatch(service, PROVIDERS, listener, lambda m, cb: m.unsubscribe(service, cb))

    def _watch(self, service: str, category: str, listener: Callable[[Any], None],
               merge: Callable[[list[Any]], Any], attach: Callable[[Registry, Callable[..., None]], None]) -> None:
        key = (f"{category}/{service}", id(listener))
        with self._lock:
            self._lists[key] = [None] * len(self.members)
        hooks = []
        for index, member in enumerate(self.members):
            def hook(value: Any, index: int = index) -> None:
                self._merged(key, index, value, merge, listener)

            hooks.append(hook)
            attach(member, hook)
        self._hooks[(category, service, id(listener))] = hooks

    def _unwatch(self, service: str, category: str, listener: Callable[[Any], None],
                 detach: Callable[[Registry, Callable[..., None]], None]) -> None:
        hooks = self._hooks.pop((category, service, id(listener)), None)
        with self._lock:
            self._lists.pop((f"{category}/{service}", id(listener)), None)
        for member, hook in zip(self.members, hooks or ()):
            detach(member, hook)

    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        found: list[list[URL]] = []
        for member in self.members:
            try:
                found.append(member.lookup(service, category))
            except RegistryError as exc:
                log.warning("%s: %s", member.url, exc)
        return _union(found)

    def services(self) -> list[str]:
        names: set[str] = set()
        for member in self.members:
            try:
                names.update(member.services())
            except RegistryError as exc:
                log.warning("%s: %s", member.url, exc)
        return sorted(names)

    # -- rules: read from all, written to the preferred one ----------------------------------
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        self.members[0].put_rule(service, category, name, text)

    def delete_rule(self, service: str, category: str, name: str) -> None:
        self.members[0].delete_rule(service, category, name)

    def rules(self, service: str, category: str) -> dict[str, str]:
        return _rules_union([m.rules(service, category) for m in self.members])

    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._watch(service, category, listener, _rules_union,
                    lambda m, cb: m.watch_rules(service, category, cb))

    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._unwatch(service, category, listener, lambda m, cb: m.unwatch_rules(service, category, cb))

    @property
    def propagation_delay(self) -> float:
        return max(m.propagation_delay for m in self.members)

    def check_consumer_ready(self) -> None:
        errors = []
        for member in self.members:
            try:
                member.check_consumer_ready()
                return
            except RegistryError as exc:
                errors.append(exc)
        raise errors[0]

    def close(self) -> None:
        for member in self.members:
            release_registry(member)


def _union(lists: list[list[URL]]) -> list[URL]:
    seen: dict[URL, None] = {}
    for urls in lists:
        for url in urls:
            seen.setdefault(url, None)
    return list(seen)


def _rules_union(rule_sets: list[dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for rules in rule_sets:
        for name, text in rules.items():
            merged.setdefault(name, text)
    return merged


def acquire_multi_registry(addresses: Sequence[str | Registry]) -> MultiRegistry:
    """A ``MultiRegistry`` over the process's registries for ``addresses`` (the first preferred).

    Raises ``ConfigurationError`` for an empty list or one naming a registry twice.
    """
    if isinstance(addresses, (str, bytes)) or not isinstance(addresses, Sequence) or not addresses:
        raise ConfigurationError(f"registry must be a URL, a Registry or a non-empty list of them, not {addresses!r}")
    members: list[Registry] = []
    try:
        for address in addresses:
            member = acquire_registry(address, provider=True)
            if any(m is member for m in members):
                release_registry(member)
                raise ConfigurationError(f"registry {address!r} is listed twice")
            members.append(member)
    except BaseException:
        for member in members:
            release_registry(member)
        raise
    multi = MultiRegistry(members)
    try:
        multi.check_consumer_ready()
    except BaseException:
        multi.close()
        raise
    return multi


def registry_states(registry: Registry) -> dict[str, bool]:
    """Registry URL -> whether its session is up (a ZooKeeper registry's connection; others: True)."""
    members = registry.members if isinstance(registry, MultiRegistry) else (registry,)
    states = {}
    for member in members:
        client = getattr(member, "client", None)  # the ZooKeeper registry's kazoo client
        states[str(member.url)] = bool(getattr(client, "connected", True))
    return states
