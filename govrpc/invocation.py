"""The call model every layer shares: ``Invocation``, ``Result``, ``Invoker`` and ``Filter``.

A call becomes an ``Invocation`` at the proxy and travels down a chain of invokers::

    reference filters (once per logical call)      Filter.level == "reference"
      -> cluster invoker -> directory -> routers -> load balancer
      -> invoker filters (once per attempt on one provider)   Filter.level == "invoker"
      -> transport invoker  ==>  provider filters -> the user's method

Every link has one verb, ``invoke(invocation)``; a filter's verb also receives the
next invoker, gRPC's continuation style reduced to one method. A filter is bound
(``Filter.bind(url)``) to what it serves when a chain is built: the consumer URL of
a reference, the URL of one provider as a consumer sees it, or a provider's own
URL on its server. A filter with nothing to do there binds to None and is left
out of the chain: no link, no cost. On the provider side an ``Invocation`` carries
a ``ProviderContext``: the peer, the caller's application, binary metadata, the
method spec and a way to set trailing metadata.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

from govrpc.exceptions import ConfigurationError
from govrpc.extension import extension_names, get_extension
from govrpc.url import URL, ServiceKey

if TYPE_CHECKING:
    from govrpc.service import MethodSpec

__all__ = ["APPLICATION_KEY", "PEERS_KEY", "PEERS_WEIGHT_KEY", "Filter", "Invocation", "Invoker",
           "ProviderContext", "Result", "async_chain", "build_async_filter_chain", "build_filter_chain", "load_filters",
           "shortcut"]

APPLICATION_KEY = "govrpc-app"
"""Request metadata naming the calling consumer's application. govrpc's own consumers name it in
their channels' user-agent instead (``govrpc.rpc.wire.user_agent``: no entry per call); a provider
reads either."""


class ProviderContext:
    """What the provider side knows of a call besides its arguments (``Invocation.context``).

    ``peer`` is the caller's address as the transport gives it (``ipv4:127.0.0.1:5123``,
    or ``in-process``); ``application`` the caller's application name (empty when the
    caller did not send one); ``binary`` the ``-bin`` metadata (bytes values: trace
    propagation and load reports); ``spec`` the called method's ``MethodSpec`` (None
    for a method the service does not have). ``set_trailing`` adds trailing metadata
    to the response, on success and on failure alike.
    """

    __slots__ = ("peer", "application", "binary", "spec", "trailing")

    def __init__(self, peer: str = "", application: str = "", binary: Mapping[str, bytes] | None = None,
                 spec: MethodSpec | None = None) -> None:
        self.peer = peer
        self.application = application
        self.binary: Mapping[str, bytes] = binary or {}
        self.spec = spec
        self.trailing: list[tuple[str, str | bytes]] = []

    def set_trailing(self, key: str, value: str | bytes) -> None:
        """Send ``key: value`` as trailing metadata (lower-case key; bytes values need a ``-bin`` key)."""
        if key != key.lower():
            raise ConfigurationError(f"trailing metadata key {key!r} must be lower-case")
        if isinstance(value, bytes) != key.endswith("-bin"):
            raise ConfigurationError(f"trailing metadata {key!r}: bytes values take a '-bin' key and only they do")
        self.trailing.append((key, value))


@dataclasses.dataclass(frozen=True, slots=True)
class Invocation:
    """One call: which service and method, with what, and until when.

    ``deadline`` is a ``time.monotonic()`` instant shared by every attempt of the call.
    ``attachments`` travel to the provider as gRPC metadata (lower-case string keys).
    """

    key: ServiceKey
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    attachments: dict[str, str] = dataclasses.field(default_factory=dict)
    deadline: float = float("inf")
    oneway: bool = False
    context: ProviderContext | None = None  # provider side only

    @property
    def service(self) -> str:
        return self.key.service

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self.deadline - time.monotonic()

    def __str__(self) -> str:
        return f"{self.key}.{self.method}"


# the slots' descriptors' setters: writing through them skips the frozen class's __setattr__
_set_key, _set_method, _set_args, _set_kwargs, _set_attachments, _set_deadline, _set_oneway, _set_context = (
    Invocation.__dict__[name].__set__ for name in (
        "key", "method", "args", "kwargs", "attachments", "deadline", "oneway", "context"))


def _invocation_init(self: Invocation, key: ServiceKey, method: str, args: tuple[Any, ...] = (),
                     kwargs: Mapping[str, Any] | None = None, attachments: dict[str, str] | None = None,
                     deadline: float = float("inf"), oneway: bool = False,
                     context: ProviderContext | None = None) -> None:
    """Invocation's constructor: the generated one's signature and defaults (a new dict for
    ``kwargs`` and ``attachments`` left out), writing each slot through its descriptor: 0.5
    against 1.06 µs, one per call on each side (the generated one calls ``object.__setattr__``
    per field, which is how a frozen dataclass writes). The instance stays frozen."""
    _set_key(self, key)
    _set_method(self, method)
    _set_args(self, args)
    _set_kwargs(self, {} if kwargs is None else kwargs)
    _set_attachments(self, {} if attachments is None else attachments)
    _set_deadline(self, deadline)
    _set_oneway(self, oneway)
    _set_context(self, context)


assert [f.name for f in dataclasses.fields(Invocation)] == [
    "key", "method", "args", "kwargs", "attachments", "deadline", "oneway", "context"], "update _invocation_init"
Invocation.__init__ = _invocation_init  # type: ignore[method-assign]


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """The outcome of a call kept as a value: a return value or an exception."""

    value: Any = None
    exception: BaseException | None = None

    @classmethod
    def capture(cls, fn: Callable[..., Any], *args: Any) -> Result:
        try:
            return cls(fn(*args))
        except Exception as exc:  # noqa: BLE001 - the point is to keep it
            return cls(exception=exc)

    @property
    def ok(self) -> bool:
        return self.exception is None

    def unwrap(self) -> Any:
        if self.exception is not None:
            raise self.exception
        return self.value


class Invoker(abc.ABC):
    """Something that performs an ``Invocation``: a provider, a cluster, a filter link.

    Contract: thread-safe; ``invoke`` returns the value or raises a ``GovRpcError``
    (or the business exception); it never outlives ``invocation.deadline``.
    """

    url: URL

    @abc.abstractmethod
    def invoke(self, invocation: Invocation) -> Any:
        """Perform the call."""

    @property
    def available(self) -> bool:
        return True

    def close(self) -> None:
        """Release what the invoker holds; further calls fail."""


class Filter(abc.ABC):
    """A link in a consumer or provider filter chain (entry-point group ``govrpc.filter``).

    Contract: bound once per chain (``bind``); thread-safe; continues the call with
    ``invoker.invoke(invocation)`` or refuses it by raising; adds no blocking of its own.
    ``side`` says where it runs (``consumer``, ``provider`` or ``both``); on the consumer,
    ``level`` says where: ``reference`` (above the cluster, once per logical call:
    masks, method breakers, the call's span, consumer limits) or ``invoker`` (below the
    load balancer, once per attempt on one provider: the attempt's span, per-provider
    breakers and limits). Lower ``order`` runs first (outermost).
    """

    side: ClassVar[str] = "both"
    level: ClassVar[str] = "reference"
    order: ClassVar[int] = 0
    auto: ClassVar[bool] = False
    """Every ``Client`` / ``Server`` of its side includes it (one instance each): how the built-in
    stages (limits, breakers, masks, tracing) are always present yet cost nothing until a
    setting gives them work (``bind`` returns None until then). Others are listed by hand."""

    def bind(self, url: URL) -> Filter | None:
        """The filter serving ``url``, or None when it has nothing to do there (no link, no cost).

        ``url`` is the consumer URL of a reference (reference level), one provider's URL as
        the consumer sees it, configurators applied (invoker level), or the provider's own
        published URL (provider side). The default serves every URL with this instance.
        """
        return self

    def wants_peers(self, url: URL) -> bool:
        """Provider side: must ``url``'s binding know the live instances of its service? Then its
        server watches them and binds the filters to ``url`` with ``peers`` (how many, itself
        included) and ``peers.weight`` (their published weights summed) added, again whenever
        instances join or leave. Default False: no watch, no cost."""
        return False

    def use_registry(self, registry: Any) -> None:
        """Provider side: the server gives its filters its ``Registry`` as it starts (before it
        binds them) and None as it stops (after deregistering, before closing the registry):
        then end what you keep there. Default: nothing. A filter needing the registry (a
        cluster quota's leases) holds it from here, never by a global lookup."""

    scope: Scope | None = None
    """Provider side, optional: ``scope(call, name, method, args, kwargs)`` runs one call of the
    provider's method ``name`` from the gRPC call alone, with no ``Invocation`` (``call`` is its
    ``grpc.ServicerContext``: ``call.invocation_metadata()``, ``call.peer()``): its work around
    ``method(*args, **kwargs)`` (``method`` runs the scopes inside this one, then the provider's
    method). When every filter bound to a service has one, the server's calls take them, nested
    in chain order, and build no Invocation."""

    @abc.abstractmethod
    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        """Run around ``invoker.invoke(invocation)``."""


Scope = Callable[[Any, str, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]
"""``scope(call, name, method, args, kwargs)``: see ``Filter.scope``."""


def shortcut(chain: Invoker, target: Invoker) -> Scope | None:
    """The scopes of the filters ``chain`` (a ``build_filter_chain`` result around ``target``)
    consists of, nested as one scope in chain order, or None when one of its
    filters has no scope (or ``chain`` is ``target``: no filter)."""
    filters: list[Filter] = []
    link = chain
    while isinstance(link, _FilterLink):
        if link.filter.scope is None:
            return None
        filters.append(link.filter)
        link = link.next
    if link is not target or not filters:
        return None
    scope: Scope = filters[-1].scope  # type: ignore[assignment]
    for outer in reversed(filters[:-1]):
        scope = _nested(outer.scope, scope)  # type: ignore[arg-type]
    return scope


def _nested(outer: Scope, inner: Scope) -> Scope:
    """``outer`` around ``inner``: one scope whose ``method`` for ``outer`` runs ``inner``."""
    def scope(call: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return outer(call, name, functools.partial(_run_scope, inner, call, name, method), args, kwargs)

    return scope


def _run_scope(scope: Scope, call: Any, name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return scope(call, name, method, args, kwargs)


PEERS_KEY, PEERS_WEIGHT_KEY = "peers", "peers.weight"
"""What a provider's server adds to the URL its filters bind to when one ``wants_peers``."""


class _FilterLink(Invoker):
    """A filter and what follows it. Its ``invoke(invocation)`` is ``filter.invoke(next,
    invocation)``: a ``functools.partial`` stored on the instance, so a link adds no Python
    frame to a call (hence a ``__dict__``, not ``__slots__``)."""

    def __init__(self, filter_: Filter, next_: Invoker) -> None:
        self.filter = filter_
        self.next = next_
        self.url = next_.url
        self.invoke = functools.partial(self._verb(filter_), next_)  # type: ignore[method-assign]

    @staticmethod
    def _verb(filter_: Filter) -> Callable[..., Any]:
        return filter_.invoke

    def invoke(self, invocation: Invocation) -> Any:  # the partial above stands in for it
        return self.filter.invoke(self.next, invocation)

    def future(self, invocation: Invocation, run: Any) -> Any:
        """The filter's own non-blocking variant, ``future(next, invocation, run)`` (see ``starts_future``)."""
        return self.filter.future(self.next, invocation, run)  # type: ignore[attr-defined]

    @property
    def available(self) -> bool:
        return self.next.available

    def close(self) -> None:
        self.next.close()


def build_filter_chain(filters: Iterable[Filter], invoker: Invoker, url: URL | None = None) -> Invoker:
    """Wrap ``invoker`` so ``filters``, each bound to ``url`` (default: the invoker's), run in
    ascending ``order``; a filter bound to None is left out, and no filter costs nothing."""
    target = url if url is not None else invoker.url
    bound = [b for b in (f.bind(target) for f in filters) if b is not None]
    ordered: Sequence[Filter] = sorted(bound, key=lambda f: f.order)
    for filter_ in reversed(ordered):
        invoker = _FilterLink(filter_, invoker)
    return invoker


class _AsyncFilterLink(_FilterLink):
    def __init__(self, filter_: Filter, next_: Invoker) -> None:
        super().__init__(filter_, next_)
        # the filter's coroutine itself, not one awaiting it: no coroutine of its own per call
        self.ainvoke = functools.partial(filter_.ainvoke, next_)  # type: ignore[attr-defined, method-assign]

    @staticmethod
    def _verb(filter_: Filter) -> Callable[..., Any]:
        def refuse(next_: Invoker, invocation: Invocation) -> Any:
            raise ConfigurationError(f"{invocation}: this chain is asyncio's: await ainvoke")
        return refuse

    async def ainvoke(self, invocation: Invocation) -> Any:
        return await self.filter.ainvoke(self.next, invocation)  # type: ignore[attr-defined]


def async_chain(chain: Invoker, invoker: Invoker) -> Invoker:
    """The asyncio twin of ``chain`` (a ``build_filter_chain`` result): the same bound filters, in
    the same order, as links whose verb is ``ainvoke``, around ``invoker`` (which has one) instead
    of the chain's end. A filter runs on asyncio through its ``async def ainvoke(invoker,
    invocation)`` (continuing with ``await invoker.ainvoke(invocation)``), which wraps the same
    decision objects as its ``invoke``; a bound filter without one is refused (ConfigurationError)."""
    filters = []
    while isinstance(chain, _FilterLink):
        filters.append(chain.filter)
        chain = chain.next
    for filter_ in filters:
        if not callable(getattr(filter_, "ainvoke", None)):
            raise ConfigurationError(f"filter {type(filter_).__name__} has no asyncio twin (async def ainvoke): "
                                     f"it cannot run in an AsyncClient or AsyncServer")
    for filter_ in reversed(filters):
        invoker = _AsyncFilterLink(filter_, invoker)
    return invoker


def build_async_filter_chain(filters: Iterable[Filter], invoker: Invoker, url: URL | None = None) -> Invoker:
    """``async_chain`` of ``build_filter_chain(filters, invoker, url)``: filters bound for asyncio."""
    return async_chain(build_filter_chain(filters, invoker, url), invoker)


def starts_future(chain: Invoker, cluster: Invoker) -> bool:
    """Can ``chain`` (reference filters around ``cluster``) start a call without a thread?

    True when every filter in it has a ``future(next, invocation, run)`` method (as
    ``TraceFilter`` does): ``.future()`` then calls ``chain.future`` and the cluster still
    sends its first attempt on the transport's non-blocking call."""
    link = chain
    while isinstance(link, _FilterLink):
        if not callable(getattr(link.filter, "future", None)):
            return False
        link = link.next
    return link is cluster


LEVELS = ("reference", "invoker")


def auto_filters(side: str) -> list[Filter]:
    """One instance of every installed ``govrpc.filter`` whose class is ``auto`` for ``side``."""
    made = []
    for name in extension_names("govrpc.filter"):
        cls = get_extension("govrpc.filter", name)
        if isinstance(cls, type) and issubclass(cls, Filter) and cls.auto and cls.side in (side, "both"):
            made.append(cls())
    return made


def load_filters(filters: Iterable[Filter | str], side: str, *, auto: bool = True) -> list[Filter]:
    """Filter instances from instances or ``govrpc.filter`` names, checked for ``side``, after the
    installed ``auto`` filters of that side (unless ``auto`` is False or one of their class is given).

    Raises ``ConfigurationError`` for an object that is not a ``Filter``, a filter of the
    other side, or an unknown ``level``; ``ExtensionNotFoundError`` for an unknown name.
    """
    loaded = []
    for f in filters:
        if isinstance(f, str):
            f = get_extension("govrpc.filter", f)()
        if not isinstance(f, Filter):
            raise ConfigurationError(f"{f!r} is not a govrpc Filter")
        if f.side not in (side, "both"):
            raise ConfigurationError(f"filter {type(f).__name__} runs on the {f.side} side, not the {side} side")
        if side == "consumer" and f.level not in LEVELS:
            raise ConfigurationError(f"filter {type(f).__name__}: level must be one of {', '.join(LEVELS)}, "
                                     f"not {f.level!r}")
        loaded.append(f)
    if auto:
        given = {type(f) for f in loaded}
        loaded = [f for f in auto_filters(side) if type(f) not in given] + loaded
    return loaded
