"""The ``Registry`` interface and how a registry URL becomes an instance.

Layout shared by every registry (DESIGN.md section 4)::

    {service}/providers/{encoded provider URL}    live providers (gone with their process)
    {service}/consumers/{encoded consumer URL}    live consumers
    {service}/configurators/{name}                overrides, persistent text
    {service}/routers/{name}                      route rules, persistent text
    {service}/breakers/{consumer}                 a consumer's open breakers (govrpc.degrade.publish)
    govrpc.switches/switches/{name}               business switches (govrpc.degrade.switches)
    {service}/history/{category}.{name}.v{n}      versions of rules (govrpc.console.history)
    {service}/quota/{address}[-{method}]          cluster quota leases (govrpc.flowctl.pool)
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import uuid
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, Union

from govrpc.exceptions import ConfigurationError, RegistryError, RegistryUnreachableError
from govrpc.registry.dispatch import Dispatcher
from govrpc.registry.protection import EmptyPushGuard
from govrpc.url import CONSUMER, PROVIDER_SCHEMES, URL

__all__ = [
    "CATEGORIES",
    "MONITORS",
    "RULE_CATEGORIES",
    "NotifyListener",
    "Registry",
    "RegistryCore",
    "RuleListener",
    "SubscriptionStatus",
    "acquire_registry",
    "atomic_write",
    "release_registry",
]

log = logging.getLogger("govrpc.registry")

PROVIDERS, CONSUMERS, CONFIGURATORS, ROUTERS = "providers", "consumers", "configurators", "routers"
MONITORS = "monitors"  # health summaries providers publish (govrpc.monitor.health): rules of their own kind
CATEGORIES = (PROVIDERS, CONSUMERS, CONFIGURATORS, ROUTERS)
SWITCHES, BREAKERS = "switches", "breakers"  # govrpc.degrade: business switches, published breaker states
HISTORY = "history"  # govrpc.console: earlier versions of rules, who wrote them and when
QUOTA = "quota"  # govrpc.flowctl.pool: each provider instance's lease of a cluster quota
RULE_CATEGORIES = (CONFIGURATORS, ROUTERS, SWITCHES, BREAKERS, HISTORY, QUOTA, MONITORS)

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


WARNED_KEPT = 4096
"""Garbage entries remembered (each warned about once) per registry; past it the record starts over."""

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

    def check_consumer_ready(self) -> None:
        """Raise ``RegistryUnreachableError`` if a consumer could find nothing here (none by default)."""

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


def positive_seconds(registry: str, name: str, raw: str, *, allow_zero: bool = False) -> float:
    """``raw`` as a finite number of seconds (> 0, or >= 0 with ``allow_zero``); raises naming the option."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{registry}: {name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "a positive" if not allow_zero else "a finite, non-negative"
        raise ConfigurationError(f"{registry}: {name}={raw!r} must be {kind} number of seconds")
    return value


def atomic_write(path: str, data: bytes, *, fsync: bool = False) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then ``os.replace``.

    With ``fsync`` the data reaches the disk before the rename, so a crash leaves
    the old file or the new one, never a torn one. Raises ``OSError``.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the core every built-in registry shares -------------------------------------------------


class AccessDenied(RegistryError):
    """A backend was refused for want of permission (kept apart: a consumer entry may be skipped)."""


@dataclasses.dataclass(frozen=True, slots=True)
class BadEntry:
    """A node a backend could not even turn into text; the core skips it with one warning."""

    reason: str


RawNodes = Mapping[str, "str | URL | BadEntry"]  # entry name -> URL text (or URL) of providers/consumers
RawRules = Mapping[str, "str | bytes"]  # rule name -> text (bytes may not be UTF-8)
Raw = Union[RawNodes, RawRules]


class SnapshotSink(Protocol):
    """Where the core saves provider lists and finds them after a restart (``snapshot.SnapshotStore``)."""

    directory: str

    def save(self, service: str, urls: Sequence[URL]) -> None: ...

    def load(self, service: str) -> Any: ...


