"""Empty-push protection: a provider list that suddenly becomes empty is not trusted at once.

A registry accident (a wiped tree, every provider's session expiring at once
during a registry outage) looks exactly like "every provider stopped". The
guard keeps the last list for up to ``hold`` seconds; if providers come back
in that time nothing was lost, and if the list is still empty afterwards it
is applied, so a real shutdown of every provider is still honoured. Pure
logic with an explicit clock: a registry calls ``review`` on each push and
again when the returned recheck time has come.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

__all__ = ["EmptyPushGuard", "GuardDecision"]


@dataclasses.dataclass(frozen=True, slots=True)
class GuardDecision:
    """``apply``: pass the incoming list on; else keep the last one and review again in ``recheck_in`` s."""

    apply: bool
    recheck_in: float = 0.0
    released: bool = False  # True when an empty list is applied after being held back


class EmptyPushGuard:
    """Holds back, for at most ``hold`` seconds, a push that removes every provider at once.

    One instance per subscribed service; not thread-safe (a registry's dispatcher owns it).
    ``hold <= 0`` disables the protection.
    """

    __slots__ = ("hold", "held_since")

    def __init__(self, hold: float) -> None:
        self.hold = float(hold)
        self.held_since: float | None = None

    @property
    def holding(self) -> bool:
        return self.held_since is not None

    def review(self, last: Sequence[object] | None, incoming: Sequence[object], now: float) -> GuardDecision:
        """Decide about ``incoming`` given the ``last`` applied list (None: nothing applied yet)."""
        if incoming or self.hold <= 0 or not last:
            released = self.held_since is not None and not incoming
            self.held_since = None
            return GuardDecision(True, released=released)
        if self.held_since is None:
            self.held_since = now
            return GuardDecision(False, self.hold)
        waited = now - self.held_since
        if waited >= self.hold:
            self.held_since = None
            return GuardDecision(True, released=True)
        return GuardDecision(False, self.hold - waited)
