"""The flow-control filters: thin links around the limiters, one per side.

``ProviderFlowFilter`` (provider side) admits a call through the service's and
then the method's limits: rate (``tps`` and family), calls executing at once
(``concurrency``: a bulkhead, so one slow service cannot take the workers of the
others on the same server); ``ConsumerFlowFilter`` (consumer, reference level)
through the consumer's own rate and calls in flight (``actives``), and gives
calls the configured ``priority``. Both bind to None when their URL sets no
flow key: no link, no cost. A refused call raises ``RateLimitedError`` built by
``govrpc.flowctl.events.refuse`` (counted, reported, logged).

Limiters whose settings did not change survive a rebind (a configurator change
elsewhere does not reset a bucket or forget the calls executing).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Mapping

from govrpc.context import _ATTACHMENTS
from govrpc.exceptions import ConfigurationError
from govrpc.extension import get_extension
from govrpc.flowctl.adaptive import SAMPLE_EVERY, OverloadDetector
from govrpc.flowctl.concurrency import ConcurrencyLimiter, ConnectionLimiter
from govrpc.flowctl.events import Refusal, refuse
from govrpc.flowctl.limiter import RateLimiter, TokenBucketLimiter
from govrpc.flowctl.pool import PoolLease
from govrpc.flowctl.priority import HEADROOM, PRIORITY_KEY, Priority, parse_priority
from govrpc.flowctl.settings import (
    ACTIVES,
    ADAPTIVE,
    CLUSTER_MODE,
    CLUSTER_PERIOD,
    CLUSTER_TPS,
    CONCURRENCY,
    CONNECTIONS,
    CONSUMER_FLOW_OPTIONS,
    PRIORITY,
    PROVIDER_FLOW_OPTIONS,
    TPS,
    TPS_BURST,
    TPS_LIMITER,
    TPS_QUEUE,
    TPS_WARMUP,
)
from govrpc.invocation import PEERS_WEIGHT_KEY, Filter, Invocation, Invoker
from govrpc.options import Option, split_method_key
from govrpc.url import URL

__all__ = ["ConsumerFlowFilter", "FlowGate", "ProviderFlowFilter"]

_RATE_KEYS = (TPS, TPS_BURST, TPS_LIMITER, TPS_WARMUP, TPS_QUEUE)
_sleep = time.sleep


class FlowGate:
    """The limits of one scope (a service, or one of its methods) on one side."""

    __slots__ = ("service", "method", "side", "rate", "rate_key", "rate_value", "queue", "slots", "slots_key",
                 "slots_reason", "share", "share_key", "share_value")

    def __init__(self, service: str, method: str, side: str, rate: RateLimiter | None, rate_key: str,
                 rate_value: str, queue: float, slots: ConcurrencyLimiter | None, slots_key: str,
                 slots_reason: str, share: RateLimiter | None = None, share_key: str = "",
                 share_value: str = "") -> None:
        self.service, self.method, self.side = service, method, side
        self.rate, self.rate_key, self.rate_value, self.queue = rate, rate_key, rate_value, queue
        self.slots, self.slots_key, self.slots_reason = slots, slots_key, slots_reason
        self.share, self.share_key, self.share_value = share, share_key, share_value

    def _refusal(self, invocation: Invocation, reason: str, key: str, value: str, priority: Priority,
                 retry_after: float | None, level: str = "normal") -> Exception:
        return refuse(Refusal(self.service, invocation.method, self.side, reason, key, value, str(priority),
                              level, retry_after), invocation)

    def take(self, method: str, priority: Priority, headroom: float) -> bool | Refusal:
        """The decision for a call of ``method`` when this gate never queues: True when a slot
        was taken (release it), False when admitted without one, the ``Refusal`` (not yet
        counted: the caller raises ``refuse(refusal)``) when refused."""
        share = self.share
        if share is not None and not share.acquire(headroom):
            return Refusal(self.service, method, self.side, "cluster", self.share_key, self.share_value,
                           str(priority), "normal", share.retry_after())
        rate = self.rate
        if rate is not None and not rate.acquire(headroom):
            return Refusal(self.service, method, self.side, "rate", self.rate_key, self.rate_value, str(priority),
                           "normal", rate.retry_after())
        slots = self.slots
        if slots is None:
            return False
        if not slots.acquire(headroom):
            return Refusal(self.service, method, self.side, self.slots_reason, self.slots_key, str(slots.limit),
                           str(priority), "normal", 0.0)
        return True

    def enter(self, invocation: Invocation, priority: Priority, headroom: float) -> bool:
        """Admit the call or raise ``RateLimitedError``; True when a slot was taken (release it)."""
        if not self.queue:
            taken = self.take(invocation.method, priority, headroom)
            if taken.__class__ is Refusal:
                raise refuse(taken, invocation)
            return taken  # type: ignore[return-value]
        share = self.share
        if share is not None and not share.acquire(headroom):
            raise self._refusal(invocation, "cluster", self.share_key, self.share_value, priority,
                                share.retry_after())
        rate = self.rate
        assert rate is not None  # a gate queues only with a queueing rate limiter
        remaining = invocation.remaining()
        bound = self.queue if self.queue < remaining else remaining
        wait = rate.reserve(bound, headroom)
        if wait is None:  # when the deadline is what stops it, a retry is pointless
            after = rate.retry_after() if bound == self.queue else None
            raise self._refusal(invocation, "rate", self.rate_key, self.rate_value, priority, after)
        if wait > 0.0:
            _sleep(wait)
        slots = self.slots
        if slots is None:
            return False
        if not slots.acquire(headroom):
            raise self._refusal(invocation, self.slots_reason, self.slots_key, str(slots.limit), priority, 0.0)
        return True

    async def aenter(self, invocation: Invocation, priority: Priority, headroom: float) -> bool:
        """The asyncio twin of ``enter``: the same limiters; a queueing limiter's wait is awaited."""
        rate = self.rate
        if rate is None or not self.queue:
            return self.enter(invocation, priority, headroom)  # nothing in it waits
        share = self.share
        if share is not None and not share.acquire(headroom):
            raise self._refusal(invocation, "cluster", self.share_key, self.share_value, priority,
                                share.retry_after())
        remaining = invocation.remaining()
        bound = self.queue if self.queue < remaining else remaining
        wait = rate.reserve(bound, headroom)
        if wait is None:
            after = rate.retry_after() if bound == self.queue else None
            raise self._refusal(invocation, "rate", self.rate_key, self.rate_value, priority, after)
        if wait > 0.0:
            await asyncio.sleep(wait)
        slots = self.slots
        if slots is None:
            return False
        if not slots.acquire(headroom):
            raise self._refusal(invocation, self.slots_reason, self.slots_key, str(slots.limit), priority, 0.0)
        return True


