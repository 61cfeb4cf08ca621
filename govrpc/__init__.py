"""govrpc: governed RPC for Python on the standard gRPC stack.

The public face. A provider marks a class with ``@service`` and hosts it on a
``Server``; a consumer's ``Client`` gives proxies whose calls travel::

    proxy -> Invocation -> consumer filters -> cluster (failover...) -> directory
          -> routers -> load balancer -> gRPC channel  ==>  server filters -> method

Packages: ``registry`` (where providers are found), ``cluster`` (directory,
fault tolerance, balancing), ``router``, ``flowctl``, ``degrade``, ``trace``
(governance stages), ``rpc`` (the gRPC transport; the only one importing grpc).
"""

import importlib as _importlib
from typing import TYPE_CHECKING, Any as _Any

# ``service`` is also the name of a submodule: importing govrpc.service would rebind it to the
# module, so the decorators (a light module: no grpc) are bound eagerly, after it
from govrpc.service import method, service

# Public names load on first use (PEP 562), so ``import govrpc.url`` or ``govrpc.exceptions``
# pulls in neither grpc nor msgpack; ``from govrpc import Client`` loads what a client needs.
_LAZY = {
    "Admin": "govrpc.admin",
    "CallTimeoutError": "govrpc.exceptions",
    "CircuitOpenError": "govrpc.exceptions",
    "Client": "govrpc.client",
    "ConfigurationError": "govrpc.exceptions",
    "ConnectionRefusedByProviderError": "govrpc.exceptions",
    "ExtensionNotFoundError": "govrpc.exceptions",
    "Filter": "govrpc.invocation",
    "GovRpcError": "govrpc.exceptions",
    "Invocation": "govrpc.invocation",
    "Invoker": "govrpc.invocation",
    "MessageTooLargeError": "govrpc.exceptions",
    "MethodNotFoundError": "govrpc.exceptions",
    "NoProviderError": "govrpc.exceptions",
    "Priority": "govrpc.flowctl.priority",
    "ProviderUnavailableError": "govrpc.exceptions",
    "RateLimitedError": "govrpc.exceptions",
    "RegistryError": "govrpc.exceptions",
    "RegistryUnreachableError": "govrpc.exceptions",
    "RemoteError": "govrpc.exceptions",
    "Result": "govrpc.invocation",
    "RpcError": "govrpc.exceptions",
    "RuleError": "govrpc.exceptions",
    "SerializationError": "govrpc.exceptions",
    "Server": "govrpc.server",
    "ServiceKey": "govrpc.url",
    "TLS": "govrpc.security",
    "URL": "govrpc.url",
    "UnauthenticatedError": "govrpc.exceptions",
    "add_refusal_listener": "govrpc.flowctl.events",
    "attachments": "govrpc.context",
    "fallback": "govrpc.degrade.switches",
    "mock": "govrpc.degrade.mask",
    "refusal_counts": "govrpc.flowctl.events",
    "remove_refusal_listener": "govrpc.flowctl.events",
    "safe_exception": "govrpc.exceptions",
    "serializable": "govrpc.rpc.serialization",
    "switch": "govrpc.degrade.switches",
}

if TYPE_CHECKING:
    from govrpc.admin import Admin
    from govrpc.client import Client
    from govrpc.context import attachments
    from govrpc.degrade.mask import mock
    from govrpc.degrade.switches import fallback, switch
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
    from govrpc.flowctl.events import add_refusal_listener, refusal_counts, remove_refusal_listener
    from govrpc.flowctl.priority import Priority
    from govrpc.invocation import Filter, Invocation, Invoker, Result
    from govrpc.rpc.serialization import serializable
    from govrpc.security import TLS
    from govrpc.server import Server
    from govrpc.url import URL, ServiceKey


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'govrpc' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "Priority",
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
    "TLS",
    "URL",
    "UnauthenticatedError",
    "add_refusal_listener",
    "attachments",
    "fallback",
    "method",
    "mock",
    "refusal_counts",
    "remove_refusal_listener",
    "safe_exception",
    "serializable",
    "service",
    "switch",
]