@dataclasses.dataclass(frozen=True)
class SubscriptionStatus:
    """What a consumer currently uses for one service, and where it came from."""

    service: str
    providers: tuple[URL, ...]
    source: str  # the registry's scheme ("zookeeper", "file", "memory"), "snapshot" or "none"
    stale: bool  # True while an empty push is held back or the registry could not be read
    held_since: float | None  # time.monotonic() when an empty push was held back


class Watch:
    """One watched ``(service, category)``: its listeners and the last value applied.

    Touched on the dispatcher thread only, except ``queued``/``closed`` (flags a
    backend's watch callback reads to avoid queueing twice) and ``handle``.
    """

    __slots__ = ("service", "category", "listeners", "value", "decoded", "guard", "pending", "source",
                 "stale", "failed", "read_in", "queued", "closed", "recheck", "handle")

    def __init__(self, service: str, category: str, hold: float) -> None:
        self.service = service
        self.category = category
        self.listeners: list[Callable[..., None]] = []
        self.value: Any = None  # list[URL] or dict[str, str] once read
        self.decoded: dict[str, URL | None] = {}  # entry name -> URL (None: skipped), for the next read
        self.guard = EmptyPushGuard(hold)
        self.pending: Any = None  # the newest list while an empty push is held back
        self.source = "none"
        self.stale = False
        self.failed = False  # the last read failed: read again when the backend can
        self.read_in = -1  # connection generation in which the last good read began
        self.queued = False
        self.closed = False
        self.recheck = False
        self.handle: Any = None  # the backend's own (a ZooKeeper watcher)

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.category)


