"""The govrpc exception hierarchy.

Every error carries the gRPC status code it travels as (``code``, a
``StatusCode`` name) and, where there is one, the ``Invocation`` it belongs to.
``retryable`` tells a cluster invoker whether another provider may succeed;
``surely_not_sent`` tells it the request never reached a provider, so even a
non-idempotent call may be sent elsewhere.

    GovRpcError
    ├── ConfigurationError            INVALID_ARGUMENT  bad URL, option or value
    │   ├── ExtensionNotFoundError                      unknown strategy name
    │   └── RuleError                                   a rule that does not parse
    ├── RegistryError                 UNAVAILABLE
    │   └── RegistryUnreachableError                    cannot reach the registry
    ├── RpcError                      UNKNOWN           a call that did not succeed
    │   ├── NoProviderError           UNAVAILABLE       no live provider after routing
    │   ├── ProviderUnavailableError  UNAVAILABLE       connection failed or provider stopping
    │   │   └── ConnectionRefusedByProviderError        refused: the request was surely not sent
    │   ├── CallTimeoutError          DEADLINE_EXCEEDED the deadline passed
    │   ├── CancelledError            CANCELLED
    │   ├── RateLimitedError          RESOURCE_EXHAUSTED refused by flow control
    │   ├── CircuitOpenError          UNAVAILABLE       refused by a circuit breaker
    │   ├── UnauthenticatedError      UNAUTHENTICATED
    │   ├── MethodNotFoundError       UNIMPLEMENTED     unknown service or method
    │   ├── MessageTooLargeError      RESOURCE_EXHAUSTED over the size limit
    │   ├── SerializationError        INVALID_ARGUMENT  cannot encode or decode
    │   └── RemoteError               UNKNOWN           a provider's business error
    └── (business exceptions registered with ``safe_exception`` travel as themselves)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from govrpc.invocation import Invocation

__all__ = [
    "CallTimeoutError",
    "CancelledError",
    "CircuitOpenError",
    "ConfigurationError",
    "ConnectionRefusedByProviderError",
    "ExtensionNotFoundError",
    "GovRpcError",
    "MessageTooLargeError",
    "MethodNotFoundError",
    "NoProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RegistryError",
    "RegistryUnreachableError",
    "RemoteError",
    "RpcError",
    "RuleError",
    "SerializationError",
    "UnauthenticatedError",
    "error_class",
    "is_safe_exception",
    "safe_exception",
    "safe_exception_class",
]


class GovRpcError(Exception):
    """Root of every error govrpc raises."""

    code: ClassVar[str] = "UNKNOWN"
    retryable: ClassVar[bool] = False
    surely_not_sent: ClassVar[bool] = False

    def __init__(self, message: str = "", *, invocation: Invocation | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.invocation = invocation


class ConfigurationError(GovRpcError, ValueError):
    """A bad URL, option or value, raised where it is configured."""

    code = "INVALID_ARGUMENT"


class ExtensionNotFoundError(ConfigurationError, LookupError):
    """No extension of that name in the entry-point group."""


class RuleError(ConfigurationError):
    """A rule that does not parse; ``position`` is the offset of the mistake."""

    def __init__(self, message: str, *, rule: str = "", position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}" + (f" in rule {rule!r}" if rule else ""))
        self.rule = rule
        self.position = position


class RegistryError(GovRpcError):
    """The registry failed an operation."""

    code = "UNAVAILABLE"


class RegistryUnreachableError(RegistryError):
    """The registry could not be reached within the allowed time."""


class RpcError(GovRpcError):
    """A call that did not return a value."""


class NoProviderError(RpcError):
    """No provider is left for the call after the registry and the routers."""

    code = "UNAVAILABLE"


class ProviderUnavailableError(RpcError):
    """The provider could not be reached or is shutting down."""

    code = "UNAVAILABLE"
    retryable = True


class ConnectionRefusedByProviderError(ProviderUnavailableError):
    """The connection was refused: the request surely never reached the provider."""

    surely_not_sent = True


class CallTimeoutError(RpcError):
    """The call's deadline passed before a response came."""

    code = "DEADLINE_EXCEEDED"
    retryable = True


class CancelledError(RpcError):
    """The call was cancelled."""

    code = "CANCELLED"


class RateLimitedError(RpcError):
    """Refused by flow control (rate, concurrency, connections or shedding): the provider
    protecting itself, never counted as its failure (no ejection, no breaker).

    ``reason`` (``rate``, ``concurrency``, ``actives``, ``connections``, ``cluster``,
    ``shed``), ``limit`` (the key that refused, e.g. ``find.tps``), ``priority`` and
    ``level`` say why; ``retry_after`` is the seconds after which a retry may pass
    (None: unknown). A refusal whose retry is pointless (the deadline cannot be met)
    has ``retryable`` False, and failover does not try again.
    """

    code = "RESOURCE_EXHAUSTED"
    retryable = True
    surely_not_sent = True

    def __init__(self, message: str = "", *, invocation: Invocation | None = None, reason: str = "",
                 limit: str = "", priority: str = "", level: str = "", retry_after: float | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message, invocation=invocation)
        self.reason = reason
        self.limit = limit
        self.priority = priority
        self.level = level
        self.retry_after = retry_after
        if not retryable:
            self.retryable = False  # type: ignore[misc]


class CircuitOpenError(RpcError):
    """Refused because the circuit breaker is open."""

    code = "UNAVAILABLE"
    retryable = True
    surely_not_sent = True


class UnauthenticatedError(RpcError):
    """The caller's credentials were missing or wrong."""

    code = "UNAUTHENTICATED"


class MethodNotFoundError(RpcError):
    """The provider does not serve that service or method."""

    code = "UNIMPLEMENTED"


class MessageTooLargeError(RpcError):
    """A request or response exceeded the configured message size limit."""

    code = "RESOURCE_EXHAUSTED"


class SerializationError(RpcError, TypeError):
    """A value could not be encoded or decoded."""

    code = "INVALID_ARGUMENT"


class RemoteError(RpcError):
    """A provider raised an exception the consumer does not re-raise as itself."""

    code = "UNKNOWN"

    def __init__(self, remote_type: str, message: str, *, invocation: Invocation | None = None) -> None:
        super().__init__(f"{remote_type}: {message}", invocation=invocation)
        self.remote_type = remote_type
        self.remote_message = message


def error_class(name: str) -> type[GovRpcError] | None:
    """The govrpc error class called ``name``, used to rebuild errors sent by a provider."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, GovRpcError):
        return cls
    return None


_SAFE: dict[str, type[BaseException]] = {}


def _qualname(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_exception(cls: type[Any]) -> type[Any]:
    """Register an exception class as safe to re-raise on the consumer (usable as a decorator).

    A provider's exception of a registered class reaches the consumer as that class;
    any other reaches it as ``RemoteError``. Only ``Exception`` subclasses qualify.
    """
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise ConfigurationError(f"safe_exception: {cls!r} is not a subclass of Exception")
    _SAFE[_qualname(cls)] = cls
    return cls


def safe_exception_class(qualname: str) -> type[BaseException] | None:
    """The registered safe class with that ``module.QualName``, or None."""
    return _SAFE.get(qualname)


def is_safe_exception(exc: BaseException) -> bool:
    return _SAFE.get(_qualname(type(exc))) is type(exc)


for _builtin in (ValueError, TypeError, KeyError, IndexError, LookupError, ArithmeticError,
                 ZeroDivisionError, OverflowError, PermissionError, FileNotFoundError,
                 NotImplementedError, RuntimeError, AssertionError, UnicodeError):
    safe_exception(_builtin)
del _builtin
