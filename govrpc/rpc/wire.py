"""What travels beside the values: request envelope, metadata, a provider's exception.

Shared by both transports, so an in-process call and a gRPC call decode the same
envelope, present the same attachments and rebuild the same exception. No
``grpc`` here: the gRPC server and invoker put these pieces into metadata and
status, the in-process invoker hands them over directly.

A provider's exception travels as its ``module.QualName``, its message (the
status details, truncated with a marker to fit gRPC's metadata limits: the
status message is percent-encoded into trailing metadata, 8 KiB soft and 16 KiB
hard by default) and its ``args`` as JSON, so a registered safe class is rebuilt
from its own arguments (``KeyError('k')`` stays ``KeyError('k')``). Only classes
registered with ``safe_exception`` are ever instantiated.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from govrpc.exceptions import RemoteError, SerializationError, safe_exception_class
from govrpc.invocation import APPLICATION_KEY, ProviderContext

if TYPE_CHECKING:
    from govrpc.service import MethodSpec

__all__ = ["AGENT_PREFIX", "ARGS_KEY", "ERROR_KEY", "EXCEPTION_KEY", "KEY_KEY", "MESSAGE_LIMIT", "PUSHBACK_KEY",
           "CallContext", "attachments_of", "caller_of", "decode_envelope", "encode_exception", "rebuild_exception",
           "split_metadata", "truncate", "user_agent"]

EXCEPTION_KEY = "govrpc-exception"        # trailing: module.QualName of a business exception
ARGS_KEY = "govrpc-exception-args-bin"    # trailing: its args, a JSON list (UTF-8)
ERROR_KEY = "govrpc-error"                # trailing: class name of a govrpc error
KEY_KEY = "govrpc-key"                    # request: service key, when one server hosts several
PUSHBACK_KEY = "grpc-retry-pushback-ms"   # trailing: gRFC A6, when (negative: not) to retry a refusal

# wire bytes (percent-encoded message, base64 args) kept well under gRPC's 8 KiB soft limit
# on metadata, with room left for the keys, grpc-status and a filter's own trailers
MESSAGE_LIMIT = 2048
ARGS_LIMIT = 2048

_INTERNAL = frozenset((KEY_KEY, APPLICATION_KEY, "user-agent"))
AGENT_PREFIX = "govrpc-app/"
"""How a consumer's channels name its application: the first token of their user-agent
(``grpc.primary_user_agent``), which gRPC sends on every call anyway (an indexed header):
no metadata entry of its own per call, which would cost both sides' gRPC about 10-40 µs."""


def user_agent(application: str) -> str:
    """The ``grpc.primary_user_agent`` of a consumer's channels that names ``application``."""
    return AGENT_PREFIX + quote(application, safe="")


_AGENTS: dict[str, str] = {}  # user-agent -> application: a consumer's channels send one agent


def _application_of(agent: str) -> str:
    application = _AGENTS.get(agent)
    if application is None:
        application = unquote(agent[len(AGENT_PREFIX):].split(" ", 1)[0]) if agent.startswith(AGENT_PREFIX) else ""
        if len(_AGENTS) >= 256:  # any caller may send any agent: keep a bound
            _AGENTS.clear()
        _AGENTS[agent] = application
    return application


def _caller(application: Any, agent: Any) -> str:
    """The caller's application: its application header (what a caller without govrpc's channels
    can send), else what its ``user-agent`` names."""
    if application:
        return str(application)
    return _application_of(agent) if type(agent) is str else ""


def caller_of(headers: Mapping[str, Any]) -> str:
    """The caller's application from request metadata made a dict (as ``split_metadata`` reads it)."""
    return _caller(headers.get(APPLICATION_KEY), headers.get("user-agent"))


