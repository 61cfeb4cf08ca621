"""The router chain: every router of a reference, applied in order, results cached.

``Directory.list(invocation)`` hands its provider tuple to ``RouterChain.route``.
The chain keeps an immutable state per (provider tuple, rule set): the ordered
routers and a cache from what the routers read of a call (method, plus only the
attachments and arguments some rule names) to the routed tuple. A change of
providers or rules swaps in a fresh state; readers never lock. With no router
at all ``route`` returns the providers it was given.

Order: the tag router (as in Dubbo, tags split traffic first), then condition,
script and third-party rules by ``priority`` (larger first, then name), then
local-first. Rules come from three layers; a name defined in a higher layer
hides the same name below: the consumer's local ``routes``, then rules
providers publish as ``route.<name>`` URL parameters, then the registry.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from govrpc.exceptions import ConfigurationError, ExtensionNotFoundError, RuleError
from govrpc.extension import extension_names, get_extension
from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import FORCE_KEY, TAG_KEY, Reads, RouteFailed, Router, argument_text, arguments_key
from govrpc.router.local import LocalFirstRouter
from govrpc.router.zone import ZoneRouter
from govrpc.router.rule import RouteRule, parse_rule
from govrpc.router.tag import TagRouter
from govrpc.url import URL

__all__ = ["CONSUMER", "DryRunInvoker", "PROVIDER", "REGISTRY", "RouteStep", "RouterChain", "compile_rule",
           "explain_route"]

log = logging.getLogger("govrpc.router")

CONSUMER, PROVIDER, REGISTRY = "consumer", "provider", "registry"
LAYERS = (CONSUMER, PROVIDER, REGISTRY)
PROVIDER_RULE_PREFIX = "route."
CACHE_LIMIT = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class RouteStep:
    """One router's part in a routing decision (``explain``)."""

    router: str
    kept: tuple[URL, ...]
    why: str


class DryRunInvoker(Invoker):
    """A provider known by its URL only, for ``explain``: routing reads URLs, never calls."""

    def __init__(self, url: URL) -> None:
        self.url = url

    def invoke(self, invocation: Invocation) -> Any:
        raise ConfigurationError(f"{invocation}: {self.url} is a dry-run provider (explain), it cannot be called")