def _scope(url: URL) -> tuple[str, ...]:
    """What one set of limiters serves: one provider (address, service key) or one reference
    (its consumer URL's identity); settings and rebinds do not change it."""
    params = url.params
    return (url.address, url.path, params.get("version", ""), params.get("group", ""),
            params.get("timestamp", ""), params.get("pid", ""))


_CRITICAL = Priority.CRITICAL


def _priority_of(attachments: Mapping[str, str]) -> tuple[Priority, str | None]:
    text = attachments.get(PRIORITY_KEY)
    if text is None:
        return Priority.CRITICAL, None
    try:
        return parse_priority(text), text
    except ConfigurationError:
        return Priority.CRITICAL, None  # a caller's unknown level is served as the default


class _FlowFilterBase(Filter):
    """Builds the gates from a URL's settings, keeping limiters whose settings did not change."""

    slots_option: Option = CONCURRENCY
    slots_reason = "concurrency"

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], Any] = {}
        self._kept_lock = threading.Lock()
        self._registry: Any = None  # provider side: where pool leases live (see ``use_registry``)

    def _keep(self, key: tuple[Any, ...], make: Any, used: dict[tuple[Any, ...], Any]) -> Any:
        found = self._kept.get(key)
        if found is None:
            found = make()
        used[key] = found
        return found

    def _gate(self, url: URL, prefix: str, method: str, used: dict[tuple[Any, ...], Any]) -> FlowGate | None:
        params = url.params
        tps_key = prefix + TPS.name
        slots_key = prefix + self.slots_option.name
        rate_text, slots_text = params.get(tps_key), params.get(slots_key)
        share_key = prefix + CLUSTER_TPS.name
        total_text = params.get(share_key) if self.side == "provider" else None
        if not rate_text and not slots_text and not total_text:
            return None
        share: RateLimiter | None = None
        share_value = ""
        if total_text:
            total = CLUSTER_TPS.check(total_text, share_key)
            rate_share = cluster_share(total, params)
            if CLUSTER_MODE.read(url) == "pool":
                share = self._lease(url, method, prefix, total, rate_share, used).limiter
                share_value = f"{total_text} (pool: this instance's lease)"
            else:
                share_value = f"{total_text} (this instance's share: {rate_share:.4g}/s)"
                share = self._keep((_scope(url), prefix, "cluster", rate_share),
                                   lambda: TokenBucketLimiter(rate_share, max(1.0, rate_share)), used)
        rate: RateLimiter | None = None
        queue = 0.0
        if rate_text:
            settings = {o.name: o.check(params[prefix + o.name], prefix + o.name) if params.get(prefix + o.name)
                        else o.default for o in _RATE_KEYS}
            name = settings[TPS_LIMITER.name]
            cls = get_extension("govrpc.limiter", name)
            rate = self._keep((_scope(url), prefix, "rate", tuple(settings.items())),
                              lambda: cls(settings[TPS.name], settings[TPS_BURST.name],
                                          warmup=settings[TPS_WARMUP.name], queue=settings[TPS_QUEUE.name]),
                              used)
            if type(rate).reserve is not RateLimiter.reserve:  # a limiter that may ask a call to wait
                queue = settings[TPS_QUEUE.name]
        slots = None
        if slots_text:
            limit = self.slots_option.check(slots_text, slots_key)
            slots = self._keep((_scope(url), prefix, "slots", limit), lambda: ConcurrencyLimiter(limit), used)
        return FlowGate(url.path, method, self.side, rate, tps_key, rate_text or "", queue, slots, slots_key,
                        self.slots_reason, share, share_key, share_value)

    def _lease(self, url: URL, method: str, prefix: str, total: float, static: float,
               used: dict[tuple[Any, ...], Any]) -> PoolLease:
        """The pool lease of one scope (kept across rebinds, its settings updated)."""
        params = url.params
        period, weight = CLUSTER_PERIOD.read(url), float(params.get("weight", 100) or 100)
        lease: PoolLease = self._keep(
            (_scope(url), prefix, "pool", id(self._registry)),
            lambda: PoolLease(self._registry, url.path, url.address, group=params.get("group", ""),
                              version=params.get("version", ""), method=method, total=total, static=static,
                              weight=weight, period=period).start(), used)
        lease.update(total=total, static=static, weight=weight, period=period)
        return lease

    def use_registry(self, registry: Any) -> None:
        """Pool leases live in ``registry`` from now on; None (the server stops): end them all."""
        with self._kept_lock:
            self._registry = registry
            ended = [v for v in self._kept.values() if isinstance(v, PoolLease)] if registry is None else []
            if ended:
                self._kept = {k: v for k, v in self._kept.items() if not isinstance(v, PoolLease)}
        for lease in ended:
            lease.close()
        for lease in ended:
            lease.close(wait=2.0)  # each removes its lease from the registry as it ends

    def _gates(self, url: URL) -> tuple[FlowGate | None, dict[str, FlowGate]]:
        used: dict[tuple[Any, ...], Any] = {}
        service = self._gate(url, "", "*", used)
        methods: dict[str, FlowGate] = {}
        names = {m for m in (split_method_key(k)[0] for k in url.params) if m is not None}
        for name in sorted(names):
            gate = self._gate(url, f"{name}.", name, used)
            if gate is not None:
                methods[name] = gate
        with self._kept_lock:  # only what this URL uses stays kept for the next rebind
            scope = _scope(url)
            dropped = [v for k, v in self._kept.items() if k[0] == scope and k not in used]
            self._kept = {k: v for k, v in self._kept.items() if k[0] != scope}
            self._kept.update(used)
        for value in dropped:
            if isinstance(value, PoolLease):
                value.close()  # no wait: a rebind may run on a registry delivery thread
        return service, methods

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        """Unbound, the filter limits nothing (a chain uses what ``bind`` returns)."""
        return invoker.invoke(invocation)


