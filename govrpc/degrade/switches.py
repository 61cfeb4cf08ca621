"""Business switches: live values application code reads, flipped by operators.

``govrpc.switch("recommendations")`` is a boolean the code reads as often as it
likes (``if govrpc.switch("recommendations"): ...``): a read is one lookup in a
process-local dict, never a registry round trip. ``@govrpc.fallback(switch=...,
to=...)`` runs a local alternative while the switch is off. A switch may hold any
JSON value (``.value``): the seed's grey decorator, a strategy chosen by environment,
is a switch whose value names the strategy (``govrpc.switch("ranking", "v1").value``).

Operators write them with ``Admin.set_switch(name, value)`` or ``govrpc switch NAME
VALUE``: registry node ``govrpc.switches/switches/{name}``, text = the JSON value.
Every ``Client`` watches its registry's switches (``watch_switches(registry)`` does
it for a process without one); a change reaches the process within the registry's
propagation delay. A node whose text is not JSON keeps the switch's last good value
(logged).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from typing import Any, Callable, Mapping, TypeVar

from govrpc.exceptions import ConfigurationError

__all__ = ["SWITCHES", "SWITCH_SERVICE", "Switch", "SwitchWatcher", "check_switch", "fallback", "switch",
           "switch_text", "watch_switches"]

log = logging.getLogger("govrpc.degrade")

SWITCH_SERVICE = "govrpc.switches"
"""The registry "service" whose rule category ``switches`` holds every switch."""
SWITCHES = "switches"
_NAME = re.compile(r"^[A-Za-z_][\w.\-]{0,127}$")

F = TypeVar("F", bound=Callable[..., Any])

_values: Mapping[str, Any] = {}  # swapped whole: readers never lock
_watchers: list[SwitchWatcher] = []
_lock = threading.Lock()


def check_switch(name: str) -> str:
    """``name`` if it can name a switch (letters, digits, ``_ . -``), else ``ConfigurationError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(f"switch name {name!r} must start with a letter or _ and hold only "
                                 f"letters, digits, '_', '.', '-' (at most 128)")
    return name


def switch_text(value: Any) -> str:
    """``value`` as a switch node's text (JSON), or ``ConfigurationError``."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"a switch holds a JSON value, not {value!r}: {exc}") from None


class Switch:
    """A live switch: ``bool(s)`` for on/off, ``s.value`` for its value (``default`` until set)."""

    __slots__ = ("name", "default")

    def __init__(self, name: str, default: Any = True) -> None:
        self.name = check_switch(name)
        self.default = default

    @property
    def value(self) -> Any:
        return _values.get(self.name, self.default)

    def __bool__(self) -> bool:
        return bool(_values.get(self.name, self.default))

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, Switch) else other)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<Switch {self.name}={self.value!r}>"


def switch(name: str, default: Any = True) -> Switch:
    """The live switch ``name`` (on by default until an operator sets it)."""
    return Switch(name, default)


def fallback(*, switch: str | Switch, to: Callable[..., Any]) -> Callable[[F], F]:
    """Run ``to`` (same arguments) instead of the decorated function while ``switch`` is off."""
    live = switch if isinstance(switch, Switch) else Switch(switch)
    if not callable(to):
        raise ConfigurationError(f"fallback(to=...) must be callable, not {to!r}")

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if live:
                return fn(*args, **kwargs)
            return to(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class SwitchWatcher:
    """The switches one registry holds, kept in this process's table while it is open."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.values: dict[str, Any] = {}
        self.uses = 0

    def update(self, texts: Mapping[str, str]) -> None:
        values: dict[str, Any] = {}
        for name, text in texts.items():
            try:
                values[name] = json.loads(text)
            except ValueError as exc:
                if name in self.values:
                    values[name] = self.values[name]
                    log.error("switch %s: %r is not JSON (%s); keeping its last good value %r",
                              name, text, exc, self.values[name])
                else:
                    log.error("switch %s: %r is not JSON (%s); ignored", name, text, exc)
        self.values = values
        _rebuild()

    def close(self) -> None:
        with _lock:
            self.uses -= 1
            if self.uses > 0:
                return
            if self in _watchers:
                _watchers.remove(self)
        try:
            self.registry.unwatch_rules(SWITCH_SERVICE, SWITCHES, self.update)
        except Exception:  # noqa: BLE001 - a registry already closed
            log.debug("cannot unwatch switches", exc_info=True)
        self.values = {}
        _rebuild()


def _rebuild() -> None:
    global _values
    merged: dict[str, Any] = {}
    for watcher in list(_watchers):
        merged.update(watcher.values)
    _values = merged


def watch_switches(registry: Any) -> SwitchWatcher:
    """Keep this process's switches current from ``registry`` until the watcher is closed
    (shared per registry: each call needs one ``close``)."""
    with _lock:
        watcher = next((w for w in _watchers if w.registry is registry), None)
        if watcher is None:
            watcher = SwitchWatcher(registry)
            _watchers.append(watcher)
            fresh = True
        else:
            fresh = False
        watcher.uses += 1
    if fresh:
        registry.watch_rules(SWITCH_SERVICE, SWITCHES, watcher.update)
    return watcher
