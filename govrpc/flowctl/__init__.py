"""Flow control: where a service protects itself and is protected by its callers.

In the call path it sits in the provider filters (``ProviderFlowFilter``: rate,
concurrency per service and method, priority shedding) and in the consumer's
reference filters (``ConsumerFlowFilter``: its own rate, ``actives``, the priority
its calls carry). Rate limiters are found in the entry-point group
``govrpc.limiter`` (built-ins: ``tokenbucket``, ``slidingwindow``, ``warmup``,
``queueing``). Every refusal is a ``RateLimitedError`` that is counted and
reported (``add_refusal_listener``, ``refusal_counts``). Keys: docs/flowctl.md.
"""

from govrpc.flowctl.concurrency import ConcurrencyLimiter
from govrpc.flowctl.events import Refusal, add_refusal_listener, refusal_counts, remove_refusal_listener
from govrpc.flowctl.filter import ConsumerFlowFilter, ProviderFlowFilter
from govrpc.flowctl.limiter import (
    QueueingLimiter,
    RateLimiter,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    WarmupLimiter,
)
from govrpc.flowctl.priority import Priority

__all__ = [
    "ConcurrencyLimiter",
    "ConsumerFlowFilter",
    "Priority",
    "ProviderFlowFilter",
    "QueueingLimiter",
    "RateLimiter",
    "Refusal",
    "SlidingWindowLimiter",
    "TokenBucketLimiter",
    "WarmupLimiter",
    "add_refusal_listener",
    "refusal_counts",
    "remove_refusal_listener",
]
