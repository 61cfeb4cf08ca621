"""The call model every layer shares: ``Invocation``, ``Result``, ``Invoker`` and ``Filter``.

A call becomes an ``Invocation`` at the proxy and travels down a chain of invokers:
filters, then a cluster invoker, then one transport invoker per provider. Every
link has one verb, ``invoke(invocation)``; a filter's verb also receives the next
invoker, gRPC's continuation style reduced to one method.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from govrpc.url import URL, ServiceKey

__all__ = ["Filter", "Invocation", "Invoker", "Result", "build_filter_chain"]


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

    @property
    def service(self) -> str:
        return self.key.service

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self.deadline - time.monotonic()

    def __str__(self) -> str:
        return f"{self.key}.{self.method}"


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

    Contract: one instance per chain; thread-safe; continues the call with
    ``invoker.invoke(invocation)`` or refuses it by raising; adds no blocking of its own.
    ``side`` says where it runs (``consumer``, ``provider`` or ``both``); lower
    ``order`` runs first (outermost).
    """

    side: ClassVar[str] = "both"
    order: ClassVar[int] = 0

    @abc.abstractmethod
    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        """Run around ``invoker.invoke(invocation)``."""


class _FilterLink(Invoker):
    __slots__ = ("filter", "next", "url")

    def __init__(self, filter_: Filter, next_: Invoker) -> None:
        self.filter = filter_
        self.next = next_
        self.url = next_.url

    def invoke(self, invocation: Invocation) -> Any:
        return self.filter.invoke(self.next, invocation)

    @property
    def available(self) -> bool:
        return self.next.available

    def close(self) -> None:
        self.next.close()


def build_filter_chain(filters: Iterable[Filter], invoker: Invoker) -> Invoker:
    """Wrap ``invoker`` so ``filters`` run in ascending ``order``; no filters costs nothing."""
    ordered: Sequence[Filter] = sorted(filters, key=lambda f: f.order)
    for filter_ in reversed(ordered):
        invoker = _FilterLink(filter_, invoker)
    return invoker
