"""Degradation: circuit breakers, mask degradation, mocks and fallbacks, business switches.

Where it sits in the call path (consumer side)::

    proxy -> MaskFilter (reference level: force masks answer here; fail masks and
             fallbacks answer a call that failed after the cluster's retries)
          -> cluster: ``list`` leaves providers whose breaker is open out before the pick
          -> BreakerFilter (invoker level: one breaker per provider and method)
          -> transport

Both filters are ``govrpc.filter`` entry points (``breaker``, ``mask``), ``auto``:
bound only where a ``breaker.*`` or ``mock`` key is set. The decisions
(``breaker.CircuitBreaker`` and its states, ``mask.MaskSpec``) are pure and
synchronous, so the asyncio twin shares them. Switches (``switch``, ``fallback``)
are live values read from a process-local table. See docs/degrade.md.
"""

from govrpc.degrade.breaker import (
    BreakerSettings,
    BreakerTable,
    CircuitBreaker,
    ClosedState,
    HalfOpenState,
    OpenState,
    add_listener,
    remove_listener,
)
from govrpc.degrade.filters import BreakerFilter, MaskFilter
from govrpc.degrade.mask import MaskSpec, find_mock, mock, parse_mask
from govrpc.degrade.publish import BreakerPublisher
from govrpc.degrade.switches import Switch, fallback, switch, watch_switches

__all__ = [
    "BreakerFilter",
    "BreakerPublisher",
    "BreakerSettings",
    "BreakerTable",
    "CircuitBreaker",
    "ClosedState",
    "HalfOpenState",
    "MaskFilter",
    "MaskSpec",
    "OpenState",
    "Switch",
    "add_listener",
    "fallback",
    "find_mock",
    "mock",
    "parse_mask",
    "remove_listener",
    "switch",
    "watch_switches",
]
