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
Provider keys: ``weight`` (> 0) and ``disabled`` (true/false). Consumer keys:
``cluster``, ``loadbalance``, ``retries``, ``timeout`` (seconds), ``idempotent``
and the other cluster options, each also per method as ``{method}.{key}``. ``enabled = false``
switches a rule off without deleting it.

Precedence (DESIGN.md section 4): a registry override, then the consumer's own
setting, then the provider's published setting, then the default. Among rules,
an ``address``-scoped rule beats an ``application``-scoped one, which beats a
general one; equal scopes apply in rule-name order. A rule that does not parse
is refused with a ``RuleError`` naming the position; a watcher that receives
one keeps that rule's last good version and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from govrpc.exceptions import ConfigurationError, RuleError
from govrpc.extension import extension_names
from govrpc.url import URL

__all__ = [
    "CLUSTER_KEYS",
    "Configurator",
    "ConfiguratorWatcher",
    "configure_consumer",
    "configure_provider",
    "parse_configurator",
]

log = logging.getLogger("govrpc.configurator")

CONFIGURATORS = "configurators"
PROVIDER_KEYS = frozenset({"weight", "disabled"})
CLUSTER_KEYS = frozenset({
    "cluster", "loadbalance", "retries", "idempotent", "forks", "hash.arguments", "hash.nodes",
    "broadcast.fail.percent", "failback.codes", "failback.default", "failsafe.default",
    "failcache.period", "failcache.retries", "failcache.size", "failcache.timeout",
    "retry.backoff", "retry.backoff.max", "shortestresponse.reprobe", "timeout",
})
"""Options of a reference's cluster and balancer, settable per method as ``{method}.{key}``."""
_LINE = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*=\s*(.*?)\s*$")
_ADDRESS = re.compile(r"^[\w.\-\[\]:]+:\d{1,5}$")


def split_method_key(key: str) -> tuple[str | None, str]:
    """``"find.loadbalance"`` -> ``("find", "loadbalance")``; ``"retries"`` -> ``(None, "retries")``."""
    if key in CLUSTER_KEYS:
        return None, key
    method, _, rest = key.partition(".")
    if rest in CLUSTER_KEYS and method.isidentifier():
        return method, rest
    return None, key


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


_SECONDS = frozenset({"timeout", "failcache.period", "failcache.timeout", "retry.backoff", "retry.backoff.max",
                      "shortestresponse.reprobe"})


def _number_in(value: str, low: float | None, high: float | None) -> bool:
    """Is ``value`` a finite number, > 0 when ``low`` is None, else within [low, high]?"""
    try:
        number = float(value)
    except ValueError:
        return False
    if not math.isfinite(number):
        return False
    if low is None:
        return number > 0
    return number >= low and (high is None or number <= high)


def _check(key: str, value: str, text: str, position: int, key_position: int) -> str:
    method, base = split_method_key(key)
    if base == "weight":
        if not value.lstrip("-").isdigit() or int(value) <= 0:
            raise RuleError(f"weight must be a positive integer (use disabled = true to stop traffic), "
                            f"not {value!r}", rule=text, position=position)
    elif base in _SECONDS:
        low = 0.0 if base.startswith("retry.backoff") else None  # a backoff may be 0; the others must be > 0
        if not _number_in(value, low, None):
            what = "a number of seconds >= 0" if low is not None else "a positive number of seconds"
            raise RuleError(f"{key} must be {what}, not {value!r}", rule=text, position=position)
    elif base == "broadcast.fail.percent":
        if not _number_in(value, 0.0, 100.0):
            raise RuleError(f"{key} must be a percentage from 0 to 100, not {value!r}", rule=text,
                            position=position)
    elif base == "hash.arguments":
        from govrpc.cluster.consistenthash import parse_hash_arguments

        try:
            parse_hash_arguments(value)
        except ConfigurationError as exc:
            raise RuleError(str(exc), rule=text, position=position) from None
    elif base in ("disabled", "idempotent"):
        return _bool(value, key, text, position)
    elif base in ("cluster", "loadbalance"):
        group = f"govrpc.{base}"
        names = extension_names(group)
        if value not in names:
            raise RuleError(f"{key}: no {group} extension named {value!r}; installed: {', '.join(names)}",
                            rule=text, position=position)
    elif base in ("retries", "forks", "hash.nodes", "failcache.retries", "failcache.size"):
        if not value.isdigit() or (base != "retries" and int(value) == 0):
            minimum = 0 if base == "retries" else 1
            raise RuleError(f"{key} must be an integer >= {minimum}, not {value!r}", rule=text, position=position)
    elif base not in CLUSTER_KEYS:
        known = ", ".join(sorted(PROVIDER_KEYS | CLUSTER_KEYS | {"address", "application", "enabled"}))
        raise RuleError(f"unknown key {key!r}; keys: {known} (cluster keys also as method.key)",
                        rule=text, position=key_position)
    return value


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
        consumer = [k for k in params if k not in PROVIDER_KEYS]
        if consumer:
            raise RuleError(f"an address-scoped rule changes providers only (weight, disabled), "
                            f"not {', '.join(consumer)}", rule=text, position=text.find(consumer[0]))
    return Configurator(MappingProxyType(params), frozenset(addresses), application, enabled, name)


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
            changes.update((k, v) for k, v in rule.params.items() if k not in PROVIDER_KEYS)
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
