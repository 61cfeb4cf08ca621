"""Serializers for Python values (entry-point group ``govrpc.serializer``).

A non-protobuf request travels as ``serializer.dumps_call(args, kwargs)`` (an
array ``[args, kwargs]``) and its response as ``serializer.dumps(value)``.
msgpack is the default; JSON is offered for interoperability. pickle is
deliberately absent: unpickling data from the network executes code.

Both built-ins carry the same values and give them back with their types:
besides JSON's own (str, int, float, bool, None, list, dict with any keys),
``bytes``, ``tuple``, ``set``, ``frozenset``, ``datetime`` (with its time
zone), ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, and the
dataclasses and enums registered with ``@serializable``. msgpack carries the
extra types as extension types, JSON as tagged objects ``{"$type": ..., "v": ...}``
(the README has the table). Nothing but a registered class is ever built from
the wire, and a value that cannot travel is refused with its type and where
it sat (``args[1]["when"][0]: cannot serialize type Foo``).
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import json
import re
import threading
import uuid
from typing import Any, Callable, ClassVar, Mapping, TypeVar, overload
from zoneinfo import ZoneInfo

import msgpack
from msgpack import ExtType

from govrpc.exceptions import ConfigurationError, SerializationError

__all__ = ["JsonSerializer", "MsgpackSerializer", "Serializer", "serializable"]


class Serializer(abc.ABC):
    """Turns Python values into bytes and back (group ``govrpc.serializer``, default ``msgpack``).

    Contract: stateless and thread-safe; ``dumps`` raises ``TypeError`` or
    ``ValueError`` for a value it cannot encode (the transport adds the call to
    the message), ``loads`` raises ``SerializationError`` or ``ValueError`` for
    bytes it cannot decode.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes: ...

    @abc.abstractmethod
    def loads(self, data: bytes) -> Any: ...

    def dumps_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        """A call's arguments; ``loads`` gives back a pair ``(args, kwargs)`` (a sequence and a dict)."""
        return self.dumps((args, kwargs))

    def dumps_invocation(self, invocation: Any) -> bytes:
        """``dumps_call`` of an ``Invocation``'s arguments (what a consumer's transport sends)."""
        return self.dumps_call(invocation.args, invocation.kwargs)


# -- registered dataclasses and enums -------------------------------------------------------

_C = TypeVar("_C", bound=type)
_CLASSES: dict[str, type] = {}  # wire name -> registered class
_NAMES: dict[type, str] = {}  # registered class -> the name it is sent as
_FIELDS: dict[type, tuple[str, ...]] = {}  # registered dataclass -> the fields sent (its init fields)
_register_lock = threading.Lock()
_WIRE_NAME = re.compile(r"[^\s\[\]{}\"']{1,200}")


@overload
def serializable(cls: _C, /) -> _C: ...


@overload
def serializable(*, name: str | None = None) -> Callable[[_C], _C]: ...


def serializable(cls: Any = None, /, *, name: str | None = None) -> Any:
    """Register a dataclass or an ``Enum`` so its instances travel (``@serializable`` or ``@serializable(name=...)``).

    An instance is sent under ``name`` (default ``module.QualName``) with its
    ``init`` fields (a dataclass) or its value (an enum member). The receiver
    rebuilds only a class registered under the name it receives: a dataclass
    through its constructor (so ``__post_init__`` checks run), an enum member by
    value. Any other name is a ``SerializationError``; nothing is imported.
    Register the class on both sides, under the same name.

    Raises:
        ConfigurationError: not a dataclass or Enum class; a bad name; the name is
            taken by another class; ``__init__`` needs an argument that is not a field.
    """
    def register(target: Any) -> Any:
        _register(target, name)
        return target

    return register if cls is None else register(cls)


