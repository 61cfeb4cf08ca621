"""The degradation filters: thin links around the pure decisions of ``breaker`` and ``mask``.

- ``BreakerFilter`` (consumer, invoker level: once per attempt on one provider; auto):
  bound only where a ``breaker.*`` key is set (``breaker = off`` binds nothing). Its
  ``BreakerTable`` lives in the provider's ``ProviderState.breaker``, where the
  cluster's ``list`` reads it to leave open providers out before the pick.
- ``MaskFilter`` (consumer, reference level: once per logical call, after the
  cluster's retries; auto): bound only where ``mock`` / ``{method}.mock`` is set.
"""

from __future__ import annotations

import time
from typing import Any, Callable, ClassVar, Iterable

from govrpc.degrade.breaker import BREAKER_OPTIONS, BreakerSettings, BreakerTable, CircuitBreaker
from govrpc.degrade.mask import MASK, MOCK, MaskSpec, find_mock, is_failure, masks_of
from govrpc.exceptions import (
    CallTimeoutError,
    CancelledError,
    CircuitOpenError,
    ConfigurationError,
    GovRpcError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteError,
)
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.url import URL, ServiceKey

__all__ = ["BreakerFilter", "MaskFilter", "breaker_outcome"]

_monotonic = time.monotonic
_SUFFIXES = tuple(f".{o.name}" for o in BREAKER_OPTIONS)


def breaker_outcome(exc: BaseException, business: bool) -> bool | None:
    """Does ``exc`` count against a breaker: True (failure), False (an answer) or None (neither)?

    Transport failures and timeouts count; a limit refusal, an open breaker further down and a
    call we cancelled tell nothing; a business exception is an answer unless ``business``."""
    if isinstance(exc, (ProviderUnavailableError, CallTimeoutError)):
        return True
    if isinstance(exc, (RateLimitedError, CircuitOpenError, CancelledError)):
        return None
    if isinstance(exc, RemoteError) or (isinstance(exc, Exception) and not isinstance(exc, GovRpcError)):
        return business
    if isinstance(exc, Exception):
        return False
    return None  # KeyboardInterrupt and the like


class BreakerFilter(Filter):
    """Circuit breakers per provider and method (see ``govrpc.degrade.breaker``).

    ``listeners``: callables ``(breaker, old, new)`` or ``pybreaker.CircuitBreakerListener``s;
    ``storage``: ``name -> pybreaker.CircuitBreakerStorage`` (e.g. a ``CircuitRedisStorage``
    to share breaker state across processes). Give an instance in ``Client(filters=[...])``
    to set them; otherwise every Client has one with neither.
    """

    side: ClassVar[str] = "consumer"
    level: ClassVar[str] = "invoker"
    order: ClassVar[int] = 200
    auto: ClassVar[bool] = True
    options = BREAKER_OPTIONS

    def __init__(self, *, listeners: Iterable[Any] = (), storage: Callable[[str], Any] | None = None) -> None:
        self.listeners = tuple(listeners)
        self.storage = storage
        self.on_change: Callable[[CircuitBreaker], None] | None = None  # set by the client (publishing)

    def bind(self, url: URL) -> Filter | None:
        params = url.params
        if not any(k == "breaker" or k.startswith("breaker.") or k.endswith(_SUFFIXES) for k in params):
            return None
        default = BreakerSettings.from_url(url)
        methods = {}
        for key in params:
            for suffix in _SUFFIXES:
                method = key[:-len(suffix)]
                if key.endswith(suffix) and method.isidentifier() and method != "breaker":
                    methods[method] = BreakerSettings.from_url(url, method)
        if default is None and not any(methods.values()):
            return None
        table = BreakerTable(url.path, url.address, default, methods, listeners=self.listeners,
                             storage=self.storage, on_change=self._changed)
        return _BoundBreaker(table)

    def _changed(self, breaker: CircuitBreaker) -> None:
        on_change = self.on_change
        if on_change is not None:
            on_change(breaker)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # pragma: no cover - bound copies run
        return invoker.invoke(invocation)


