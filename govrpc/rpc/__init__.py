"""The transports, gRPC and in-process: the only package that imports ``grpc``.

Consumer end: ``invoker.GrpcInvoker`` (one per provider URL) over a shared
``ChannelPool`` (one channel per address). Provider end: ``server.GrpcServer``
dispatching ``/service/method`` to each service's provider filter chain.
In-process end: ``inprocess.InProcessInvoker`` calls a provider of this process
through the same chain and wire format (``wire.py``), without a socket.
Values travel as protobuf or through a ``serialization.Serializer``
(entry-point group ``govrpc.serializer``: ``msgpack``, ``json``).
"""

from govrpc.rpc.inprocess import InProcessInvoker
from govrpc.rpc.invoker import ChannelPool, GrpcInvoker, translate_error
from govrpc.rpc.serialization import JsonSerializer, MsgpackSerializer, Serializer
from govrpc.rpc.server import ExportedService, GrpcServer

__all__ = [
    "ChannelPool",
    "ExportedService",
    "GrpcInvoker",
    "GrpcServer",
    "InProcessInvoker",
    "JsonSerializer",
    "MsgpackSerializer",
    "Serializer",
    "translate_error",
]