def _register(cls: Any, name: str | None) -> None:
    if not isinstance(cls, type):
        raise ConfigurationError(f"serializable: {cls!r} is not a class")
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    elif not isinstance(name, str) or not _WIRE_NAME.fullmatch(name):
        raise ConfigurationError(f"serializable: name {name!r} for {cls.__qualname__} must be 1 to 200 "
                                 "characters without spaces, quotes or brackets")
    fields: tuple[str, ...] | None = None
    if dataclasses.is_dataclass(cls):
        fields = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        needed = [p.name for p in inspect.signature(cls).parameters.values()
                  if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                  and p.name not in fields]
        if needed:
            raise ConfigurationError(f"serializable: {cls.__qualname__}() needs {', '.join(needed)}, which "
                                     "are not fields, so it cannot be rebuilt from its fields")
    elif not issubclass(cls, enum.Enum):
        raise ConfigurationError(f"serializable: {cls.__qualname__} is neither a dataclass nor an Enum")
    with _register_lock:
        taken = _CLASSES.get(name)
        if taken is not None and taken is not cls and _type_name(taken) != _type_name(cls):
            raise ConfigurationError(f"serializable: name {name!r} is taken by {_type_name(taken)}")
        _CLASSES[name] = cls  # a class defined again (a reload) replaces its old self
        _NAMES[cls] = name
        if fields is not None:
            _FIELDS[cls] = fields


def _registered(o: Any) -> tuple[str, str, Any] | None:
    """``(kind, wire name, what is sent)`` for an instance of a registered class, else None."""
    t = type(o)
    name = _NAMES.get(t)
    if name is None:
        return None
    fields = _FIELDS.get(t)
    if fields is None:
        return "enum", name, o.value
    return "dataclass", name, {f: getattr(o, f) for f in fields}


def _rebuild_dataclass(name: Any, fields: Any) -> Any:
    cls = _CLASSES.get(name) if type(name) is str else None
    if cls is None or cls not in _FIELDS:
        raise SerializationError(f"no dataclass is registered as {name!r} (register it with "
                                 "@govrpc.serializable on both sides)")
    if type(fields) is not dict:
        raise SerializationError(f"malformed {name}: fields must be a map, not {type(fields).__name__}")
    unknown = [repr(k) for k in fields if k not in _FIELDS[cls]]
    if unknown:
        raise SerializationError(f"{name} has no field {', '.join(unknown)}")
    try:
        return cls(**fields)
    except Exception as exc:  # noqa: BLE001 - the class's own checks refused what came
        raise SerializationError(f"cannot rebuild {name}: {exc}") from exc


def _rebuild_enum(name: Any, value: Any) -> Any:
    cls = _CLASSES.get(name) if type(name) is str else None
    if cls is None or not issubclass(cls, enum.Enum):
        raise SerializationError(f"no enum is registered as {name!r} (register it with "
                                 "@govrpc.serializable on both sides)")
    try:
        return cls(value)
    except Exception as exc:  # noqa: BLE001
        raise SerializationError(f"{name} has no member {value!r}") from exc


# -- the extra types as text (shared by both formats) ------------------------------------------

_ZONE_KEY = re.compile(r"[A-Za-z0-9_+\-]{1,40}(?:/[A-Za-z0-9_+\-]{1,40}){0,3}")


def _with_zone(text: str, tz: Any) -> str:
    key = tz.key if isinstance(tz, ZoneInfo) else None  # other tzinfo kinds travel as their offset
    return f"{text}[{key}]" if key else text


def _split_zone(text: Any, what: str) -> tuple[str, ZoneInfo | None]:
    if type(text) is not str:
        raise SerializationError(f"malformed {what}: expected text, got {type(text).__name__}")
    if not text.endswith("]"):
        return text, None
    start = text.rfind("[")
    key = text[start + 1:-1]
    if start < 0 or not _ZONE_KEY.fullmatch(key):
        raise SerializationError(f"malformed {what} {text[:80]!r}: bad time zone")
    try:
        return text[:start], ZoneInfo(key)
    except Exception as exc:  # noqa: BLE001 - unknown key, missing tz data
        raise SerializationError(f"{what} {text[:80]!r}: unknown time zone {key!r}") from exc


def _datetime_text(o: dt.datetime) -> str:
    return _with_zone(dt.datetime.isoformat(o), o.tzinfo)


def _time_text(o: dt.time) -> str:
    return _with_zone(dt.time.isoformat(o), o.tzinfo)


def _parse(parse: Callable[[str], Any], text: str, what: str) -> Any:
    try:
        return parse(text)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SerializationError(f"malformed {what} {text[:80]!r}") from exc


def _datetime_from(text: Any) -> dt.datetime:
    text, zone = _split_zone(text, "datetime")
    value: dt.datetime = _parse(dt.datetime.fromisoformat, text, "datetime")
    if zone is None:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    offset = value.utcoffset()
    for fold in (0, 1):  # the sent offset tells which of an ambiguous (or skipped) wall time it was
        local = value.replace(tzinfo=zone, fold=fold)
        if local.utcoffset() == offset:
            return local
    return value.astimezone(zone)  # the receiver's zone rules differ: keep the instant


