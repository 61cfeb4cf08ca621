"""asyncio twins of the I/O layers: ``AsyncClient``, ``AsyncServer`` and their transports.

Call path: ``AsyncMethodProxy`` -> reference filters (``ainvoke``) -> ``AsyncClusterInvoker``
(``cluster.py``: the asyncio driver of the very strategy objects ``Client`` uses, with the
same directory, routers, balancers and provider state) -> endpoint (invoker filters'
``ainvoke``) -> ``AsyncGrpcInvoker`` (``transport.py``, grpc.aio) ==> ``AsyncServer``
(``server.py``) -> provider filters (``ainvoke``) -> the user's ``async def`` or plain method.
No entry-point group of its own: strategies, balancers, routers, filters and registries
are found through the usual ones.
"""

from govrpc.aio.client import AsyncClient, AsyncMethodProxy, AsyncServiceProxy
from govrpc.aio.cluster import AsyncClusterInvoker
from govrpc.aio.server import AsyncServer
from govrpc.aio.transport import AsyncChannelPool, AsyncGrpcInvoker

__all__ = [
    "AsyncChannelPool",
    "AsyncClient",
    "AsyncClusterInvoker",
    "AsyncGrpcInvoker",
    "AsyncMethodProxy",
    "AsyncServer",
    "AsyncServiceProxy",
]
