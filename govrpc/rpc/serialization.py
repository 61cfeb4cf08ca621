"""Serializers for Python values (entry-point group ``govrpc.serializer``).

A non-protobuf request travels as ``serializer.dumps((args, kwargs))`` and its
response as ``serializer.dumps(value)``. msgpack is the default; JSON is
offered for interoperability. pickle is deliberately absent: unpickling data
from the network executes code.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import msgpack

__all__ = ["JsonSerializer", "MsgpackSerializer", "Serializer"]


class Serializer(abc.ABC):
    """Turns Python values into bytes and back (group ``govrpc.serializer``, default ``msgpack``).

    Contract: stateless and thread-safe; ``dumps`` raises ``TypeError`` or
    ``ValueError`` for a value it cannot encode, ``loads`` raises ``ValueError``
    for bytes it cannot decode.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes: ...

    @abc.abstractmethod
    def loads(self, data: bytes) -> Any: ...


class MsgpackSerializer(Serializer):
    """msgpack: compact, fast, carries bytes; tuples arrive as lists."""

    name = "msgpack"

    def dumps(self, value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True)

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)  # errors are ValueErrors


class JsonSerializer(Serializer):
    """JSON (UTF-8): readable and portable; no bytes, tuples arrive as lists."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)
