"""``base.RegistryCore`` with a test double backend: the connection-generation rule of repair."""

from __future__ import annotations

import threading
from typing import Any

from govrpc.registry.base import Raw, RegistryCore, Watch
from govrpc.registry.dispatch import ThreadDispatcher
from govrpc.url import URL


class SlowBackend(RegistryCore):
    """Reads block until the test lets them finish, so a reconnect can land in the middle."""

    scheme = "fake"
    notify_own_writes = False

    def __init__(self) -> None:
        super().__init__(URL("fake", "", 0), display="fake registry",
                         dispatcher=ThreadDispatcher("fake registry", 10, "fake-dispatch"))
        self.entries: dict[str, str] = {}
        self.reading = threading.Event()
        self.finish = threading.Event()
        self.finish.set()
        self.reads = 0

    def _read(self, service: str, category: str, watch: Watch | None) -> Raw:
        self.reads += 1
        self.reading.set()
        assert self.finish.wait(10)
        return dict(self.entries)

    def _put(self, service: str, category: str, name: str, data: bytes, *, ephemeral: bool) -> None:
        self.entries[name] = data.decode()

    def _delete(self, service: str, category: str, name: str) -> None:
        self.entries.pop(name, None)

    def _list_services(self) -> list[str]:
        return []

    def close(self) -> None:
        self._closing.set()
        self._dispatcher.close(join_timeout=5)


def test_a_read_begun_before_a_reconnect_leaves_its_watch_dirty() -> None:
    registry = SlowBackend()
    try:
        seen: list[Any] = []
        registry.subscribe("svc.A", seen.append)
        watch = registry._watches[("svc.A", "providers")]
        assert not registry._dirty(watch) and registry._dirty_watches() == []

        registry.finish.clear()
        registry.reading.clear()
        registry._schedule_refresh(watch)  # a watch event: a read on the old connection starts ...
        assert registry.reading.wait(10)
        registry._generation += 1  # ... a reconnect lands while it runs (what kazoo's state thread does) ...
        registry.finish.set()  # ... and the read ends successfully, having armed nothing on the new connection
        registry._dispatcher.call(lambda: None, "waiting for the read")

        assert registry._dirty(watch), "the re-read after the reconnect would be lost"
        assert registry._dirty_watches() == [watch]
        registry._dispatcher.call(lambda: registry._refresh(registry._dirty_watches()), "repair")
        assert not registry._dirty(watch)
    finally:
        registry.close()