def attachments_of(metadata: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """The attachments in request metadata: string values, less ``-bin`` keys and transport noise
    (govrpc's own keys, ``user-agent``, ``grpc-*``)."""
    attachments: dict[str, str] = {}
    for key, value in metadata:
        if key in _INTERNAL or key.startswith("grpc-") or key.endswith("-bin") or type(value) is not str:
            continue
        attachments[key] = value
    return attachments


class CallContext(ProviderContext):
    """The ``ProviderContext`` of a call that came over gRPC: ``peer``, ``application`` and
    ``binary`` are read from the call (a grpc ``ServicerContext``) and its request metadata the
    first time something asks, as most calls' filters never do."""

    __slots__ = ("call", "_metadata", "_peer", "_application", "_binary")

    def __init__(self, call: Any, metadata: Sequence[tuple[str, Any]], spec: MethodSpec | None) -> None:
        self.call, self._metadata, self.spec = call, metadata, spec
        self._peer: str | None = None
        self._application: str | None = None
        self._binary: Mapping[str, bytes] | None = None
        self.trailing = []

    @property
    def peer(self) -> str:
        if self._peer is None:
            self._peer = self.call.peer()
        return self._peer

    @peer.setter
    def peer(self, value: str) -> None:
        self._peer = value

    @property
    def application(self) -> str:
        if self._application is None:
            self._application = split_metadata(self._metadata)[2]
        return self._application

    @application.setter
    def application(self, value: str) -> None:
        self._application = value

    @property
    def binary(self) -> Mapping[str, bytes]:
        if self._binary is None:
            self._binary = split_metadata(self._metadata)[1]
        return self._binary

    @binary.setter
    def binary(self, value: Mapping[str, bytes]) -> None:
        self._binary = value


def split_metadata(items: Iterable[tuple[str, Any]]) -> tuple[dict[str, str], dict[str, bytes], str]:
    """(attachments, binary metadata, caller's application) from request metadata.

    ``-bin`` keys are binary; govrpc's own keys, ``user-agent`` and ``grpc-*`` keys are
    transport noise and no attachment.
    """
    attachments: dict[str, str] = {}
    binary: dict[str, bytes] = {}
    application = agent = None
    for key, value in items:
        if key.endswith("-bin"):
            if isinstance(value, bytes):
                binary[key] = value
        elif key == APPLICATION_KEY:
            application = value
        elif key == "user-agent":
            agent = value
        elif key in _INTERNAL or key.startswith("grpc-"):
            continue
        elif isinstance(value, str):
            attachments[key] = value
    return attachments, binary, _caller(application, agent)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def decode_envelope(value: Any, where: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from a decoded request, or ``SerializationError`` naming what came instead."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SerializationError(f"{where}: the request must be [args, kwargs], not {_describe(value)}")
    args, kwargs = value
    if not isinstance(args, (list, tuple)):
        raise SerializationError(f"{where}: the request's args must be a list, not {_describe(args)}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise SerializationError(f"{where}: the request's kwargs must be a map with string keys, "
                                 f"not {_describe(kwargs)}")
    return tuple(args), kwargs


def _wire_size(text: str) -> int:
    """Bytes of ``text`` as gRPC sends a status message: UTF-8, percent-encoded outside printable ASCII."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode("utf-8", "replace"))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def truncate(text: str, limit: int = MESSAGE_LIMIT, size: Callable[[str], int] = _wire_size) -> str:
    """``text`` cut to ``limit`` bytes as ``size`` counts them (default: as a status message travels),
    with a marker saying so."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot travel
    if size(text) <= limit:
        return text
    marker = f" ... [truncated, {len(text)} characters in all]"
    budget = limit - size(marker)
    used = 0
    for end, char in enumerate(text):
        used += size(char)
        if used > budget:
            return text[:end] + marker
    return text  # pragma: no cover - the whole text fitted after all


def _encode_args(args: tuple[Any, ...]) -> bytes | None:
    try:
        data = json.dumps(list(args), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError):
        return None  # not JSON: the consumer rebuilds from the message
    if len(data) * 4 // 3 <= ARGS_LIMIT:  # base64 on the wire
        return data
    if not args or not all(isinstance(a, (str, int, float, bool)) or a is None for a in args):
        return None
    share = (ARGS_LIMIT * 3 // 4 - 32 * len(args)) // len(args)
    shortened = [truncate(a, share, _utf8_size) if isinstance(a, str) else a for a in args]
    data = json.dumps(shortened, ensure_ascii=False, allow_nan=False).encode()
    return data if len(data) * 4 // 3 <= ARGS_LIMIT else None


def encode_exception(exc: BaseException) -> tuple[str, str, bytes | None]:
    """``(module.QualName, message, args as JSON or None)`` of a provider's exception, sized to travel."""
    cls = type(exc)
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the type
        message = f"<{cls.__qualname__} whose str() failed>"
    args = _encode_args(exc.args) if safe_exception_class(f"{cls.__module__}.{cls.__qualname__}") is cls else None
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not name.isascii():  # a metadata value is printable ASCII; such a class is no safe one anyway
        name = name.encode("ascii", "backslashreplace").decode("ascii")
    return name, truncate(message), args


def rebuild_exception(remote_type: str, message: str, args: bytes | None,
                      invocation: Any = None) -> BaseException:
    """The consumer's exception: a registered safe class rebuilt from its args (else its message),
    any other as ``RemoteError``."""
    cls = safe_exception_class(remote_type)
    if cls is not None:
        if args is not None:
            try:
                decoded = json.loads(args)
                if isinstance(decoded, list):
                    return cls(*decoded)
            except Exception:  # noqa: BLE001 - not rebuildable from these args: try the message
                pass
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - a class that cannot be rebuilt from a message
            pass
    return RemoteError(remote_type, message, invocation=invocation)

