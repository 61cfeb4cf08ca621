"""Per-call context held in ``contextvars``: attachments that travel with calls.

    with govrpc.attachments(tag="gray"):
        greeter.hello("ann")          # carries tag=gray as gRPC metadata

Attach returns a token and detach runs in ``finally``, so nesting and threads
(``contextvars.copy_context().run``) behave.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable, Iterator, Mapping

__all__ = ["CallRecorder", "CancelScope", "attachments", "cancel_scope", "current_attachments",
           "current_cancel_scope", "current_recorder"]

_ATTACHMENTS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "govrpc_attachments", default=None)


def current_attachments() -> Mapping[str, str] | None:
    """The attachments set for calls made from this context, or None."""
    return _ATTACHMENTS.get()


@contextlib.contextmanager
def attachments(**values: str) -> Iterator[None]:
    """Attach ``values`` (lower-case keys, string values) to every call made inside the block."""
    merged = dict(_ATTACHMENTS.get() or {})
    merged.update({k.lower().replace("_", "-"): str(v) for k, v in values.items()})
    token = _ATTACHMENTS.set(merged)
    try:
        yield
    finally:
        _ATTACHMENTS.reset(token)


class CancelScope:
    """Cancels the calls started inside it when ``cancel()`` is called (forking's losing branches).

    The transport registers a cancel function for each RPC it starts while a
    scope is current; one registered after ``cancel()`` runs at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: list[Callable[[], object]] = []
        self.cancelled = False

    def add(self, cancel: Callable[[], object]) -> None:
        with self._lock:
            if not self.cancelled:
                self._cancels.append(cancel)
                return
        cancel()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            cancels, self._cancels = self._cancels, []
        for cancel in cancels:
            cancel()


_CANCEL_SCOPE: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar(
    "govrpc_cancel_scope", default=None)


def current_cancel_scope() -> CancelScope | None:
    """The scope calls made from this context belong to, or None (the usual case)."""
    return _CANCEL_SCOPE.get()


@contextlib.contextmanager
def cancel_scope(scope: CancelScope) -> Iterator[CancelScope]:
    """Make calls inside the block cancellable through ``scope``."""
    token = _CANCEL_SCOPE.set(scope)
    try:
        yield scope
    finally:
        _CANCEL_SCOPE.reset(token)


class CallRecorder:
    """Where the layers below the consumer filters write down what they decided for a call.

    The tracing stage sets one (``govrpc.trace``) while a call's span records; the cluster
    and the router chain read ``current_recorder()`` and, only when it is not None, report
    through it. Nothing here imports the tracing stage: the arrow points down. Every method
    is a no-op in this base class; calls must be cheap and must not raise.
    """

    __slots__ = ()

    def listed(self, invocation: object, total: int, routed: int, routers: tuple[str, ...]) -> None:
        """The directory held ``total`` providers; ``routed`` were left after ``routers`` (and ejection)."""

    def chose(self, invocation: object, balancer: str, address: str) -> None:
        """``balancer`` picked the provider at ``address`` for the attempt starting now."""

    def retry(self, invocation: object, attempt: int, failed: str, error: BaseException) -> None:
        """Attempt ``attempt`` (2 or more) starts because the one on ``failed`` raised ``error``."""

    def event(self, name: str, attributes: dict[str, object]) -> None:
        """Anything else worth explaining (a refusal and its reason, a fallback)."""


_RECORDER: contextvars.ContextVar[CallRecorder | None] = contextvars.ContextVar("govrpc_recorder", default=None)

current_recorder = _RECORDER.get
"""The recorder of the call being made from this context, or None (the usual case: nothing records)."""