def compile_rule(text: str, name: str = "") -> tuple[RouteRule, Sequence[Router]]:
    """Parse and build a rule with its kind's router; raises ``RuleError`` naming what is wrong."""
    try:
        rule = parse_rule(text, name)
    except RuleError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a parser bug raises is still a refused rule
        raise RuleError(f"rule {name!r} cannot be read: {type(exc).__name__}: {exc}", rule=text) from exc
    if rule.kind == "tag":
        TagRouter.assignments_of(rule)  # validates
        return rule, ()
    try:
        cls = get_extension("govrpc.router", rule.kind)
    except ExtensionNotFoundError:
        kinds = ", ".join(extension_names("govrpc.router")) or "none"
        raise rule.error(f"unknown kind {rule.kind!r}; installed router kinds: {kinds}") from None
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise rule.error(f"govrpc.router extension {rule.kind!r} is not a Router class")
    try:
        return rule, tuple(cls.from_rule(rule))
    except RuleError:
        raise
    except Exception as exc:  # noqa: BLE001 - a third party's router must not take the chain down
        raise rule.error(f"the {rule.kind} router refused it: {type(exc).__name__}: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class _State:
    invokers: Sequence[Invoker]
    routers: tuple[Router, ...]
    key_of: Callable[[Invocation], Hashable] | None  # None: some router is runtime, no cache
    cache: dict[Hashable, tuple[Invoker, ...]]
    rules_version: int
    untagged: bool = False  # no tag anywhere, so no tag router: a forced tag matches no provider


def _key_function(reads: Reads) -> Callable[[Invocation], Hashable]:
    """The cheapest cache key that still tells apart every call the routers could tell apart."""
    keys = tuple(sorted(reads.attachments))
    indexes = tuple(sorted(reads.arguments))
    if reads.all_arguments or reads.all_attachments:
        all_args, all_atts = reads.all_arguments, reads.all_attachments

        def key_all(inv: Invocation) -> Hashable:
            atts = inv.attachments
            return (inv.method,
                    arguments_key(inv) if all_args else tuple(argument_text(inv.args, i) for i in indexes),
                    tuple(sorted(atts.items())) if all_atts else tuple(atts.get(k) for k in keys))
        return key_all
    if indexes:
        def key_args(inv: Invocation) -> Hashable:
            atts = inv.attachments
            return (inv.method, tuple(argument_text(inv.args, i) for i in indexes),
                    tuple(atts.get(k) for k in keys))
        return key_args
    if len(keys) == 1:
        (only,) = keys
        return lambda inv: (inv.method, inv.attachments.get(only))
    if keys:
        return lambda inv: (inv.method, *[inv.attachments.get(k) for k in keys])
    return lambda inv: inv.method


def _router_order(router: Router) -> tuple[int, str, int]:
    """Higher priority first, then by rule name, then a rule's conditions in their written order
    (``r#2`` before ``r#10``)."""
    base, _, index = router.name.rpartition("#")
    if base and index.isdigit():
        return -router.priority, base, int(index)
    return -router.priority, router.name, 0


class RouterChain:
    """The routers of one reference and their cached results.

    Args:
        consumer: the reference's consumer URL (``application``, ``tag``... are read by rules).
        routes: the consumer's own rules, name -> text (checked now: raises ``RuleError``).
        local_first: prefer a provider served by a ``govrpc.Server`` in this process.
        prefer_same_host: among remote providers, prefer those on this host.
    """

    def __init__(self, consumer: URL, *, routes: Mapping[str, str] | None = None, local_first: bool = True,
                 prefer_same_host: bool = False) -> None:
        self.consumer = consumer
        self.local_first = local_first
        self.prefer_same_host = prefer_same_host
        self._lock = threading.Lock()
        self._layers: dict[str, dict[str, tuple[RouteRule, Sequence[Router]]]] = {l: {} for l in LAYERS}
        self._provider_texts: dict[str, str] = {}
        self._compiled: dict[tuple[str, str], tuple[RouteRule, Sequence[Router]] | RuleError] = {}
        self._rules_version = 0
        for name, text in (routes or {}).items():
            self._layers[CONSUMER][name] = compile_rule(text, name)
        self._state = _State((), (), None, {}, -1)
        # the names of the routers in force, in order (what a call's span says routed it), set with them
        self.names: tuple[str, ...] = ()

    # -- rules ---------------------------------------------------------------------
    def _compile(self, name: str, text: str) -> tuple[RouteRule, Sequence[Router]] | RuleError:
        entry = self._compiled.get((name, text))
        if entry is None:
            try:
                entry = compile_rule(text, name)
            except RuleError as exc:
                entry = exc
            if len(self._compiled) > 1024:
                self._compiled.clear()
            self._compiled[(name, text)] = entry
        return entry

    def _apply_layer(self, layer: str, texts: Mapping[str, str]) -> bool:
        """Install ``texts`` as ``layer``; a broken rule keeps its last good version. True if changed."""
        current = self._layers[layer]
        fresh: dict[str, tuple[RouteRule, Sequence[Router]]] = {}
        for name, text in texts.items():
            entry = self._compile(name, text)
            if isinstance(entry, RuleError):
                previous = current.get(name)
                log.warning("%s: ignoring broken %s route rule %r (%s); %s", self.consumer.path, layer, name,
                            entry, "keeping its last good version" if previous else "it had no good version")
                if previous is not None:
                    fresh[name] = previous
                continue
            fresh[name] = entry
        if fresh.keys() == current.keys() and all(fresh[n][0] is current[n][0] for n in fresh):
            return False
        self._layers[layer] = fresh
        return True

    def set_registry_rules(self, texts: Mapping[str, str]) -> None:
        """Registry listener: the service's ``routers`` rules, name -> text."""
        with self._lock:
            if self._apply_layer(REGISTRY, texts):
                self._rules_version += 1
                self._swap(self._state.invokers)

    def rules(self) -> dict[str, RouteRule]:
        """The effective rules by name (a consumer rule hides a provider's, which hides the registry's)."""
        merged: dict[str, RouteRule] = {}
        for layer in LAYERS:
            for name, (rule, _) in self._layers[layer].items():
                merged.setdefault(name, rule)
        return merged

    def _effective(self) -> list[tuple[RouteRule, Sequence[Router]]]:
        merged: dict[str, tuple[RouteRule, Sequence[Router]]] = {}
        for layer in LAYERS:
            for name, entry in self._layers[layer].items():
                merged.setdefault(name, entry)
        return [entry for _, entry in sorted(merged.items()) if entry[0].enabled]

    def _provider_rules(self, invokers: Sequence[Invoker]) -> dict[str, str]:
        texts: dict[str, str] = {}
        for invoker in invokers:
            for key, value in invoker.url.params.items():
                if key.startswith(PROVIDER_RULE_PREFIX) and len(key) > len(PROVIDER_RULE_PREFIX):
                    name = key[len(PROVIDER_RULE_PREFIX):]
                    if texts.setdefault(name, value) != value:
                        log.warning("%s: providers publish different route rule %r; using the first",
                                    self.consumer.path, name)
        return texts

    # -- building the state -----------------------------------------------------------
    def _routers(self, invokers: Sequence[Invoker]) -> tuple[Router, ...]:
        effective = self._effective()
        tag_rules = [rule for rule, _ in effective if rule.kind == "tag"]
        ordered = sorted((r for _, routers in effective for r in routers), key=_router_order)
        routers: list[Router] = []
        if tag_rules or self.consumer.params.get("tag") or any(i.url.params.get("tag") for i in invokers):
            routers.append(TagRouter(tag_rules))
        routers.extend(ordered)
        if self.consumer.params.get("zone") or self.consumer.params.get("region"):
            routers.append(ZoneRouter.from_url(self.consumer))
        if (self.local_first and any(getattr(i, "in_process", False) for i in invokers)) or self.prefer_same_host:
            routers.append(LocalFirstRouter(prefer_same_host=self.prefer_same_host))
        return tuple(routers)

    def _swap(self, invokers: Sequence[Invoker]) -> _State:
        """Build and install the state for ``invokers`` and the current rules (caller holds the lock)."""
        provider_texts = self._provider_rules(invokers)
        if provider_texts != self._provider_texts:
            self._provider_texts = provider_texts
            if self._apply_layer(PROVIDER, provider_texts):
                self._rules_version += 1
        routers = self._routers(invokers)
        reads = Reads()
        for router in routers:
            reads = reads | router.reads
        runtime = any(r.runtime for r in routers)
        untagged = not any(isinstance(r, TagRouter) for r in routers)
        state = _State(invokers, routers, None if runtime else _key_function(reads), {}, self._rules_version,
                       untagged)
        self._state = state
        self.names = tuple(getattr(r, "name", "") or type(r).__name__ for r in routers)
        return state

    # -- the hot path ---------------------------------------------------------------------
    def route(self, invokers: Sequence[Invoker], invocation: Invocation) -> Sequence[Invoker]:
        """The invokers for ``invocation`` among ``invokers`` (the directory's current tuple)."""
        state = self._state
        if state.invokers is not invokers:
            with self._lock:
                state = self._state
                if state.invokers is not invokers:
                    state = self._swap(invokers)
        if state.untagged:
            attachments = invocation.attachments
            if attachments and attachments.get(TAG_KEY) and (attachments.get(FORCE_KEY) or "").lower() == "true":
                return ()  # as the tag router would: a forced tag that no provider has keeps none
        if not state.routers:
            return invokers
        key_of = state.key_of
        if key_of is None:
            return self._apply(state, invocation)
        key = key_of(invocation)
        cache = state.cache
        try:
            hit = cache.get(key)
        except TypeError:  # an argument that cannot be hashed: route without the cache
            return self._apply(state, invocation)
        if hit is None:
            hit, decided = self._route(state, invocation)
            if decided:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[key] = hit
        return hit

    def _apply(self, state: _State, invocation: Invocation) -> tuple[Invoker, ...]:
        return self._route(state, invocation)[0]

    def _route(self, state: _State, invocation: Invocation) -> tuple[tuple[Invoker, ...], bool]:
        """The routed invokers, and whether every router decided (only then is it cached)."""
        current: Sequence[Invoker] = state.invokers
        decided = True
        for router in state.routers:
            current, why = router.route(current, invocation, self.consumer)
            decided = decided and not isinstance(why, RouteFailed)
            if not current:
                break
        return tuple(current), decided

    def explain(self, invokers: Sequence[Invoker], invocation: Invocation) -> list[RouteStep]:
        """A dry run: which providers each router keeps for ``invocation``, and why."""
        with self._lock:
            state = self._state if self._state.invokers is invokers else self._swap(invokers)
        steps = [RouteStep("providers", tuple(i.url for i in invokers), f"{len(invokers)} provider(s) listed")]
        current: Sequence[Invoker] = invokers
        for router in state.routers:
            current, why = router.route(current, invocation, self.consumer)
            steps.append(RouteStep(router.name, tuple(i.url for i in current), why))
            if not current:
                break
        return steps

    @property
    def routers(self) -> tuple[Router, ...]:
        """The routers in the order they run (for the current providers and rules)."""
        return self._state.routers


def explain_route(consumer: URL, providers: Iterable[URL], rules: Mapping[str, str],
                  invocation: Invocation, *, local_first: bool = False,
                  prefer_same_host: bool = False) -> list[RouteStep]:
    """What routing would do for ``invocation`` from ``consumer`` with registry ``rules`` (a dry run)."""
    chain = RouterChain(consumer, local_first=local_first, prefer_same_host=prefer_same_host)
    for name, text in rules.items():
        compile_rule(text, name)  # a broken stored rule is reported, not silently skipped
    chain.set_registry_rules(rules)
    return chain.explain(tuple(DryRunInvoker(u) for u in providers), invocation)
