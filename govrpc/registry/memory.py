"""``memory://[name]``: an in-process registry, the embedded default.

Servers and clients of one process that name the same URL share one instance
(see ``acquire_registry``); changes reach listeners before the call that made
them returns, in order (``dispatch.InlineDispatcher``).
"""

from __future__ import annotations

import threading
from collections import defaultdict

from govrpc.registry.base import CONSUMERS, PROVIDERS, Raw, RegistryCore, Watch
from govrpc.registry.dispatch import InlineDispatcher
from govrpc.url import URL

__all__ = ["MemoryRegistry"]


class MemoryRegistry(RegistryCore):
    """Registry held in this process's memory."""

    scheme = "memory"

    def __init__(self, url: URL) -> None:
        display = f"memory registry {url}"
        super().__init__(url, display=display, dispatcher=InlineDispatcher(display, wait_limit=60.0))
        self._store_lock = threading.Lock()
        self._store: dict[tuple[str, str], dict[str, URL | str]] = defaultdict(dict)

    def _read(self, service: str, category: str, watch: Watch | None) -> Raw:
        with self._store_lock:
            return dict(self._store.get((service, category), {}))

    def _put(self, service: str, category: str, name: str, data: bytes, *, ephemeral: bool) -> None:
        text = data.decode("utf-8")
        value: URL | str = URL.parse(text) if category in (PROVIDERS, CONSUMERS) else text
        with self._store_lock:
            self._store[(service, category)][name] = value

    def _delete(self, service: str, category: str, name: str) -> None:
        with self._store_lock:
            self._store.get((service, category), {}).pop(name, None)

    def _list_services(self) -> list[str]:
        with self._store_lock:
            return sorted({service for (service, _), nodes in self._store.items() if nodes})

    def close(self) -> None:
        self._withdraw_own()