class RegistryCore(Registry):
    """What every built-in registry shares: listeners, ordered delivery, own entries, rule decoding.

    A backend supplies ``_read`` (and optionally ``_read_many``), ``_put``,
    ``_delete`` and ``_list_services``, plus hooks: ``_watch`` when a path starts
    being watched, ``_want_repair`` when something must be done again later.
    The core calls listeners on its dispatcher only, in order, holding no lock;
    its one lock guards dictionaries and is never held across backend I/O.
    Options: ``empty_protection`` (seconds a push removing every provider is
    held back) and ``snapshots`` (provider lists saved for a restart).
    """

    notify_own_writes: ClassVar[bool] = True  # re-read after our own write (no native watch)

    def __init__(self, url: URL, *, display: str, dispatcher: Dispatcher, empty_protection: float = 0.0,
                 snapshots: SnapshotSink | None = None) -> None:
        super().__init__(url)
        self.display = display
        self.empty_protection = empty_protection
        self.snapshots = snapshots
        self._dispatcher = dispatcher
        self._lock = threading.Lock()  # guards the dictionaries below, never held across I/O or a listener
        self._own: dict[tuple[str, str, str], URL] = {}  # (service, category, entry name) -> URL
        self._unwanted: set[tuple[str, str, str]] = set()  # own entries whose removal must be retried
        self._watches: dict[tuple[str, str], Watch] = {}
        self._warned: set[str] = set()
        self._generation = 0  # bumped by a backend on every new connection: older reads armed nothing
        self._closing = threading.Event()
        self._log = logging.getLogger(f"govrpc.registry.{self.scheme}")

    # -- what a backend supplies ------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, service: str, category: str, watch: Watch | None) -> Raw:
        """The raw entries or rules now; with ``watch``, also arm the backend's change notification.

        Raises ``RegistryUnreachableError`` (try again later), ``AccessDenied`` or ``RegistryError``."""

    def _read_many(self, watches: Sequence[Watch]) -> list[tuple[Watch, Raw | RegistryError]]:
        """Read several watched paths (a backend may pipeline); failures are returned, not raised."""
        results: list[tuple[Watch, Raw | RegistryError]] = []
        for watch in watches:
            try:
                results.append((watch, self._read(watch.service, watch.category, watch)))
            except RegistryError as exc:
                results.append((watch, exc))
        return results

    @abc.abstractmethod
    def _put(self, service: str, category: str, name: str, data: bytes, *, ephemeral: bool) -> None:
        """Create or overwrite one entry (``ephemeral``: gone with this process) or rule."""

    @abc.abstractmethod
    def _delete(self, service: str, category: str, name: str) -> None:
        """Remove one entry or rule; a missing one is no error."""

    @abc.abstractmethod
    def _list_services(self) -> list[str]:
        """Every service name, sorted."""

    def _watch(self, watch: Watch) -> None:
        """A path starts being watched (dispatcher thread)."""

    def _want_repair(self) -> None:
        """Something failed that the backend should do again when it can (default: nothing)."""

    def _entry_name(self, url: URL) -> str:
        return url.encoded()

    def _entry_data(self, url: URL) -> bytes:
        return str(url).encode()

    def _check_service(self, service: str) -> None:
        if (not isinstance(service, str) or not service or "/" in service or service.startswith(".")
                or any(c in service for c in "?# \t\n")):
            raise ConfigurationError(f"invalid service name {service!r}")

    def _node_path(self, service: str, category: str, name: str = "") -> str:
        """How the backend names a path in messages."""
        return f"{service}/{category}" + (f"/{name}" if name else "")

    # -- providers and consumers --------------------------------------------------------------
    def register(self, url: URL) -> None:
        category = category_of(url)
        self._check_service(url.path)
        if category == PROVIDERS and url.scheme not in PROVIDER_SCHEMES:
            raise ConfigurationError(f"cannot register {url}: scheme {url.scheme!r} is neither a provider scheme "
                                     f"({', '.join(sorted(PROVIDER_SCHEMES))}) nor {CONSUMER!r}")
        if category == PROVIDERS and (not url.host or not 0 < url.port <= 65535):
            raise ConfigurationError(f"cannot register {url}: a provider needs a host and a port in 1..65535")
        own = (url.path, category, self._entry_name(url))
        with self._lock:
            self._own[own] = url
            self._unwanted.discard(own)
        try:
            self._put(*own, self._entry_data(url), ephemeral=True)
        except AccessDenied as exc:
            with self._lock:
                self._own.pop(own, None)
            if category == CONSUMERS:  # consumer entries only inform operators
                self._log.warning("%s", exc)
                return
            raise
        except RegistryUnreachableError as exc:
            self._log.warning("%s: cannot register %s now (%s); retrying in the background",
                        self.display, url, _reason(exc))
            self._want_repair()
            return
        except RegistryError:
            with self._lock:
                self._own.pop(own, None)
            raise
        self._changed(url.path, category)

    def unregister(self, url: URL) -> None:
        category = category_of(url)
        own = (url.path, category, self._entry_name(url))
        with self._lock:
            if self._own.pop(own, None) is None:
                return
        try:
            self._delete(*own)
        except AccessDenied as exc:
            self._log.warning("%s", exc)
        except RegistryError as exc:
            if self._closing.is_set():
                return
            self._log.warning("%s: cannot unregister %s now (%s); retrying in the background",
                        self.display, url, _reason(exc))
            with self._lock:
                self._unwanted.add(own)
            self._want_repair()
            return
        self._changed(url.path, category)

    def subscribe(self, service: str, listener: NotifyListener) -> None:
        self._add_listener(service, PROVIDERS, listener)

    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        self._remove_listener(service, PROVIDERS, listener)

    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        if category not in (PROVIDERS, CONSUMERS):
            raise ConfigurationError(f"lookup category must be {PROVIDERS} or {CONSUMERS}, not {category!r}")
        self._check_service(service)
        raw = self._read(service, category, None)
        return self._decode_nodes(service, category, raw, {})[0]  # type: ignore[arg-type]

    def services(self) -> list[str]:
        return self._list_services()

    def subscription_status(self, service: str) -> SubscriptionStatus:
        """What this process uses now for ``service`` (``source="none"`` if not subscribed)."""
        watch = self._watches.get((service, PROVIDERS))
        if watch is None or watch.value is None:
            return SubscriptionStatus(service, (), "none", False, None)
        return SubscriptionStatus(service, tuple(watch.value), watch.source,
                                  watch.stale or self._dirty(watch), watch.guard.held_since)

    # -- rules ----------------------------------------------------------------------------------
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        self._check_service(service)
        self._put(service, category, name, str(text).encode("utf-8"), ephemeral=False)
        self._changed(service, category)

    def delete_rule(self, service: str, category: str, name: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        self._check_service(service)
        self._delete(service, category, name)
        self._changed(service, category)

    def rules(self, service: str, category: str) -> dict[str, str]:
        check_rule_category(category)
        self._check_service(service)
        raw = self._read(service, category, None)
        watch = self._watches.get((service, category))
        last = watch.value if watch is not None and isinstance(watch.value, dict) else {}
        return self._decode_rules(service, category, raw, last)  # type: ignore[arg-type]

    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        check_rule_category(category)
        self._add_listener(service, category, listener)

    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._remove_listener(service, category, listener)

    # -- decoding: what a registry refuses to believe ---------------------------------------------
    def _warn_once(self, path: str, message: str, *args: object) -> None:
        with self._lock:
            if path in self._warned:
                return
            if len(self._warned) >= WARNED_KEPT:  # hostile input must not grow memory without bound:
                self._warned.clear()              # forget, and at worst warn about a name again
            self._warned.add(path)
        self._log.warning(message, *args)

    def _entry_problem(self, service: str, category: str, url: URL) -> str:
        if category == PROVIDERS and url.scheme not in PROVIDER_SCHEMES:
            return f"scheme {url.scheme!r} is not a provider scheme"
        if category == CONSUMERS and url.scheme != CONSUMER:
            return f"scheme {url.scheme!r} is not {CONSUMER!r}"
        if url.path != service:
            return f"it names service {url.path!r}"
        if category == PROVIDERS and (not url.host or not 0 < url.port <= 65535):
            return f"bad address {url.host!r}:{url.port} (a provider needs a host and a port)"
        return ""

    def _decode_entry(self, service: str, category: str, name: str, raw: str | URL | BadEntry) -> URL | None:
        url: URL | None = None
        try:
            if isinstance(raw, BadEntry):
                problem = raw.reason
            else:
                url = raw if isinstance(raw, URL) else URL.parse(raw)
                problem = self._entry_problem(service, category, url)
        except (ConfigurationError, ValueError, UnicodeError) as exc:
            problem = str(exc)
        if not problem:
            return url
        path = self._node_path(service, category, name)
        self._warn_once(path, "%s: skipping node %s: %s", self.display, path[:300], problem)
        return None

    def _decode_nodes(self, service: str, category: str, raw: RawNodes,
                      known: dict[str, URL | None]) -> tuple[list[URL], dict[str, URL | None]]:
        decoded: dict[str, URL | None] = {}
        for name, entry in raw.items():
            decoded[name] = known[name] if name in known else self._decode_entry(service, category, name, entry)
        return [u for n in sorted(decoded) if (u := decoded[n]) is not None], decoded

    def _decode_rules(self, service: str, category: str, raw: RawRules, last: dict[str, str]) -> dict[str, str]:
        rules: dict[str, str] = {}
        for name in sorted(raw):
            data = raw[name]
            path = self._node_path(service, category, name)
            if isinstance(data, str):
                text: str | None = data
            else:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is not None:
                with self._lock:
                    self._warned.discard(path)
                rules[name] = text
            elif name in last:  # a rule that was in force stays in force: deleting it is a separate act
                self._warn_once(path, "%s: rule %s was overwritten with bytes that are not UTF-8 text; "
                                "keeping its last good version", self.display, path)
                rules[name] = last[name]
            else:
                self._warn_once(path, "%s: skipping rule %s: not UTF-8 text", self.display, path)
        return rules

    # -- watching (dispatcher thread) -----------------------------------------------------------------
    def _add_listener(self, service: str, category: str, listener: Callable[..., None]) -> None:
        self._check_service(service)
        key = (service, category)

        def add() -> None:
            watch = self._watches.get(key)
            if watch is None or watch.closed:
                watch = Watch(service, category, self.empty_protection if category == PROVIDERS else 0.0)
                with self._lock:
                    self._watches[key] = watch
                watch.listeners.append(listener)
                self._watch(watch)
                self._refresh([watch])
            else:
                watch.listeners.append(listener)
                safe_call(listener, _copy(watch.value))

        self._dispatcher.call(add, f"subscribing to {self._node_path(service, category)}")

    def _remove_listener(self, service: str, category: str, listener: Callable[..., None]) -> None:
        def remove() -> None:
            watch = self._watches.get((service, category))
            if watch is None or listener not in watch.listeners:
                return
            watch.listeners.remove(listener)
            if not watch.listeners:
                watch.closed = True  # a backend watch may fire once more, into nothing
                with self._lock:
                    del self._watches[(service, category)]

        if not self._closing.is_set():
            self._dispatcher.call(remove, f"unsubscribing from {service}")

    def _changed(self, service: str, category: str) -> None:
        """After our own write: tell this process's listeners now when the backend has no watches."""
        if self.notify_own_writes and (service, category) in self._watches and not self._closing.is_set():
            self._dispatcher.call(lambda: self._refresh_keys([(service, category)]), "delivering a change")

    def _refresh_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        self._refresh([w for k in keys if (w := self._watches.get(k)) is not None])

    def _schedule_refresh(self, watch: Watch) -> None:
        """From any thread (a backend's watch callback): queue one re-read, never block."""
        if not watch.queued and not watch.closed:
            watch.queued = True
            self._dispatcher.submit(lambda: self._refresh([watch]))

    def _dirty(self, watch: Watch) -> bool:
        """True when the last read failed or began before the current connection (it armed nothing)."""
        return watch.failed or watch.read_in != self._generation

    def _dirty_watches(self) -> list[Watch]:
        with self._lock:
            watches = list(self._watches.values())
        return [w for w in watches if not w.closed and self._dirty(w)]

    def _refresh(self, watches: Sequence[Watch]) -> None:
        """Read the watched paths and apply what changed (dispatcher thread)."""
        generation = self._generation  # before the reads: a reconnect during them leaves them dirty
        live = []
        for watch in watches:
            watch.queued = False
            if not watch.closed:
                live.append(watch)
        if not live:
            return
        for watch, raw in self._read_many(live):
            if watch.closed:
                continue
            if isinstance(raw, AccessDenied):
                self._not_readable(watch, raw)
            elif isinstance(raw, RegistryError):
                self._read_failed(watch, raw)
            else:
                watch.failed = False
                watch.read_in = generation
                if watch.category in (PROVIDERS, CONSUMERS):
                    value, watch.decoded = self._decode_nodes(watch.service, watch.category, raw,  # type: ignore
                                                              watch.decoded)
                    self._offer(watch, value, self.scheme)
                else:
                    last = watch.value if isinstance(watch.value, dict) else {}
                    self._offer(watch, self._decode_rules(watch.service, watch.category, raw, last),  # type: ignore
                                self.scheme)

    def _not_readable(self, watch: Watch, exc: AccessDenied) -> None:
        watch.failed = False
        watch.read_in = self._generation
        self._warn_once(self._node_path(*watch.key), "%s", exc)
        if watch.value is None:
            self._offer(watch, [] if watch.category in (PROVIDERS, CONSUMERS) else {}, "none")

    def _read_failed(self, watch: Watch, exc: BaseException) -> None:
        if self._closing.is_set():
            return
        watch.failed = True
        self._want_repair()
        path = self._node_path(*watch.key)
        if watch.value is not None:
            self._log.debug("%s: cannot read %s (%s); keeping the last list", self.display, path, _reason(exc))
            return
        if watch.category == PROVIDERS:
            snapshot = self.snapshots.load(watch.service) if self.snapshots is not None else None
            if snapshot is not None:
                self._log.warning("%s: cannot read %s (%s); using the provider snapshot of %s saved %.0f s ago "
                            "(%d provider(s))", self.display, path, _reason(exc), watch.service, snapshot.age,
                            len(snapshot.urls))
                self._apply(watch, list(snapshot.urls), "snapshot")
                return
            self._log.warning("%s: cannot read %s (%s) and there is no snapshot of %s; no providers until the "
                        "registry answers", self.display, path, _reason(exc), watch.service)
            self._apply(watch, [], "none")
        else:
            self._apply(watch, [] if watch.category == CONSUMERS else {}, "none")

    def _offer(self, watch: Watch, value: Any, source: str) -> None:
        if watch.category != PROVIDERS:
            self._apply(watch, value, source)
            return
        watch.pending = value
        decision = watch.guard.review(watch.value, value, time.monotonic())
        if decision.apply:
            if decision.released:
                self._log.warning("%s: %s still has no provider after %g s; applying the empty list",
                            self.display, watch.service, self.empty_protection)
            self._apply(watch, value, source)
            return
        if not watch.stale:
            watch.stale = True
            self._log.warning("%s: a push removed every provider of %s at once; keeping the last %d (stale) for up "
                        "to %g s (empty_protection)", self.display, watch.service, len(watch.value or ()),
                        self.empty_protection)
        if not watch.recheck:
            watch.recheck = True
            self._dispatcher.later(decision.recheck_in, lambda: self._recheck(watch))

    def _recheck(self, watch: Watch) -> None:
        watch.recheck = False
        if watch.closed or not watch.guard.holding:
            return
        self._offer(watch, watch.pending, self.scheme)

    def _apply(self, watch: Watch, value: Any, source: str) -> None:
        changed = value != watch.value
        came_back = watch.source != source or watch.stale
        watch.value = value
        watch.source = source
        watch.stale = source != self.scheme
        if (watch.category == PROVIDERS and source == self.scheme and (changed or came_back)
                and self.snapshots is not None):
            self.snapshots.save(watch.service, value)
        if not changed:
            return
        for listener in list(watch.listeners):
            safe_call(listener, _copy(value))

    # -- own entries -------------------------------------------------------------------------------------
    def _own_entries(self) -> list[tuple[tuple[str, str, str], URL]]:
        with self._lock:
            return list(self._own.items())

    def _withdraw_own(self) -> None:
        """Remove every entry this process registered (a close without a session to end)."""
        for (service, category, name), url in self._own_entries():
            self.unregister(url)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(cause).__name__ if cause is not None else str(exc)


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (list, dict)) else value


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


def acquire_registry(address: str | Registry | None, *, provider: bool = False) -> Registry:
    """The process's registry for ``address`` (created on first use), counted for release.

    ``provider=True``: the caller only registers (a ``Server``), so a registry that
    cannot be reached yet is returned anyway and registers once it can; a consumer
    gets ``RegistryUnreachableError`` instead when it has nothing to go on.
    """
    from govrpc.extension import get_extension

    if isinstance(address, Registry):
        return address
    address, scheme = _scheme_of(address)
    cls = get_extension("govrpc.registry", scheme)
    url = cls.parse_address(address)
    key = str(url)
    registry: Registry | None = None
    with _instances_lock:
        entry = _instances.get(key)
        if entry is not None:
            _instances[key] = (entry[0], entry[1] + 1)
            registry = entry[0]
    if registry is None:
        created = cls(url)
        with _instances_lock:
            entry = _instances.get(key)
            if entry is not None:  # lost a race: keep the first one
                _instances[key] = (entry[0], entry[1] + 1)
                registry = entry[0]
            else:
                _instances[key] = (created, 1)
                registry = created
        if registry is not created:
            created.close()
    if not provider:
        try:
            registry.check_consumer_ready()
        except BaseException:
            release_registry(registry)
            raise
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
