"""Make many providers look like one: directory, fault tolerance, load balancing.

Call path: consumer filters -> ``ClusterInvoker`` (``failover.py``) ->
``Directory.list`` (``directory.py``: live providers, then routers) ->
``LoadBalancer.select`` (``loadbalance.py``) -> the transport's invoker.
Entry-point groups: ``govrpc.cluster`` (default ``failover``) and
``govrpc.loadbalance`` (default ``random``).
"""

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory, RegistryDirectory, StaticDirectory
from govrpc.cluster.failover import FailoverClusterInvoker
from govrpc.cluster.loadbalance import LoadBalancer, RandomLoadBalancer

__all__ = [
    "ClusterInvoker",
    "Directory",
    "FailoverClusterInvoker",
    "LoadBalancer",
    "RandomLoadBalancer",
    "RegistryDirectory",
    "StaticDirectory",
]
