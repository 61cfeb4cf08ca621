"""A blocking unary call handed straight to grpc's core: what ``GrpcInvoker.invoke`` sends.

grpcio's ``UnaryUnaryMultiCallable.__call__`` wraps one batch of six operations on a
call of its own (``segregated_call``) in Python bookkeeping that a blocking call of raw
bytes does not need: an ``_RPCState`` with its ``threading.Condition``, an operation
set, a pass over the completed batch, and a ``contextlib`` context around the
observability plugin even when none is registered. About 900 of the 1,060 bytecodes
that grpcio's own Python runs on the calling thread per call (``benchmarks/python_work.py``)
are that, and they cost about 40 µs of the calling thread's CPU per call on this machine
(``benchmarks/call_cpu.py``: "raw grpcio" against "raw grpcio (core call)"). ``blocking_call``
starts the same batch on the same kind of call, through the same channel, method
registration and census context, with the same deadline (the caller's, or the deadline
of the server call this thread is handling if that is sooner, as grpcio does), and reads
the answer off the two receiving operations. A failed call raises grpcio's own
``RpcError`` (``code()``, ``details()``, ``trailing_metadata()``), so what catches it
cannot tell the two paths apart.

It reaches below grpcio's public API (``grpc._cython.cygrpc`` and the multicallable's
attributes), so it is taken only where it is known to hold: a plain
``grpc.Channel``'s multicallable of a grpcio that registers methods (its multicallables
carry ``_registered_call_handle``: ``segregated_call`` takes it),
no observability plugin registered (``grpc_observability`` records latency in the
Python this skips: with one, every call takes grpcio's own path), and not switched off
(``GOVRPC_GRPC_DIRECT=0`` in the environment, or ``ENABLED = False`` before the first
call of a method). Anything else (an intercepted channel, an older grpcio) gets None,
and the caller keeps grpcio's own call.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import grpc

__all__ = ["ENABLED", "blocking_call"]

ENABLED = os.environ.get("GOVRPC_GRPC_DIRECT", "1") != "0"

try:  # grpcio's internals, checked once: where any of them is missing, nothing here is used
    from grpc import _common, _observability
    from grpc._channel import _InactiveRpcError, _RPCState, _UnaryUnaryMultiCallable
    from grpc._cython import cygrpc

    _SEND_METADATA = cygrpc.SendInitialMetadataOperation
    _SEND_MESSAGE = cygrpc.SendMessageOperation
    _SEND_CLOSE = cygrpc.SendCloseFromClientOperation
    _RECEIVE_METADATA = cygrpc.ReceiveInitialMetadataOperation
    _RECEIVE_MESSAGE = cygrpc.ReceiveMessageOperation
    _RECEIVE_STATUS = cygrpc.ReceiveStatusOnClientOperation
    _PROPAGATE = cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS
    _OK = cygrpc.StatusCode.ok
    _parent_deadline = cygrpc.get_deadline_from_context
    _STATUS_CODES = _common.CYGRPC_STATUS_CODE_TO_STATUS_CODE
    _AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - a grpcio laid out otherwise
    _AVAILABLE = False

_NO_FLAGS = 0
_now = time.time  # grpc's deadlines are wall-clock seconds

Metadata = Sequence[tuple[str, Any]] | None
BlockingCall = Callable[[bytes, float, Metadata], Any]


def blocking_call(multicallable: Any) -> BlockingCall | None:
    """``call(request, timeout, metadata) -> response bytes`` for ``multicallable`` (a unary-unary
    method of a ``grpc.Channel``, made with ``_registered_method=True``) sent straight to grpc's core,
    or None where that path is not known to hold (see the module's text)."""
    if not (ENABLED and _AVAILABLE) or type(multicallable) is not _UnaryUnaryMultiCallable:
        return None
    try:
        core, method = multicallable._channel, multicallable._method
        census, registered = multicallable._context, multicallable._registered_call_handle
    except AttributeError:  # before grpcio registered methods, segregated_call took other arguments
        return None
    if not isinstance(core, cygrpc.Channel) or not isinstance(method, bytes):
        return None
    observability = _observability

    def call(request: bytes, timeout: float, metadata: Metadata) -> Any:
        if observability._OBSERVABILITY_PLUGIN is not None:  # it records in grpcio's own Python
            return multicallable(request, timeout=timeout, metadata=metadata)
        deadline = _now() + timeout
        parent = _parent_deadline()  # the server call this thread handles: grpcio keeps the sooner
        if parent is not None and parent < deadline:
            deadline = parent
        head, message, status = _RECEIVE_METADATA(_NO_FLAGS), _RECEIVE_MESSAGE(_NO_FLAGS), _RECEIVE_STATUS(_NO_FLAGS)
        core.segregated_call(
            _PROPAGATE, method, None, deadline, metadata, None,
            (((_SEND_METADATA(metadata, _NO_FLAGS), _SEND_MESSAGE(request, _NO_FLAGS), _SEND_CLOSE(_NO_FLAGS),
               head, message, status), None),),
            census, registered).next_event()
        if status.code() == _OK:
            return message.message()
        raise _failed(head, status)

    return call


def _failed(head: Any, status: Any) -> grpc.RpcError:
    """grpcio's own error for a call that ended with a status other than OK."""
    code = _STATUS_CODES.get(status.code())
    details = status.details()
    state = _RPCState((), head.initial_metadata(), status.trailing_metadata(), code or grpc.StatusCode.UNKNOWN,
                      details if code is not None else
                      f'Server sent unknown code {status.code()} and details "{details}"')
    state.debug_error_string = status.error_string()
    return _InactiveRpcError(state)
