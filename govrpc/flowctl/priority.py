"""Call priorities: the criticality levels of Google's SRE book ("Handling Overload").

A call carries its priority in the ``priority`` attachment
(``with govrpc.attachments(priority="sheddable"): ...``), or gets the one its
consumer configures (``priority`` / ``{method}.priority``); without either it is
``critical``. A provider with flow control passes the priority of the call it
serves on to the calls it makes meanwhile. Under load the lowest levels are
refused first: each level leaves a share of every limit free for the levels
above it (``HEADROOM``), so ``sheddable`` calls stop while half a limit is
still free and ``critical_plus`` calls are refused last.
"""

from __future__ import annotations

import enum
from typing import Mapping

from govrpc.exceptions import ConfigurationError

__all__ = ["HEADROOM", "PRIORITY_KEY", "Priority", "parse_priority"]

PRIORITY_KEY = "priority"
"""The attachment (gRPC metadata) and option that carry a call's priority."""


class Priority(enum.IntEnum):
    """Criticality of a call; a higher value is refused later."""

    SHEDDABLE = 0
    SHEDDABLE_PLUS = 1
    CRITICAL = 2
    CRITICAL_PLUS = 3

    def __str__(self) -> str:
        return self.name.lower()


_BY_NAME: Mapping[str, Priority] = {str(p): p for p in reversed(Priority)}  # highest first

HEADROOM: Mapping[Priority, float] = {
    Priority.SHEDDABLE: 0.5,
    Priority.SHEDDABLE_PLUS: 0.25,
    Priority.CRITICAL: 0.0,
    Priority.CRITICAL_PLUS: 0.0,
}
"""Share of a limit a call of that level must leave free: its refusal point.

On a token bucket the headroom only shortens the burst a level may take, not the
sustained rate; on a window or a concurrency limit it is the share kept for the
levels above. ``critical_plus`` differs from ``critical`` under adaptive
protection: the last level shed when the process itself is overloaded."""


def parse_priority(text: str) -> Priority:
    """The ``Priority`` named ``text``; raises ``ConfigurationError`` listing the levels."""
    found = _BY_NAME.get(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        raise ConfigurationError(f"priority must be one of {', '.join(_BY_NAME)}, not {text!r}")
    return found