class _BoundBreaker(Filter):
    side: ClassVar[str] = "consumer"
    level: ClassVar[str] = "invoker"
    order: ClassVar[int] = BreakerFilter.order

    def __init__(self, table: BreakerTable) -> None:
        self.table = table

    def attach_state(self, state: Any) -> None:
        """Put the table in the provider's state, keeping the breakers it has when the settings
        did not change (endpoints are rebuilt on every configurator change)."""
        existing = state.breaker
        if isinstance(existing, BreakerTable) and existing.same_settings(self.table):
            self.table = existing
        else:
            state.breaker = self.table

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        # CircuitBreaker.acquire / record inlined for a closed breaker: this runs on every attempt
        table = self.table
        breaker = table.breakers.get(invocation.method) or table.get(invocation.method)
        if breaker is None:
            return invoker.invoke(invocation)
        admitted = breaker.state
        if not admitted.closed:
            admitted = breaker.acquire()  # type: ignore[assignment]
            if admitted is None:
                raise CircuitOpenError(f"{invocation}: the circuit breaker of {invoker.url.address} is "
                                       f"{breaker.state.name}", invocation=invocation)
        started = _monotonic()
        try:
            result = invoker.invoke(invocation)
        except BaseException as exc:
            ended = _monotonic()
            breaker.record(admitted, breaker_outcome(exc, breaker.settings.business), ended - started, ended)
            raise
        ended = _monotonic()
        admitted.on_success(breaker, ended - started, ended)
        if breaker._pending:
            breaker._flush()
        return result

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke``: the same breaker, its decisions around an awaited attempt."""
        breaker = self.table.get(invocation.method)
        if breaker is None:
            return await invoker.ainvoke(invocation)
        admitted = breaker.acquire()
        if admitted is None:
            raise CircuitOpenError(f"{invocation}: the circuit breaker of {invoker.url.address} is "
                                   f"{breaker.state.name}", invocation=invocation)
        started = _monotonic()
        try:
            result = await invoker.ainvoke(invocation)
        except BaseException as exc:
            ended = _monotonic()
            breaker.record(admitted, breaker_outcome(exc, breaker.settings.business), ended - started, ended)
            raise
        ended = _monotonic()
        admitted.on_success(breaker, ended - started, ended)
        if breaker._pending:
            breaker._flush()
        return result


class MaskFilter(Filter):
    """Mask degradation and fallbacks (``mock`` / ``{method}.mock``, see ``govrpc.degrade.mask``)."""

    side: ClassVar[str] = "consumer"
    level: ClassVar[str] = "reference"
    order: ClassVar[int] = 50
    auto: ClassVar[bool] = True
    options = (MASK,)

    def bind(self, url: URL) -> Filter | None:
        if "mock" not in url.params and not any(k.endswith(".mock") for k in url.params):
            return None
        default, methods = masks_of(url)
        if default is None and not methods:
            return None
        instance = None
        wanted = [(k, s) for k, s in (("mock", default), *((f"{m}.mock", s) for m, s in methods.items()))
                  if s is not None and s.action == MOCK]
        if wanted:
            key = ServiceKey(url.path, url.params.get("version", ""), url.params.get("group", ""))
            instance = find_mock(key)
            if instance is None:
                raise ConfigurationError(f"{wanted[0][0]} = {wanted[0][1].text}: no local mock class for "
                                         f"{key} (mark one with @govrpc.mock({key.service!r}))")
            for name, _spec in wanted:
                method = name[:-len(".mock")]
                if name != "mock" and not callable(getattr(instance, method, None)):
                    raise ConfigurationError(f"{name}: the mock {type(instance).__name__} of {key} "
                                             f"has no method {method!r}")
        return _BoundMask(default, methods, instance)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # pragma: no cover - bound copies run
        return invoker.invoke(invocation)


class _BoundMask(Filter):
    side: ClassVar[str] = "consumer"
    level: ClassVar[str] = "reference"
    order: ClassVar[int] = MaskFilter.order

    def __init__(self, default: MaskSpec | None, methods: dict[str, MaskSpec], instance: Any) -> None:
        self.default = default
        self.methods = methods
        self.instance = instance

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        spec = self.methods.get(invocation.method, self.default) if self.methods else self.default
        if spec is None:
            return invoker.invoke(invocation)
        if spec.force:
            return spec.act(invocation, self.instance)
        try:
            return invoker.invoke(invocation)
        except Exception as exc:
            if not is_failure(exc):
                raise
            return spec.act(invocation, self.instance, exc)

    async def ainvoke(self, invoker: Any, invocation: Invocation) -> Any:
        """The asyncio twin of ``invoke``: the same mask decides."""
        spec = self.methods.get(invocation.method, self.default) if self.methods else self.default
        if spec is None:
            return await invoker.ainvoke(invocation)
        if spec.force:
            return spec.act(invocation, self.instance)
        try:
            return await invoker.ainvoke(invocation)
        except Exception as exc:
            if not is_failure(exc):
                raise
            return spec.act(invocation, self.instance, exc)
