"""The gRPC transport: the only package that imports ``grpc``.

Consumer end: ``invoker.GrpcInvoker`` (one per provider URL) over a shared
``ChannelPool`` (one channel per address). Provider end: ``server.GrpcServer``
dispatching ``/service/method`` to each service's provider filter chain.
Values travel as protobuf or through a ``serialization.Serializer``
(entry-point group ``govrpc.serializer``: ``msgpack``, ``json``).
"""
