"""Make many providers look like one: directory, fault tolerance, load balancing.

Call path: reference filters -> ``ConfiguredClusterInvoker`` (``configured.py``:
the strategy configured for the call's method) -> a ``ClusterInvoker``
(``base.py``) -> ``Directory.list`` (``directory.py``: live providers as
``Endpoint``s, then routers; ejected ones dropped by ``outlier.py``) ->
``LoadBalancer.select`` -> the endpoint: invoker filters bound to that provider,
then the transport's invoker. Each provider's state (in flight, latency,
failures, ejection, breaker and permit slots) is one ``ProviderState``
(``stats.py``), made by the directory.

Strategy families, one file each: ``failover.py`` (failover, failback),
``failfast.py`` (failfast, failsafe), ``failcache.py``, ``parallel.py``
(forking, broadcast); balancers in ``loadbalance.py`` (random, roundrobin,
leastactive, shortestresponse, sticky) and ``consistenthash.py``.
Entry-point groups: ``govrpc.cluster`` (default ``failover``) and
``govrpc.loadbalance`` (default ``random``).
"""

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.configured import ConfiguredClusterInvoker
from govrpc.cluster.consistenthash import ConsistentHashLoadBalancer
from govrpc.cluster.directory import Directory, Endpoint, RegistryDirectory, StaticDirectory
from govrpc.cluster.failcache import FailcacheClusterInvoker, FailcacheFullError, RetryAccepted, on_give_up
from govrpc.cluster.failfast import FailfastClusterInvoker, FailsafeClusterInvoker
from govrpc.cluster.failover import FailbackClusterInvoker, FailoverClusterInvoker, RetryBudget
from govrpc.cluster.loadbalance import (
    LeastActiveLoadBalancer,
    LoadBalancer,
    RandomLoadBalancer,
    RoundRobinLoadBalancer,
    ShortestResponseLoadBalancer,
    StickyLoadBalancer,
)
from govrpc.cluster.outlier import OutlierDetector
from govrpc.cluster.parallel import BroadcastClusterInvoker, ForkingClusterInvoker
from govrpc.cluster.stats import ProviderState, stats_of

__all__ = [
    "BroadcastClusterInvoker",
    "ClusterInvoker",
    "ConfiguredClusterInvoker",
    "ConsistentHashLoadBalancer",
    "Directory",
    "Endpoint",
    "FailbackClusterInvoker",
    "FailcacheClusterInvoker",
    "FailcacheFullError",
    "FailfastClusterInvoker",
    "FailoverClusterInvoker",
    "FailsafeClusterInvoker",
    "ForkingClusterInvoker",
    "LeastActiveLoadBalancer",
    "LoadBalancer",
    "OutlierDetector",
    "ProviderState",
    "RandomLoadBalancer",
    "RegistryDirectory",
    "RetryAccepted",
    "RetryBudget",
    "RoundRobinLoadBalancer",
    "ShortestResponseLoadBalancer",
    "StaticDirectory",
    "StickyLoadBalancer",
    "on_give_up",
    "stats_of",
]
