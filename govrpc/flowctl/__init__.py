"""Flow control: where a service protects itself and is protected by its callers.

In the call path it sits in the provider filters (``ProviderFlowFilter``: rate,
concurrency and the cluster share per service and method, client connections,
adaptive protection, priority shedding) and in the consumer's reference filters
(``ConsumerFlowFilter``: its own rate, ``actives``, the priority its calls carry).
Rate limiters are found in the entry-point group ``govrpc.limiter`` (built-ins:
``tokenbucket``, ``slidingwindow``, ``warmup``, ``queueing``). Every refusal is a
``RateLimitedError``, counted and reported (``add_refusal_listener``,
``refusal_counts``). The pool cluster quota (``cluster.mode = pool``) leases shares
from the registry on its own thread per lease (``govrpc.flowctl.pool``). Keys and
behaviour: docs/flowctl.md.
"""

from govrpc.flowctl.adaptive import Level, OverloadDetector, level_changes
from govrpc.flowctl.concurrency import ConcurrencyLimiter, ConnectionLimiter
from govrpc.flowctl.events import Refusal, add_refusal_listener, refusal_counts, remove_refusal_listener
from govrpc.flowctl.filter import ConsumerFlowFilter, ProviderFlowFilter
from govrpc.flowctl.limiter import (
    QueueingLimiter,
    RateLimiter,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    WarmupLimiter,
)
from govrpc.flowctl.pool import LeaseState, PoolLease, pool_shares
from govrpc.flowctl.priority import Priority

__all__ = [
    "ConcurrencyLimiter",
    "ConnectionLimiter",
    "ConsumerFlowFilter",
    "LeaseState",
    "Level",
    "OverloadDetector",
    "PoolLease",
    "Priority",
    "ProviderFlowFilter",
    "QueueingLimiter",
    "RateLimiter",
    "Refusal",
    "SlidingWindowLimiter",
    "TokenBucketLimiter",
    "WarmupLimiter",
    "add_refusal_listener",
    "level_changes",
    "pool_shares",
    "refusal_counts",
    "remove_refusal_listener",
]
