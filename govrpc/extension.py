"""Find strategies by name through entry points.

Groups: ``govrpc.registry``, ``govrpc.cluster``, ``govrpc.loadbalance``,
``govrpc.router``, ``govrpc.filter``, ``govrpc.serializer``, ``govrpc.limiter``.
govrpc's own built-ins are declared in ``setup.cfg`` exactly as a third party
declares theirs. Entry points are read once per group and loaded lazily by name.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from govrpc.exceptions import ConfigurationError, ExtensionNotFoundError

__all__ = ["GROUPS", "ExtensionLoader", "get_extension", "extension_names", "loader", "reset_cache"]

GROUPS = (
    "govrpc.registry",
    "govrpc.cluster",
    "govrpc.loadbalance",
    "govrpc.router",
    "govrpc.filter",
    "govrpc.serializer",
    "govrpc.limiter",
)


class ExtensionLoader:
    """The extensions of one entry-point group: ``names()`` without importing, ``get(name)`` lazily."""

    def __init__(self, group: str) -> None:
        if group not in GROUPS:
            raise ConfigurationError(f"unknown extension group {group!r}; groups: {', '.join(GROUPS)}")
        self.group = group
        self._lock = threading.Lock()
        self._points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Any] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._points is None:
            with self._lock:
                if self._points is None:
                    self._points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._points

    def names(self) -> list[str]:
        return sorted(self._entry_points())

    def get(self, name: str) -> Any:
        """The object registered as ``name``; raises ``ExtensionNotFoundError`` listing what exists."""
        try:
            return self._loaded[name]
        except KeyError:
            pass
        point = self._entry_points().get(name)
        if point is None:
            installed = ", ".join(self.names()) or "none"
            raise ExtensionNotFoundError(
                f"no {self.group} extension named {name!r}; installed: {installed}")
        try:
            obj = point.load()
        except Exception as exc:
            raise ExtensionNotFoundError(
                f"{self.group} extension {name!r} ({point.value}) failed to load: {exc}") from exc
        self._loaded[name] = obj
        return obj


_loaders: dict[str, ExtensionLoader] = {}
_loaders_lock = threading.Lock()


def loader(group: str) -> ExtensionLoader:
    try:
        return _loaders[group]
    except KeyError:
        with _loaders_lock:
            return _loaders.setdefault(group, ExtensionLoader(group))


def get_extension(group: str, name: str) -> Any:
    return loader(group).get(name)


def extension_names(group: str) -> list[str]:
    return loader(group).names()


def reset_cache() -> None:
    """Forget what was read, so newly installed distributions are seen (tests, plugins)."""
    with _loaders_lock:
        _loaders.clear()
