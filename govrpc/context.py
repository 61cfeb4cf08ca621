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

__all__ = ["CancelScope", "attachments", "cancel_scope", "current_attachments", "current_cancel_scope"]

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