def _time_from(text: Any) -> dt.time:
    text, zone = _split_zone(text, "time")
    value: dt.time = _parse(dt.time.fromisoformat, text, "time")
    return value if zone is None else value.replace(tzinfo=zone)


def _date_from(text: Any) -> dt.date:
    if type(text) is not str:
        raise SerializationError(f"malformed date: expected text, got {type(text).__name__}")
    return _parse(dt.date.fromisoformat, text, "date")


def _decimal_from(text: Any) -> decimal.Decimal:
    if type(text) is not str:
        raise SerializationError(f"malformed Decimal: expected text, got {type(text).__name__}")
    return _parse(decimal.Decimal, text, "Decimal")


def _uuid_from(value: Any) -> uuid.UUID:
    if type(value) is bytes and len(value) == 16:
        return uuid.UUID(bytes=value)
    if type(value) is str:
        return _parse(uuid.UUID, value, "UUID")
    raise SerializationError(f"malformed UUID {value!r:.80}")


def _timedelta_parts(o: dt.timedelta) -> list[int]:
    return [o.days, o.seconds, o.microseconds]


def _timedelta_from(parts: Any) -> dt.timedelta:
    if type(parts) is not list or len(parts) != 3 or any(type(p) is not int for p in parts):
        raise SerializationError(f"malformed timedelta {parts!r:.80}: expected [days, seconds, microseconds]")
    try:
        return dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])
    except OverflowError as exc:
        raise SerializationError(f"timedelta {parts!r:.80} is out of range") from exc


