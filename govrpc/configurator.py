"""Configurators: run-time overrides an operator writes into the registry.

A configurator is a small text stored under ``{service}/configurators/{name}``::

    # send less traffic to the old machine, and balance by least-active
    address = 10.0.0.5:50051
    weight = 50

    application = web          # only consumers of application "web"
    loadbalance = leastactive
    find.loadbalance = consistenthash
    retries = 1

One ``key = value`` per line; ``#`` starts a comment. Scope keys: ``address``
(``host:port``, comma-separated; the rule then changes those providers only)
and ``application`` (the rule applies to consumers of that application only).
Provider keys: ``weight`` (> 0) and ``disabled`` (true/false), and the options
stages declare with ``side = "provider"`` (``tps``, ``concurrency``...): a
provider's server applies those of rules without ``application`` (general, or
``address``-scoped naming it) to its filters (``configure_server``); in a rule
with ``application`` they configure that application's consumers. Consumer keys:
``cluster``, ``loadbalance``, ``retries``, ``timeout`` (seconds, at most one
day), ``idempotent`` and every option an installed extension declares
(``govrpc.options``: strategies, balancers, filters, a third party's too); those
marked per-method also as ``{method}.{key}``. The option that owns a key checks
its value: this module knows no strategy. ``enabled = false`` switches a rule
off without deleting it.

Precedence (DESIGN.md section 4): a registry override, then the consumer's own
setting, then the provider's published setting, then the default. Among rules,
an ``address``-scoped rule beats an ``application``-scoped one, which beats a
general one; equal scopes apply in rule-name order. A rule that does not parse
is refused with a ``RuleError`` naming the position; a watcher that receives
one keeps that rule's last good version and logs why.

``ReferenceConfig`` holds one reference's effective settings (its consumer URL
with the rules applied, and each method's view) and tells its subscribers
(the reference's timeouts, its cluster, its directory) when they change.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from govrpc.exceptions import ConfigurationError, RuleError
from govrpc.options import PROVIDER_OPTIONS, known_options, split_method_key
from govrpc.url import URL

__all__ = [
    "Configurator",
    "ConfiguratorWatcher",
    "ReferenceConfig",
    "configure_consumer",
    "configure_provider",
    "configure_server",
    "parse_configurator",
    "provider_keys",
    "provider_side",
    "split_method_key",
]

log = logging.getLogger("govrpc.configurator")

CONFIGURATORS = "configurators"
PROVIDER_KEYS = frozenset(o.name for o in PROVIDER_OPTIONS)
SCOPE_KEYS = ("address", "application", "enabled")
_LINE = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*=\s*(.*?)\s*$")
_ADDRESS = re.compile(r"^[\w.\-\[\]:]+:\d{1,5}$")


@dataclasses.dataclass(frozen=True)
class Configurator:
    """One parsed rule: its scope and the parameters it overrides."""

    params: Mapping[str, str]
    addresses: frozenset[str] = frozenset()
    application: str = ""
    enabled: bool = True
    name: str = ""

    @property
    def specificity(self) -> int:
        return 2 if self.addresses else 1 if self.application else 0

    def applies_to(self, application: str) -> bool:
        return self.enabled and (not self.application or self.application == application)


def _bool(value: str, key: str, text: str, position: int) -> str:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise RuleError(f"{key} must be true or false, not {value!r}", rule=text, position=position)
    return lowered


def _check(key: str, value: str, text: str, position: int, key_position: int) -> str:
    """``value`` checked by the option that owns ``key`` (an extension's or a core one)."""
    options = known_options()
    _method, base = split_method_key(key, options)
    option = options.get(base)
    if option is None:
        known = ", ".join(sorted({*options, *SCOPE_KEYS}))
        per_method = ", ".join(name for name, o in options.items() if o.per_method)
        raise RuleError(f"unknown key {key!r}; keys: {known}; also per method as method.key: {per_method}",
                        rule=text, position=key_position)
    try:
        return option.text(value, key)
    except ConfigurationError as exc:
        raise RuleError(str(exc), rule=text, position=position) from None


def parse_configurator(text: str, name: str = "") -> Configurator:
    """Parse a configurator; raises ``RuleError`` with the offset of the first mistake."""
    if not isinstance(text, str):
        raise RuleError(f"a configurator is text, not {type(text).__name__}")
    params: dict[str, str] = {}
    addresses: set[str] = set()
    application = ""
    enabled = True
    offset = 0
    for line in text.splitlines(keepends=True):
        start = offset
        offset += len(line)
        body = line.split("#", 1)[0]
        if not body.strip():
            continue
        match = _LINE.match(body)
        if match is None:
            column = len(body) - len(body.lstrip())
            raise RuleError("expected 'key = value'", rule=text, position=start + column)
        key, value = match.group(1), match.group(2)
        position = start + match.start(2)
        if not value:
            raise RuleError(f"{key} has no value", rule=text, position=position)
        if key in params or (key == "application" and application):
            raise RuleError(f"{key} is set twice", rule=text, position=start + match.start(1))
        if key == "address":
            for address in (a.strip() for a in value.split(",")):
                if not _ADDRESS.match(address):
                    raise RuleError(f"address {address!r} is not host:port", rule=text, position=position)
                addresses.add(address)
        elif key == "application":
            application = value
        elif key == "enabled":
            enabled = _bool(value, key, text, position) == "true"
        else:
            params[key] = _check(key, value, text, position, start + match.start(1))
    if not params:
        raise RuleError("the rule overrides nothing (no key other than address/application/enabled)",
                        rule=text, position=0)
    if addresses:
        consumer = [k for k in params if not provider_side(k)]
        if consumer:
            raise RuleError(f"an address-scoped rule changes providers only (weight, disabled and the "
                            f"provider keys of stages: {', '.join(sorted(provider_keys()))}), "
                            f"not {', '.join(consumer)}", rule=text, position=text.find(consumer[0]))
    return Configurator(MappingProxyType(params), frozenset(addresses), application, enabled, name)


def provider_side(key: str) -> bool:
    """Is ``key`` (or ``{method}.key``) a provider's setting (weight, a provider's limits...)?"""
    options = known_options()
    option = options.get(split_method_key(key, options)[1])
    return option is not None and option.side == "provider"


def provider_keys() -> frozenset[str]:
    """The names of every provider-side option (``Option.side == "provider"``)."""
    return frozenset(name for name, option in known_options().items() if option.side == "provider")


def configure_server(url: URL, rules: Sequence[Configurator]) -> URL:
    """A provider's own ``url`` with the provider-side settings of the rules meant for it: those
    without ``application`` (general, or ``address``-scoped and naming its address); what its
    server binds the provider filters to."""
    changes: dict[str, str] = {}
    for rule in rules:
        if rule.enabled and not rule.application and (not rule.addresses or url.address in rule.addresses):
            changes.update((k, v) for k, v in rule.params.items() if provider_side(k))
    return url.with_params(**changes) if changes else url


def _ordered(rules: Sequence[Configurator]) -> list[Configurator]:
    return sorted(rules, key=lambda r: (r.specificity, r.name))


def configure_provider(url: URL, rules: Sequence[Configurator], application: str) -> URL | None:
    """``url`` as the consumer of ``application`` should see it; None when disabled."""
    changes: dict[str, str] = {}
    for rule in rules:
        if rule.applies_to(application) and (not rule.addresses or url.address in rule.addresses):
            changes.update((k, v) for k, v in rule.params.items() if k in PROVIDER_KEYS)
    if not changes:
        return url
    if changes.pop("disabled", "false") == "true":
        return None
    return url.with_params(**changes) if changes else url


def configure_consumer(url: URL, rules: Sequence[Configurator], application: str) -> URL:
    """The consumer ``url`` with the cluster options the rules override.

    An override of ``key`` also replaces the consumer's own ``{method}.key``
    settings (the registry wins); ``{method}.key`` in a rule changes one method.
    """
    changes: dict[str, str] = {}
    for rule in rules:
        if rule.applies_to(application) and not rule.addresses:
            # a stage's provider keys (tps, concurrency...) configure consumers only in a rule naming them
            changes.update((k, v) for k, v in rule.params.items()
                           if k not in PROVIDER_KEYS and (rule.application or not provider_side(k)))
    if not changes:
        return url
    general = {k for k in changes if split_method_key(k)[0] is None}
    drop = {k: None for k in url.params if split_method_key(k)[0] is not None and split_method_key(k)[1] in general}
    return url.with_params(**{**drop, **changes})  # a method-level override beats the general one


Listener = Callable[["ConfiguratorWatcher"], None]


class ConfiguratorWatcher:
    """The configurators of one service as one consumer sees them, kept current from the registry.

    ``rules`` is an immutable, ordered snapshot; listeners are called after
    every change. A rule that does not parse keeps its last good version.
    """

    def __init__(self, registry: object, service: str, application: str) -> None:
        self.registry = registry
        self.service = service
        self.application = application
        self.rules: tuple[Configurator, ...] = ()
        self._good: dict[str, Configurator] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._started = False

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.registry.watch_rules(self.service, CONFIGURATORS, self.update)  # type: ignore[attr-defined]

    def update(self, texts: Mapping[str, str]) -> None:
        """Apply the registry's current rules (name -> text)."""
        with self._lock:
            good: dict[str, Configurator] = {}
            for name, text in sorted(texts.items()):
                try:
                    good[name] = parse_configurator(text, name)
                except ConfigurationError as exc:
                    if name in self._good:
                        good[name] = self._good[name]
                        log.error("configurator %s/%s is broken, keeping its last good version: %s",
                                  self.service, name, exc)
                    else:
                        log.error("configurator %s/%s is broken and ignored: %s", self.service, name, exc)
            changed = good != self._good
            self._good = good
            self.rules = tuple(_ordered(list(good.values())))
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(self)
                except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                    log.exception("configurator listener %r failed", listener)

    def provider(self, url: URL) -> URL | None:
        return configure_provider(url, self.rules, self.application) if self.rules else url

    def consumer(self, url: URL) -> URL:
        return configure_consumer(url, self.rules, self.application) if self.rules else url

    def close(self) -> None:
        if self._started:
            self._started = False
            self.registry.unwatch_rules(self.service, CONFIGURATORS, self.update)  # type: ignore[attr-defined]
        self._listeners.clear()


Subscriber = Callable[["ReferenceConfig"], None]


class ReferenceConfig:
    """The effective settings of one reference, kept current from the registry's configurators.

    ``url`` is the consumer's own URL with the rules applied (precedence in the
    module docstring); ``view(method)`` is the URL a method sees (its
    ``{method}.key`` settings as ``key``); ``method_params`` holds each method's
    own settings. ``subscribe(callback)`` calls ``callback(config)`` after every
    change of the rules, in subscription order. A subscriber that refuses the
    new settings (``ConfigurationError``) is logged and every subscriber gets
    the last good settings again. Without a watcher (``url=`` references, tests)
    the settings never change.
    """

    def __init__(self, url: URL, watcher: ConfiguratorWatcher | None = None) -> None:
        self.base = url
        self.watcher = watcher
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self._set(url)
        if watcher is not None:
            watcher.add_listener(self._changed)

    @classmethod
    def watching(cls, registry: object, url: URL) -> ReferenceConfig:
        """The settings of the consumer ``url``, configured by ``registry``'s rules once ``start`` runs."""
        return cls(url, ConfiguratorWatcher(registry, url.path, url.params.get("application", "")))

    def _set(self, url: URL) -> None:
        per: dict[str, dict[str, str]] = {}
        for key, value in url.params.items():
            method, base = split_method_key(key)
            if method is not None:
                per.setdefault(method, {})[base] = value
        # swapped whole: readers see the old settings or the new ones, never a mix
        self.method_params: Mapping[str, Mapping[str, str]] = MappingProxyType(per)
        self.views: Mapping[str, URL] = MappingProxyType(
            {method: url.with_params(**options) for method, options in per.items()})
        self.url = url

    def view(self, method: str) -> URL:
        """The URL ``method``'s calls are configured by."""
        return self.views.get(method, self.url)

    def provider(self, url: URL) -> URL | None:
        """The provider ``url`` as this consumer should see it (None: disabled)."""
        return self.watcher.provider(url) if self.watcher is not None else url

    def subscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def start(self) -> None:
        if self.watcher is not None:
            self.watcher.start()

    def _changed(self, watcher: ConfiguratorWatcher) -> None:
        with self._lock:
            previous = self.url
            self._set(watcher.consumer(self.base))
            try:
                self._notify(raising=True)
            except ConfigurationError as exc:
                log.error("configurators of %s give settings that do not work (%s); keeping the previous ones",
                          self.base.path, exc)
                self._set(previous)
                self._notify(raising=False)

    def _notify(self, raising: bool) -> None:
        for callback in list(self._subscribers):
            try:
                callback(self)
            except ConfigurationError:
                if raising:
                    raise
                log.exception("configuration subscriber %r failed", callback)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not stop the others
                log.exception("configuration subscriber %r failed", callback)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.remove_listener(self._changed)
            self.watcher.close()
        with self._lock:
            self._subscribers.clear()
