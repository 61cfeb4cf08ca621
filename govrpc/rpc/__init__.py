"""The gRPC transport: the only package that imports ``grpc``.

Consumer end: ``invoker.GrpcInvoker`` (one per provider URL) over a shared
``ChannelPool`` (one channel per address). Provider end: ``server.GrpcServer``
dispatching ``/service/method`` to each service's provider filter chain.
Values travel as protobuf or through a ``serialization.Serializer``
(entry-point group ``govrpc.serializer``: ``msgpack``, ``json``).
"""

from govrpc.rpc.invoker import ChannelPool, GrpcInvoker, translate_error
from govrpc.rpc.serialization import JsonSerializer, MsgpackSerializer, Serializer
from govrpc.rpc.server import ExportedService, GrpcServer

__all__ = [
    "ChannelPool",
    "ExportedService",
    "GrpcInvoker",
    "GrpcServer",
    "JsonSerializer",
    "MsgpackSerializer",
    "Serializer",
    "translate_error",
]