def _items(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise SerializationError(f"malformed {what}: expected an array, got {type(value).__name__}")
    return value


def _hashed(build: type, items: list[Any], what: str) -> Any:
    try:
        return build(items)
    except TypeError as exc:  # an unhashable element: not something an encoder sends
        raise SerializationError(f"malformed {what}: {exc}") from exc


# -- the base a subclass of a builtin travels as ----------------------------------------------

_BASES: tuple[type, ...] = (dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID, dict, list, tuple,
          set, frozenset, str, bytes, bytearray, int, float)


def _as_base(o: Any) -> tuple[type, Any]:
    """``o`` as its builtin base class (an IntEnum as its int, a namedtuple as a tuple), or raise."""
    for base in _BASES:
        if isinstance(o, base):
            break
    else:
        raise _Unserializable(o)
    value: Any = o  # isinstance above narrowed o to object
    if base in (dt.datetime, dt.date, dt.time, dt.timedelta, decimal.Decimal, uuid.UUID):
        return base, value  # their encoders use the base class's own methods
    if base is str:
        return base, str.__str__(value)
    if base is int:
        return base, int.__index__(value)
    if base is float:
        return base, float.__float__(value)
    return base, bytes(value) if base is bytearray else base(value)


class _Unserializable(TypeError):
    """Raised inside an encoder for a value that cannot travel; ``dumps`` then finds where it sat."""


# -- msgpack ------------------------------------------------------------------------------------

_TUPLE, _SET, _FROZENSET, _DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _BIGINT, _DATACLASS, _ENUM = \
    range(1, 13)
_NATIVE = frozenset((str, bytes, bytearray, float, list, dict, bool, type(None)))


def _ext(code: int, data: bytes) -> ExtType:
    # ExtType's own constructor re-checks its arguments, which costs more than packing a tuple
    return tuple.__new__(ExtType, (code, data))


def _pack(value: Any) -> bytes:
    # a small first buffer: msgpack's default 256 KiB costs more than packing a small call
    return msgpack.Packer(default=_msgpack_default, strict_types=True, use_bin_type=True,
                          buf_size=512).pack(value)


def _int_ext(o: int) -> ExtType:
    return _ext(_BIGINT, o.to_bytes((o.bit_length() + 8) // 8, "big", signed=True))


_MSGPACK_EXT: dict[type, Callable[[Any], ExtType]] = {
    tuple: lambda o: _ext(_TUPLE, _pack(list(o))),
    set: lambda o: _ext(_SET, _pack(list(o))),
    frozenset: lambda o: _ext(_FROZENSET, _pack(list(o))),
    dt.datetime: lambda o: _ext(_DATETIME, _datetime_text(o).encode()),
    dt.date: lambda o: _ext(_DATE, dt.date.isoformat(o).encode()),
    dt.time: lambda o: _ext(_TIME, _time_text(o).encode()),
    dt.timedelta: lambda o: _ext(_TIMEDELTA, _pack(_timedelta_parts(o))),
    decimal.Decimal: lambda o: _ext(_DECIMAL, decimal.Decimal.__str__(o).encode()),
    uuid.UUID: lambda o: _ext(_UUID, o.bytes),
    int: _int_ext,  # msgpack calls the default only for ints beyond 64 bits
}


def _msgpack_default(o: Any) -> Any:
    """msgpack's hook for what it does not pack itself: runs only for the extra types."""
    t = type(o)
    encode = _MSGPACK_EXT.get(t)
    if encode is not None:
        return encode(o)
    registered = _registered(o)
    if registered is not None:
        kind, name, payload = registered
        return _ext(_DATACLASS if kind == "dataclass" else _ENUM, _pack([name, payload]))
    base, value = _as_base(o)
    if base in _NATIVE or (base is int and -(1 << 63) <= value < 1 << 64):
        return value
    return _MSGPACK_EXT[base](value)


_Packer, _unpackb = msgpack.Packer, msgpack.unpackb


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook, timestamp=3)


_MAX_NESTING = 100
_nesting = threading.local()


def _unpack_nested(data: bytes) -> Any:
    """An extension's packed payload; the nesting of extensions is bounded, so the C stack is too."""
    depth: int = getattr(_nesting, "depth", 0)
    if depth >= _MAX_NESTING:
        raise SerializationError(f"msgpack: value nested too deeply (more than {_MAX_NESTING} tuples, sets, "
                                 "dataclasses or enums inside one another)")
    _nesting.depth = depth + 1
    try:
        if depth < 4:  # unpackb is the fastest, but holds a 40 KiB parse stack on the C stack per level
            return _unpack(data)
        unpacker = msgpack.Unpacker(None, raw=False, strict_map_key=False, ext_hook=_ext_hook, timestamp=3,
                                    max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        value = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise SerializationError("msgpack: extra data after an extension's payload")
        return value
    finally:
        _nesting.depth = depth


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise SerializationError(f"malformed {what}: not UTF-8") from exc


def _pair(data: bytes, what: str) -> list[Any]:
    value = _unpack_nested(data)
    if type(value) is not list or len(value) != 2:
        raise SerializationError(f"malformed {what}: expected [name, value]")
    return value


_EXT_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _TUPLE: lambda data: tuple(_items(_unpack_nested(data), "tuple")),
    _SET: lambda data: _hashed(set, _items(_unpack_nested(data), "set"), "set"),
    _FROZENSET: lambda data: _hashed(frozenset, _items(_unpack_nested(data), "frozenset"), "frozenset"),
    _DATETIME: lambda data: _datetime_from(_text(data, "datetime")),
    _DATE: lambda data: _date_from(_text(data, "date")),
    _TIME: lambda data: _time_from(_text(data, "time")),
    _TIMEDELTA: lambda data: _timedelta_from(_unpack_nested(data)),
    _DECIMAL: lambda data: _decimal_from(_text(data, "Decimal")),
    _UUID: _uuid_from,
    _BIGINT: lambda data: int.from_bytes(data, "big", signed=True),
    _DATACLASS: lambda data: _rebuild_dataclass(*_pair(data, "dataclass")),
    _ENUM: lambda data: _rebuild_enum(*_pair(data, "enum")),
}


def _ext_hook(code: int, data: bytes) -> Any:
    decode = _EXT_DECODERS.get(code)
    if decode is None:
        raise SerializationError(f"unknown msgpack extension type {code}")
    return decode(data)


class MsgpackSerializer(Serializer):
    """msgpack: compact and fast; the extra types are extension types 1 to 12."""

    name = "msgpack"

    # _pack and _unpack written out in the three methods a call runs: a frame less each
    def dumps(self, value: Any) -> bytes:
        try:
            return _Packer(default=_msgpack_default, strict_types=True, use_bin_type=True, buf_size=512).pack(value)
        except _Unserializable:
            raise TypeError(_explain(value, "value")) from None
        except RecursionError:
            raise ValueError("value nested too deeply") from None

    def dumps_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        try:  # a plain array, not a tuple: a call of plain values costs no extension type
            return _pack([list(args), kwargs if type(kwargs) is dict else dict(kwargs)])
        except _Unserializable:
            raise TypeError(_explain_call(args, kwargs)) from None
        except RecursionError:
            raise ValueError("arguments nested too deeply") from None

    def dumps_invocation(self, invocation: Any) -> bytes:
        kwargs = invocation.kwargs
        try:
            return _Packer(default=_msgpack_default, strict_types=True, use_bin_type=True, buf_size=512).pack(
                [list(invocation.args), kwargs if type(kwargs) is dict else dict(kwargs)])
        except _Unserializable:
            raise TypeError(_explain_call(invocation.args, kwargs)) from None
        except RecursionError:
            raise ValueError("arguments nested too deeply") from None

    def loads(self, data: bytes) -> Any:
        try:
            return _unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook, timestamp=3)
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError("msgpack: value nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 - msgpack's ValueErrors, an unhashable key...
            raise SerializationError(f"msgpack: cannot decode: {exc}") from exc


# -- JSON ---------------------------------------------------------------------------------------

_TAG = "$type"


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value}


def _to_json(o: Any) -> Any:
    """``o`` as plain JSON values, the extra types tagged."""
    t = type(o)
    if t is str or t is int or t is float or t is bool or o is None:
        return o
    if t is list:
        return [_to_json(x) for x in o]
    if t is dict:
        for k in o:
            if type(k) is not str or k == _TAG:  # JSON keys are text, and a "$type" key marks a tag
                return _tagged("dict", [[_to_json(k), _to_json(v)] for k, v in o.items()])
        return {k: _to_json(v) for k, v in o.items()}
    encode = _JSON_TAGS.get(t)
    if encode is not None:
        return encode(o)
    registered = _registered(o)
    if registered is not None:
        kind, name, payload = registered
        return {_TAG: kind, "name": name, "v": _to_json(payload)}
    base, value = _as_base(o)
    return _JSON_TAGS[base](value) if base in _JSON_TAGS else _to_json(value)


def _b64(o: bytes) -> dict[str, Any]:
    return _tagged("bytes", base64.b64encode(o).decode("ascii"))


_JSON_TAGS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda o: _tagged("tuple", [_to_json(x) for x in o]),
    set: lambda o: _tagged("set", [_to_json(x) for x in o]),
    frozenset: lambda o: _tagged("frozenset", [_to_json(x) for x in o]),
    bytes: _b64,
    bytearray: _b64,
    memoryview: _b64,
    dt.datetime: lambda o: _tagged("datetime", _datetime_text(o)),
    dt.date: lambda o: _tagged("date", dt.date.isoformat(o)),
    dt.time: lambda o: _tagged("time", _time_text(o)),
    dt.timedelta: lambda o: _tagged("timedelta", _timedelta_parts(o)),
    decimal.Decimal: lambda o: _tagged("decimal", decimal.Decimal.__str__(o)),
    uuid.UUID: lambda o: _tagged("uuid", str(o)),
}


