"""govrpc: governed RPC for Python on the standard gRPC stack.

The public face. A provider marks a class with ``@service`` and hosts it on a
``Server``; a consumer's ``Client`` gives proxies whose calls travel::

    proxy -> Invocation -> consumer filters -> cluster (failover...) -> directory
          -> routers -> load balancer -> gRPC channel  ==>  server filters -> method

Packages: ``registry`` (where providers are found), ``cluster`` (directory,
fault tolerance, balancing), ``router``, ``flowctl``, ``degrade``, ``trace``
(governance stages), ``rpc`` (the gRPC transport; the only one importing grpc).
"""

from govrpc.admin import Admin
from govrpc.client import Client
from govrpc.context import attachments
from govrpc.exceptions import (
    CallTimeoutError,
    CircuitOpenError,
    ConfigurationError,
    ConnectionRefusedByProviderError,
    ExtensionNotFoundError,
    GovRpcError,
    MessageTooLargeError,
    MethodNotFoundError,
    NoProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RegistryError,
    RegistryUnreachableError,
    RemoteError,
    RpcError,
    RuleError,
    SerializationError,
    UnauthenticatedError,
    safe_exception,
)
from govrpc.invocation import Filter, Invocation, Invoker, Result
from govrpc.rpc.serialization import serializable
from govrpc.server import Server
from govrpc.service import method, service
from govrpc.url import URL, ServiceKey

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "CallTimeoutError",
    "CircuitOpenError",
    "Client",
    "ConfigurationError",
    "ConnectionRefusedByProviderError",
    "ExtensionNotFoundError",
    "Filter",
    "GovRpcError",
    "Invocation",
    "Invoker",
    "MessageTooLargeError",
    "MethodNotFoundError",
    "NoProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RegistryError",
    "RegistryUnreachableError",
    "RemoteError",
    "Result",
    "RpcError",
    "RuleError",
    "SerializationError",
    "Server",
    "ServiceKey",
    "URL",
    "UnauthenticatedError",
    "attachments",
    "method",
    "safe_exception",
    "serializable",
    "service",
]
