"""The router contract: what every router is, reads and returns, and the helpers routers share.

This module sits at the bottom of ``govrpc.router``: the concrete routers
(``condition``, ``script``, ``tag``, ``local``) import it, and ``chain`` imports
them; nothing here imports another router module.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Hashable, Sequence

from govrpc.invocation import Invocation, Invoker
from govrpc.router.rule import RouteRule
from govrpc.url import URL

__all__ = ["FORCE_KEY", "TAG_KEY", "Reads", "RouteFailed", "Router", "argument_text", "arguments_key",
           "typed_values"]

TAG_KEY = "tag"             # the attachment naming a call's tag
FORCE_KEY = "tag-force"     # "true": only providers with that tag, never a fallback


@dataclasses.dataclass(frozen=True, slots=True)
class Reads:
    """What a router reads of an invocation besides its method (so the chain knows its cache key)."""

    attachments: frozenset[str] = frozenset()
    arguments: frozenset[int] = frozenset()
    all_arguments: bool = False
    all_attachments: bool = False

    def __or__(self, other: Reads) -> Reads:
        return Reads(self.attachments | other.attachments, self.arguments | other.arguments,
                     self.all_arguments or other.all_arguments, self.all_attachments or other.all_attachments)


class RouteFailed(str):
    """A ``why`` saying the router could not decide (a script failed): the chain uses the
    result for this call but does not cache it, so the next call tries again."""


class Router(abc.ABC):
    """Narrows the providers of a call (group ``govrpc.router``; a rule's ``kind`` names the class).

    Contract: built once per rule version by ``from_rule`` (raises ``RuleError``);
    pure, thread-safe, never blocks; ``route`` reads of the invocation only its
    method and what ``reads`` declares, and returns the invokers it keeps (a subset,
    possibly empty) with a one-line reason (a ``RouteFailed`` when it could not
    decide). ``runtime`` routers are never cached.
    """

    name: str = ""
    priority: int = 0
    runtime: bool = False
    reads: Reads = Reads()

    @classmethod
    def from_rule(cls, rule: RouteRule) -> Sequence[Router]:
        """The routers a rule document of this kind describes; raises ``RuleError``."""
        raise rule.error(f"kind {rule.kind!r} cannot be built from a rule")

    @abc.abstractmethod
    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        """The invokers kept for this call and why."""


def typed_values(values: Sequence[Any]) -> tuple[tuple[type, Any], ...]:
    """Values with their types, so 1, True and 1.0 (equal in Python) are different cache keys."""
    return tuple((type(v), v) for v in values)


def arguments_key(invocation: Invocation) -> Hashable:
    """Every positional and keyword argument of a call with its type: a cache key for routers that
    read all of them (``TypeError`` on hashing it if some argument cannot be hashed)."""
    kwargs = invocation.kwargs
    return (typed_values(invocation.args),
            tuple(sorted((k, type(v), v) for k, v in kwargs.items())) if kwargs else ())


def argument_text(args: Sequence[Any], index: int) -> str | None:
    """``arguments[i]`` as the condition grammar compares it (Java's string form for booleans and null)."""
    if index >= len(args):
        return None
    value = args[index]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
