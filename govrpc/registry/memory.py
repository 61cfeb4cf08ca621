"""``memory://[name]``: an in-process registry, the embedded default.

Servers and clients of one process that name the same URL share one instance
(see ``acquire_registry``); changes reach listeners synchronously, in order.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

from govrpc.registry.base import (
    PROVIDERS,
    NotifyListener,
    Registry,
    RuleListener,
    category_of,
    check_rule_category,
    check_rule_name,
    safe_call,
)
from govrpc.url import URL

__all__ = ["MemoryRegistry"]

_Key = tuple[str, str]  # (service, category)


class MemoryRegistry(Registry):
    """Registry held in this process's memory."""

    scheme = "memory"

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        self._lock = threading.Lock()
        self._dispatch = threading.RLock()
        self._nodes: dict[_Key, dict[str, object]] = defaultdict(dict)
        self._listeners: dict[_Key, list[Callable[..., None]]] = defaultdict(list)
        self._mine: set[URL] = set()

    # -- helpers -------------------------------------------------------------
    def _snapshot(self, key: _Key) -> object:
        nodes = self._nodes.get(key, {})
        if key[1] in (PROVIDERS, "consumers"):
            return list(nodes.values())
        return dict(nodes)

    def _changed(self, key: _Key) -> None:
        with self._dispatch:
            with self._lock:
                snapshot = self._snapshot(key)
                listeners = list(self._listeners.get(key, ()))
            for listener in listeners:
                safe_call(listener, snapshot if not isinstance(snapshot, (list, dict)) else snapshot.copy())

    def _add_listener(self, key: _Key, listener: Callable[..., None]) -> None:
        with self._dispatch:
            with self._lock:
                self._listeners[key].append(listener)
                snapshot = self._snapshot(key)
            safe_call(listener, snapshot)

    def _remove_listener(self, key: _Key, listener: Callable[..., None]) -> None:
        with self._lock:
            listeners = self._listeners.get(key, [])
            if listener in listeners:
                listeners.remove(listener)

    # -- providers and consumers --------------------------------------------
    def register(self, url: URL) -> None:
        key = (url.path, category_of(url))
        with self._lock:
            self._nodes[key][url.encoded()] = url
            self._mine.add(url)
        self._changed(key)

    def unregister(self, url: URL) -> None:
        key = (url.path, category_of(url))
        with self._lock:
            removed = self._nodes.get(key, {}).pop(url.encoded(), None)
            self._mine.discard(url)
        if removed is not None:
            self._changed(key)

    def subscribe(self, service: str, listener: NotifyListener) -> None:
        self._add_listener((service, PROVIDERS), listener)

    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        self._remove_listener((service, PROVIDERS), listener)

    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        with self._lock:
            return [u for u in self._nodes.get((service, category), {}).values() if isinstance(u, URL)]

    def services(self) -> list[str]:
        with self._lock:
            return sorted({service for (service, _), nodes in self._nodes.items() if nodes})

    # -- rules -----------------------------------------------------------------
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        with self._lock:
            self._nodes[(service, category)][name] = str(text)
        self._changed((service, category))

    def delete_rule(self, service: str, category: str, name: str) -> None:
        check_rule_category(category)
        with self._lock:
            removed = self._nodes.get((service, category), {}).pop(name, None)
        if removed is not None:
            self._changed((service, category))

    def rules(self, service: str, category: str) -> dict[str, str]:
        check_rule_category(category)
        with self._lock:
            return {k: str(v) for k, v in self._nodes.get((service, category), {}).items()}

    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        check_rule_category(category)
        self._add_listener((service, category), listener)

    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._remove_listener((service, category), listener)

    def close(self) -> None:
        for url in list(self._mine):
            self.unregister(url)