def _bytes_from(text: Any) -> bytes:
    if type(text) is not str:
        raise SerializationError(f"malformed bytes: expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise SerializationError(f"malformed bytes {text[:80]!r}: not base64") from exc


def _dict_from(pairs: Any) -> dict[Any, Any]:
    if type(pairs) is not list or any(type(p) is not list or len(p) != 2 for p in pairs):
        raise SerializationError("malformed dict: expected [[key, value], ...]")
    try:
        return dict(pairs)
    except TypeError as exc:
        raise SerializationError(f"malformed dict: {exc}") from exc


_JSON_UNTAG: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(_items(v, "tuple")),
    "set": lambda v: _hashed(set, _items(v, "set"), "set"),
    "frozenset": lambda v: _hashed(frozenset, _items(v, "frozenset"), "frozenset"),
    "bytes": _bytes_from,
    "dict": _dict_from,
    "datetime": _datetime_from,
    "date": _date_from,
    "time": _time_from,
    "timedelta": _timedelta_from,
    "decimal": _decimal_from,
    "uuid": _uuid_from,
}
_PLAIN_TAG_KEYS = frozenset((_TAG, "v"))
_NAMED_TAG_KEYS = frozenset((_TAG, "name", "v"))


def _from_json_object(d: dict[str, Any]) -> Any:
    """json's object hook: a JSON object with a ``"$type"`` key is always a tag (encoding escapes the rest)."""
    if _TAG not in d:
        return d
    tag = d[_TAG]
    if tag == "dataclass" or tag == "enum":
        if d.keys() != _NAMED_TAG_KEYS:
            raise SerializationError(f'malformed {{"$type": "{tag}"}}: expected the keys $type, name and v')
        return (_rebuild_dataclass if tag == "dataclass" else _rebuild_enum)(d["name"], d["v"])
    untag = _JSON_UNTAG.get(tag) if type(tag) is str else None
    if untag is None:
        raise SerializationError(f"unknown JSON tag {{\"$type\": {json.dumps(tag)[:80]}}}")
    if d.keys() != _PLAIN_TAG_KEYS:
        raise SerializationError(f'malformed {{"$type": "{tag}"}}: expected the keys $type and v')
    return untag(d["v"])


