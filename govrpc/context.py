"""Per-call context held in ``contextvars``: attachments that travel with calls.

    with govrpc.attachments(tag="gray"):
        greeter.hello("ann")          # carries tag=gray as gRPC metadata

Attach returns a token and detach runs in ``finally``, so nesting and threads
(``contextvars.copy_context().run``) behave.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Mapping

__all__ = ["attachments", "current_attachments"]

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