class _BoundFlow(Filter):
    side = "both"
    detector: OverloadDetector | None = None
    connections: ConnectionLimiter | None = None

    def __init__(self, owner: Filter, service: FlowGate | None, methods: dict[str, FlowGate],
                 priorities: Mapping[str, str] | None = None) -> None:
        self.side = owner.side  # type: ignore[misc]
        self.level = owner.level  # type: ignore[misc]
        self.order = owner.order  # type: ignore[misc]
        self.service = service
        self.methods = methods
        self.priorities = priorities or {}

    plain = False
    """No priorities given, no connection limit, no adaptive protection: a call that names no
    level goes straight to the gates as critical (set by the filter that binds this one)."""

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        attachments = invocation.attachments
        if self.plain and PRIORITY_KEY not in attachments:  # the usual call
            return self._admit(invoker, invocation, _CRITICAL, None, 0.0)
        if self.priorities and PRIORITY_KEY not in attachments:  # the caller's own level wins
            given = self.priorities.get(invocation.method) or self.priorities.get("*")
            if given:
                attachments[PRIORITY_KEY] = given
        if PRIORITY_KEY in attachments:
            priority, text = _priority_of(attachments)
        else:  # the usual call: no level named, served as critical
            priority, text = _CRITICAL, None
        headroom = HEADROOM[priority]
        connections = self.connections
        if connections is not None and invocation.context is not None \
                and not connections.admit(invocation.context.peer):
            raise refuse(Refusal(invocation.service, invocation.method, self.side, "connections", CONNECTIONS.name,
                                 str(connections.limit), str(priority), retry_after=0.0), invocation)
        detector = self.detector
        if detector is not None:
            return self._adaptive(detector, invoker, invocation, priority, text)
        return self._admit(invoker, invocation, priority, text, headroom)

    def _adaptive(self, detector: OverloadDetector, invoker: Invoker, invocation: Invocation,
                  priority: Priority, text: str | None) -> Any:
        if not detector.admits(priority):
            raise refuse(Refusal(invocation.service, invocation.method, self.side, "shed", ADAPTIVE.name, "true",
                                 str(priority), str(detector.level), SAMPLE_EVERY), invocation)
        started = detector.begin()
        try:
            return self._admit(invoker, invocation, priority, text, HEADROOM[priority])
        finally:
            detector.end(started)

    def _admit(self, invoker: Invoker, invocation: Invocation, priority: Priority, text: str | None,
               headroom: float) -> Any:
        service = self.service
        method = self.methods.get(invocation.method) if self.methods else None
        held_service = service.enter(invocation, priority, headroom) if service is not None else False
        try:
            held_method = method.enter(invocation, priority, headroom) if method is not None else False
            try:
                if text is None or self.side == "consumer":
                    return invoker.invoke(invocation)
                # the calls the provider makes while serving this one carry its priority on
                token = _ATTACHMENTS.set({**(_ATTACHMENTS.get() or {}), PRIORITY_KEY: text})
                try:
                    return invoker.invoke(invocation)
                finally:
                    _ATTACHMENTS.reset(token)
            finally:
                if held_method:
                    method.slots.release()  # type: ignore[union-attr]
        finally:
            if held_service:
                service.slots.release()  # type: ignore[union-attr]


    service_name = ""

    def _provider_scope(self, call: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
        """``invoke`` without an Invocation (``Filter.scope``; bound as ``scope`` on a provider whose
        gates never queue and that limits no connections): the same detector and gates, the
        caller's level read from the request metadata."""
        text = None
        for key, value in call.invocation_metadata():
            if key == PRIORITY_KEY:
                text = value
                break
        priority = _CRITICAL
        if text is not None:
            priority, text = _priority_of({PRIORITY_KEY: text})
        detector = self.detector
        if detector is None:
            return self._gated(name, method, args, kwargs, priority, text)
        if not detector.admits(priority):
            raise refuse(Refusal(self.service_name, name, self.side, "shed", ADAPTIVE.name, "true", str(priority),
                                 str(detector.level), SAMPLE_EVERY))
        started = detector.begin()
        try:
            return self._gated(name, method, args, kwargs, priority, text)
        finally:
            detector.end(started)

    def _gated(self, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               priority: Priority, text: str | None) -> Any:
        headroom = HEADROOM[priority]
        service = self.service
        gate = self.methods.get(name) if self.methods else None
        held_service = service.take(name, priority, headroom) if service is not None else False
        if held_service.__class__ is Refusal:
            raise refuse(held_service)
        try:
            held_method = gate.take(name, priority, headroom) if gate is not None else False
            if held_method.__class__ is Refusal:
                raise refuse(held_method)
            try:
                if text is None:
                    return method(*args, **kwargs)
                # the calls the provider makes while serving this one carry its priority on
                token = _ATTACHMENTS.set({**(_ATTACHMENTS.get() or {}), PRIORITY_KEY: text})
                try:
                    return method(*args, **kwargs)
                finally:
                    _ATTACHMENTS.reset(token)
            finally:
                if held_method:
                    gate.slots.release()  # type: ignore[union-attr]
        finally:
            if held_service:
                service.slots.release()  # type: ignore[union-attr]

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke``: the same gates, detector and connection limit decide."""
        attachments = invocation.attachments
        if self.priorities and PRIORITY_KEY not in attachments:
            given = self.priorities.get(invocation.method) or self.priorities.get("*")
            if given:
                attachments[PRIORITY_KEY] = given
        priority, text = _priority_of(attachments)
        connections = self.connections
        if connections is not None and invocation.context is not None \
                and not connections.admit(invocation.context.peer):
            raise refuse(Refusal(invocation.service, invocation.method, self.side, "connections", CONNECTIONS.name,
                                 str(connections.limit), str(priority), retry_after=0.0), invocation)
        detector = self.detector
        if detector is None:
            return await self._aadmit(invoker, invocation, priority, text)
        if not detector.admits(priority):
            raise refuse(Refusal(invocation.service, invocation.method, self.side, "shed", ADAPTIVE.name, "true",
                                 str(priority), str(detector.level), SAMPLE_EVERY), invocation)
        started = detector.begin()
        try:
            return await self._aadmit(invoker, invocation, priority, text)
        finally:
            detector.end(started)

    async def _aadmit(self, invoker: Any, invocation: Invocation, priority: Priority, text: str | None) -> Any:
        headroom = HEADROOM[priority]
        service = self.service
        method = self.methods.get(invocation.method) if self.methods else None
        held_service = await service.aenter(invocation, priority, headroom) if service is not None else False
        try:
            held_method = await method.aenter(invocation, priority, headroom) if method is not None else False
            try:
                if text is None or self.side == "consumer":
                    return await invoker.ainvoke(invocation)
                token = _ATTACHMENTS.set({**(_ATTACHMENTS.get() or {}), PRIORITY_KEY: text})
                try:
                    return await invoker.ainvoke(invocation)
                finally:
                    _ATTACHMENTS.reset(token)
            finally:
                if held_method:
                    method.slots.release()  # type: ignore[union-attr]
        finally:
            if held_service:
                service.slots.release()  # type: ignore[union-attr]


def cluster_share(total: float, params: Mapping[str, str]) -> float:
    """This instance's share of a cluster-wide rate: ``total`` x its weight / the live instances'
    weights (``peers.weight``; equal weights: total / instances). Alone, or before its server
    knows its peers, an instance takes the whole total."""
    try:
        weight = float(params.get("weight", 100))
        weights = float(params.get(PEERS_WEIGHT_KEY, 0))
    except ValueError:
        return total
    if weights <= 0 or weight <= 0:
        return total
    return max(total * min(1.0, weight / weights), 1e-3)


class ProviderFlowFilter(_FlowFilterBase):
    """Provider flow control: ``tps`` (and family), ``concurrency`` and this instance's share of
    ``cluster.tps``, per service and method."""

    side = "provider"
    order = 20
    auto = True
    options = PROVIDER_FLOW_OPTIONS

    def wants_peers(self, url: URL) -> bool:
        return any(k == CLUSTER_TPS.name or k.endswith("." + CLUSTER_TPS.name) for k in url.params)

    def leases(self) -> list[PoolLease]:
        """The cluster-quota leases this filter renews now (``cluster.mode = pool``)."""
        with self._kept_lock:
            return [v for v in self._kept.values() if isinstance(v, PoolLease)]

    def bind(self, url: URL) -> Filter | None:
        limit = CONNECTIONS.read(url)
        kept, kept_peers = (_scope(url), "", "adaptive"), (_scope(url), "", "connections", limit)
        # read before the gates forget what this URL no longer uses
        previous, previous_peers = self._kept.get(kept), self._kept.get(kept_peers)
        service, methods = self._gates(url)
        adaptive = url.params.get(ADAPTIVE.name)
        detector = connections = None
        if adaptive and ADAPTIVE.check(adaptive):
            detector = previous if isinstance(previous, OverloadDetector) else OverloadDetector(url.path)
        if limit is not None:
            connections = previous_peers if isinstance(previous_peers, ConnectionLimiter) \
                else ConnectionLimiter(limit)
        with self._kept_lock:
            self._kept.update({k: v for k, v in ((kept, detector), (kept_peers, connections)) if v is not None})
        if service is None and not methods and detector is None and connections is None:
            return None
        bound = _BoundFlow(self, service, methods)
        bound.detector, bound.connections = detector, connections
        bound.plain = detector is None and connections is None
        bound.service_name = url.path
        gates = [g for g in (service, *methods.values()) if g is not None]
        if connections is None and not any(g.queue for g in gates):  # all it needs is in the metadata
            bound.scope = bound._provider_scope
        return bound


class ConsumerFlowFilter(_FlowFilterBase):
    """Consumer flow control (reference level): its own ``tps`` (and family), ``actives`` and
    the ``priority`` its calls get, per service and method."""

    side = "consumer"
    level = "reference"
    order = 20
    auto = True
    options = CONSUMER_FLOW_OPTIONS
    slots_option = ACTIVES
    slots_reason = "actives"

    def bind(self, url: URL) -> Filter | None:
        service, methods = self._gates(url)
        priorities: dict[str, str] = {}
        for key, value in url.params.items():
            method, base = split_method_key(key)
            if base == PRIORITY.name and value:
                priorities[method or "*"] = PRIORITY.check(value, key)
        if service is None and not methods and not priorities:
            return None
        bound = _BoundFlow(self, service, methods, priorities)
        bound.plain = not priorities
        return bound