_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_json_decode = json.JSONDecoder(object_hook=_from_json_object).decode


class JsonSerializer(Serializer):
    """JSON (UTF-8): readable and portable; the extra types are tagged objects ``{"$type": ..., "v": ...}``."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            return _json_encode(_to_json(value)).encode()
        except _Unserializable:
            raise TypeError(_explain(value, "value")) from None
        except RecursionError:
            raise ValueError("value nested too deeply (or circular)") from None

    def dumps_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        try:
            return _json_encode([[_to_json(a) for a in args], _to_json(dict(kwargs))]).encode()
        except _Unserializable:
            raise TypeError(_explain_call(args, kwargs)) from None
        except RecursionError:
            raise ValueError("arguments nested too deeply (or circular)") from None

    def loads(self, data: bytes) -> Any:
        try:
            return _json_decode(data.decode())
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError("json: value nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 - not UTF-8, not JSON
            raise SerializationError(f"json: cannot decode: {exc}") from exc


# -- where a value that cannot travel sat -------------------------------------------------------

_LEAVES = frozenset((str, int, float, bool, type(None), bytes, bytearray, memoryview, dt.datetime, dt.date,
                     dt.time, dt.timedelta, decimal.Decimal, uuid.UUID))


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _key_text(k: Any) -> str:
    return json.dumps(k, ensure_ascii=False) if type(k) is str else repr(k)[:40]


def _offender(o: Any, path: str, depth: int = 0) -> tuple[str, Any] | None:
    """The first value in ``o`` (in encoding order) that cannot travel, with its path."""
    if depth > 600:
        return None
    t = type(o)
    if t in _LEAVES:
        return None
    if t is list or t is tuple:
        for i, x in enumerate(o):
            found = _offender(x, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if t is set or t is frozenset:
        for x in o:
            found = _offender(x, f"{path}{{element}}", depth + 1)
            if found:
                return found
        return None
    if t is dict:
        for k, v in o.items():
            found = _offender(k, f"{path}{{key {_key_text(k)}}}", depth + 1) or \
                _offender(v, f"{path}[{_key_text(k)}]", depth + 1)
            if found:
                return found
        return None
    registered = _registered(o)
    if registered is not None:
        kind, _, payload = registered
        parts = payload.items() if kind == "dataclass" else (("value", payload),)
        return next(filter(None, (_offender(v, f"{path}.{f}", depth + 1) for f, v in parts)), None)
    try:
        base, value = _as_base(o)
    except _Unserializable:
        return path, o
    return None if base in _LEAVES else _offender(value, path, depth + 1)


def _message(found: tuple[str, Any] | None) -> str:
    if found is None:
        return "cannot serialize the value"
    path, o = found
    t = type(o)
    hint = ""
    if dataclasses.is_dataclass(t) or isinstance(o, enum.Enum):
        hint = f" ({'an enum' if isinstance(o, enum.Enum) else 'a dataclass'} not registered: " \
               "mark it @govrpc.serializable on both sides)"
    return f"{path}: cannot serialize type {_type_name(t)}{hint}"


def _explain(value: Any, root: str) -> str:
    return _message(_offender(value, root))


def _explain_call(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    found = _offender(list(args), "args")
    if found is None:
        found = next(filter(None, (_offender(v, f"kwargs[{_key_text(k)}]") for k, v in kwargs.items())), None)
    return _message(found)
