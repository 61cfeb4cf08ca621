"""The built-in serializers: every listed type round-trips on both, the rest is refused with its path."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import sys
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import pytest

import govrpc
from govrpc.rpc.serialization import JsonSerializer, MsgpackSerializer, Serializer

SERIALIZERS = [MsgpackSerializer(), JsonSerializer()]
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(params=SERIALIZERS, ids=lambda s: s.name)
def serializer(request: pytest.FixtureRequest) -> Serializer:
    return request.param  # type: ignore[no-any-return]


@govrpc.serializable
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 0


@govrpc.serializable(name="shop.Order")
@dataclasses.dataclass
class Order:
    id: uuid.UUID
    items: list[Point]
    placed: dt.datetime
    total: decimal.Decimal
    tags: frozenset[str] = frozenset()
    count: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ValueError("a total cannot be negative")
        self.count = len(self.items)


@govrpc.serializable
class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


@govrpc.serializable
class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@govrpc.serializable
class Perm(enum.Flag):
    R = 4
    W = 2


@dataclasses.dataclass
class Unregistered:
    value: int


class Mood(enum.Enum):
    HAPPY = 1


class Plain(enum.IntEnum):
    ONE = 1


class Foo:
    pass


def round_trip(serializer: Serializer, value: Any) -> Any:
    return serializer.loads(serializer.dumps(value))


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type all the way down (Decimals by their text: 1.10 is not 1.1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and type(next(j for j in b if j == k)) is type(k)
                                        and same(v, b[k]) for k, v in a.items())
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset() and a.fold == b.fold
    return bool(a == b)


LISTED = {
    "datetime-naive": dt.datetime(2026, 12, 1, 20, 15, 30, 123456),
    "datetime-utc": dt.datetime(2026, 12, 1, 20, 15, tzinfo=dt.timezone.utc),
    "datetime-offset": dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    "datetime-zone": dt.datetime(2026, 7, 14, 12, 0, tzinfo=PARIS),
    "datetime-zone-second-of-two": dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),  # clocks went back
    "datetime-zone-skipped": dt.datetime(2026, 3, 29, 2, 30, tzinfo=PARIS),  # a wall time that never was
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 999999),
    "time-offset": dt.time(7, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
    "time-zone": dt.time(7, 30, tzinfo=PARIS),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "timedelta-max": dt.timedelta.max,
    "decimal-precision": decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459"),
    "decimal-trailing-zero": decimal.Decimal("1.10"),
    "decimal-exponent": decimal.Decimal("-1.5E+300"),
    "decimal-negative-zero": decimal.Decimal("-0"),
    "decimal-infinity": decimal.Decimal("-Infinity"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tuple": (1, "a", None),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "bytes": b"\x00\xff binary",
    "bigint": [2**64, 2**64 - 1, -(2**63), 0, True, False],  # with the largest and smallest native ones
    "bigint-negative": (-(2**63) - 1,),
    "bigint-huge": {7**500: -(7**500)},
    "empty": [(), set(), frozenset(), [], {}, b"", ""],
    "int-keys": {1: "one", -2: "minus two", 2**70: "big"},
    "mixed-keys": {None: 0, True: 1, 1.5: 2, (1, "a"): 3, dt.date(2020, 1, 1): 4, "s": 5},
    "tag-key": {"$type": "datetime", "v": "not a date"},  # a user's dict that looks like a tag
    "nested": {"when": [(dt.datetime(2026, 1, 1, tzinfo=PARIS), {decimal.Decimal("0.1")}),
                        frozenset({(1, 2)})],
               "by": {3: [b"x", (uuid.UUID(int=1), dt.timedelta(hours=1))], 4: [1.5, -0.0, float("inf")]}},
    "dataclass": Point(1, 2),
    "dataclass-nested": Order(uuid.UUID(int=7), [Point(1), Point(2, 3)], dt.datetime(2026, 1, 2, tzinfo=PARIS),
                              decimal.Decimal("19.90"), frozenset({"gift"})),
    "enum": [Color.RED, Color.PAIR],
    "intenum": Level.HIGH,
    "flag": Perm.R | Perm.W,
}


@pytest.mark.parametrize("value", LISTED.values(), ids=LISTED.keys())
def test_every_listed_type_round_trips(serializer: Serializer, value: Any) -> None:
    got = round_trip(serializer, value)
    assert same(value, got), (value, got)


def test_nan_round_trips(serializer: Serializer) -> None:
    assert decimal.Decimal.is_nan(round_trip(serializer, decimal.Decimal("NaN")))
    got = round_trip(serializer, float("nan"))
    assert type(got) is float and got != got


def test_a_registered_dataclass_is_rebuilt_through_its_constructor(serializer: Serializer) -> None:
    order = LISTED["dataclass-nested"]
    got = round_trip(serializer, order)
    assert type(got) is Order and got == order and got.count == 2  # __post_init__ ran
    assert type(got.items[0]) is Point and type(got.total) is decimal.Decimal


def test_subclasses_of_builtins_travel_as_their_base(serializer: Serializer) -> None:
    pair = collections.namedtuple("pair", "a b")
    got = round_trip(serializer, [pair(1, 2), collections.OrderedDict(a=1), Plain.ONE,
                                  collections.Counter("aab")])
    assert same(got, [(1, 2), {"a": 1}, 1, {"a": 2, "b": 1}])


def test_naive_and_aware_datetimes_stay_apart(serializer: Serializer) -> None:
    naive, aware = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    got_naive, got_aware = round_trip(serializer, (naive, aware))
    assert got_naive.tzinfo is None and got_aware.tzinfo == dt.timezone.utc


def test_a_tzinfo_without_a_zone_name_arrives_as_its_offset(serializer: Serializer) -> None:
    class Fixed(dt.tzinfo):
        def utcoffset(self, _: Any) -> dt.timedelta:
            return dt.timedelta(hours=2)

        def dst(self, _: Any) -> dt.timedelta:
            return dt.timedelta(0)

    sent = dt.datetime(2026, 1, 1, 12, tzinfo=Fixed())
    got = round_trip(serializer, sent)
    assert got == sent and got.utcoffset() == dt.timedelta(hours=2)
    assert got.tzinfo == dt.timezone(dt.timedelta(hours=2))


def test_a_call_travels_as_args_and_kwargs(serializer: Serializer) -> None:
    args, kwargs = serializer.loads(serializer.dumps_call(("ann", (1, 2)), {"when": dt.date(2026, 1, 1)}))
    assert list(args) == ["ann", (1, 2)] and type(args[1]) is tuple
    assert kwargs == {"when": dt.date(2026, 1, 1)}


def test_a_call_of_plain_values_is_the_array_older_versions_read_and_send() -> None:
    serializer = MsgpackSerializer()
    data = serializer.dumps_call(("ann", [1]), {"k": {"a": 1}})
    assert msgpack.unpackb(data) == [["ann", [1]], {"k": {"a": 1}}]  # no extension type for plain values
    assert serializer.loads(msgpack.packb((("ann",), {"k": 1}))) == [["ann"], {"k": 1}]
    assert json.loads(JsonSerializer().dumps_call(("ann",), {"k": 1})) == [["ann"], {"k": 1}]


def test_json_forms_are_the_documented_tags() -> None:
    def wire(value: Any) -> Any:
        return json.loads(JsonSerializer().dumps(value))

    assert wire(dt.datetime(2026, 7, 14, 12, 0, tzinfo=PARIS)) == \
        {"$type": "datetime", "v": "2026-07-14T12:00:00+02:00[Europe/Paris]"}
    assert wire(dt.date(2026, 7, 14)) == {"$type": "date", "v": "2026-07-14"}
    assert wire(dt.time(1, 2, 3)) == {"$type": "time", "v": "01:02:03"}
    assert wire(dt.timedelta(days=1, seconds=2, microseconds=3)) == {"$type": "timedelta", "v": [1, 2, 3]}
    assert wire(decimal.Decimal("1.10")) == {"$type": "decimal", "v": "1.10"}
    assert wire(uuid.UUID(int=1)) == {"$type": "uuid", "v": "00000000-0000-0000-0000-000000000001"}
    assert wire((1, 2)) == {"$type": "tuple", "v": [1, 2]}
    assert wire({3}) == {"$type": "set", "v": [3]}
    assert wire(frozenset({3})) == {"$type": "frozenset", "v": [3]}
    assert wire(b"\x00\x01") == {"$type": "bytes", "v": "AAE="}
    assert wire({1: "a"}) == {"$type": "dict", "v": [[1, "a"]]}
    assert wire({"$type": "x"}) == {"$type": "dict", "v": [["$type", "x"]]}  # escaped, never read as a tag
    assert wire({"a": 1}) == {"a": 1}
    assert wire(Point(1, 2)) == {"$type": "dataclass", "name": f"{__name__}.Point", "v": {"x": 1, "y": 2}}
    assert wire(Level.HIGH) == {"$type": "enum", "name": f"{__name__}.Level", "v": 2}


def test_msgpack_uses_extension_types_and_reads_native_timestamps() -> None:
    serializer = MsgpackSerializer()
    ext = msgpack.unpackb(serializer.dumps(dt.date(2026, 7, 14)))
    assert ext == msgpack.ExtType(5, b"2026-07-14")
    assert msgpack.unpackb(serializer.dumps(uuid.UUID(int=1))) == msgpack.ExtType(9, uuid.UUID(int=1).bytes)
    stamp = msgpack.packb(msgpack.Timestamp(1_700_000_000))  # what another language's msgpack sends
    assert serializer.loads(stamp) == dt.datetime.fromtimestamp(1_700_000_000, dt.timezone.utc)


# -- refused, with the type and where it sat ------------------------------------------------------

@pytest.mark.parametrize("call, where", [
    (((1, {"when": [Foo()]}), {}), 'args[1]["when"][0]'),
    (((), {"when": Foo()}), 'kwargs["when"]'),
    ((({Foo()},), {}), "args[0]{element}"),
    ((({Foo(): 1},), {}), "args[0]{key <"),
    ((({3: (1, Foo())},), {}), "args[0][3][1]"),
    (((Order(uuid.UUID(int=1), [Point(Foo())], dt.datetime(2026, 1, 1),  # type: ignore[arg-type]
                   decimal.Decimal(1)),), {}), "args[0].items[0].x"),
], ids=["list-in-dict", "kwarg", "set-element", "dict-key", "tuple-under-int-key", "dataclass-field"])
def test_a_value_that_cannot_travel_is_named_with_its_path(serializer: Serializer, call: Any, where: str) -> None:
    with pytest.raises(TypeError) as info:
        serializer.dumps_call(*call)
    message = str(info.value)
    assert message.startswith(where) and f"cannot serialize type {__name__}.Foo" in message, message


def test_a_result_that_cannot_travel_is_named_with_its_path(serializer: Serializer) -> None:
    with pytest.raises(TypeError, match=r'^value\[1\]\["x"\]: cannot serialize type object$'):
        serializer.dumps([1, {"x": object()}])


def test_an_unregistered_dataclass_or_enum_is_refused_at_encode(serializer: Serializer) -> None:
    with pytest.raises(TypeError, match=rf"^args\[0\]: cannot serialize type {__name__}.Unregistered "
                                        r"\(a dataclass not registered: mark it @govrpc.serializable"):
        serializer.dumps_call((Unregistered(1),), {})
    with pytest.raises(TypeError, match=rf"^value\[0\]: cannot serialize type {__name__}.Mood \(an enum"):
        serializer.dumps([Mood.HAPPY])


def test_a_subclass_of_a_registered_dataclass_is_not_sent_as_its_base(serializer: Serializer) -> None:
    @dataclasses.dataclass(frozen=True)
    class Point3(Point):
        z: int = 0

    with pytest.raises(TypeError, match=r"^value: cannot serialize type .*Point3 \(a dataclass"):
        serializer.dumps(Point3(1, 2, 3))


def test_circular_values_are_refused_not_hung(serializer: Serializer) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(ValueError):
        serializer.dumps(loop)
    deep: Any = ()
    for _ in range(2000):
        deep = (deep,)
    with pytest.raises(ValueError, match="nested too deeply"):
        serializer.dumps(deep)


# -- what the wire may claim -----------------------------------------------------------------------

def msgpack_ext(code: int, payload: Any) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb(payload)))


def json_tag(tag: dict[str, Any]) -> bytes:
    return json.dumps(tag).encode()


NEVER_IMPORTED = "tests.unit.no_such_module_serialization.Evil"


@pytest.mark.parametrize("data", [
    msgpack_ext(11, [NEVER_IMPORTED, {}]),
    json_tag({"$type": "dataclass", "name": NEVER_IMPORTED, "v": {}}),
], ids=["msgpack", "json"])
def test_an_unknown_registered_name_is_refused_and_nothing_is_imported(data: bytes) -> None:
    serializer = MsgpackSerializer() if data[:1] != b"{" else JsonSerializer()
    with pytest.raises(govrpc.SerializationError, match=f"no dataclass is registered as '{NEVER_IMPORTED}'"):
        serializer.loads(data)
    assert "tests.unit.no_such_module_serialization" not in sys.modules


@pytest.mark.parametrize("msgpack_data, json_data, match", [
    (msgpack_ext(12, [f"{__name__}.Point", 1]), {"$type": "enum", "name": f"{__name__}.Point", "v": 1},
     "no enum is registered as"),
    (msgpack_ext(11, [f"{__name__}.Level", {}]), {"$type": "dataclass", "name": f"{__name__}.Level", "v": {}},
     "no dataclass is registered as"),
    (msgpack_ext(11, ["shop.Order", {"id": 1, "evil": 2}]),
     {"$type": "dataclass", "name": "shop.Order", "v": {"id": 1, "evil": 2}}, "shop.Order has no field 'evil'"),
    (msgpack_ext(11, [f"{__name__}.Point", {"y": 1}]),
     {"$type": "dataclass", "name": f"{__name__}.Point", "v": {"y": 1}}, "cannot rebuild .*Point: .*'x'"),
    (msgpack_ext(11, ["shop.Order", {"id": None, "items": [], "placed": None, "total": -1}]),
     {"$type": "dataclass", "name": "shop.Order", "v": {"id": None, "items": [], "placed": None, "total": -1}},
     "cannot rebuild shop.Order: a total cannot be negative"),
    (msgpack_ext(12, [f"{__name__}.Level", 9]), {"$type": "enum", "name": f"{__name__}.Level", "v": 9},
     "Level has no member 9"),
], ids=["enum-name-for-a-dataclass", "dataclass-name-for-an-enum", "unknown-field", "missing-field",
        "post-init-refuses", "no-such-member"])
def test_registered_classes_refuse_what_they_would_not_build(msgpack_data: bytes, json_data: dict[str, Any],
                                                             match: str) -> None:
    for serializer, data in ((MsgpackSerializer(), msgpack_data), (JsonSerializer(), json_tag(json_data))):
        with pytest.raises(govrpc.SerializationError, match=match):
            serializer.loads(data)


@pytest.mark.parametrize("msgpack_data, json_data, match", [
    (msgpack.packb(msgpack.ExtType(99, b"")), {"$type": "pickle", "v": "x"}, "unknown"),
    (msgpack.packb(msgpack.ExtType(4, b"yesterday")), {"$type": "datetime", "v": "yesterday"},
     "malformed datetime 'yesterday'"),
    (msgpack.packb(msgpack.ExtType(4, b"2026-01-01T00:00:00+01:00[../../etc/passwd]")),
     {"$type": "datetime", "v": "2026-01-01T00:00:00+01:00[../../etc/passwd]"}, "bad time zone"),
    (msgpack.packb(msgpack.ExtType(4, b"2026-01-01T00:00:00+01:00[Mars/Olympus]")),
     {"$type": "datetime", "v": "2026-01-01T00:00:00+01:00[Mars/Olympus]"}, "unknown time zone 'Mars/Olympus'"),
    (msgpack.packb(msgpack.ExtType(8, b"one")), {"$type": "decimal", "v": "one"}, "malformed Decimal"),
    (msgpack.packb(msgpack.ExtType(9, b"short")), {"$type": "uuid", "v": "short"}, "malformed UUID"),
    (msgpack_ext(7, [1, 2]), {"$type": "timedelta", "v": [1, 2]}, "malformed timedelta"),
    (msgpack_ext(7, [10**10, 0, 0]), {"$type": "timedelta", "v": [10**10, 0, 0]}, "out of range"),
    (msgpack_ext(2, [[1]]), {"$type": "set", "v": [[1]]}, "malformed set"),
    (msgpack_ext(1, {"a": 1}), {"$type": "tuple", "v": {"a": 1}}, "malformed tuple"),
    (b"\xc1", {"$type": "bytes", "v": "not base64!"}, "cannot decode|not base64"),
    (msgpack.packb({"k": 1}) + b"\x00", {"$type": "tuple", "v": [], "extra": 1}, "cannot decode|malformed"),
], ids=["unknown-type", "bad-datetime", "zone-path", "unknown-zone", "bad-decimal", "bad-uuid",
        "bad-timedelta", "huge-timedelta", "unhashable-element", "tuple-of-a-map", "garbage", "extra-data"])
def test_malformed_wire_data_is_a_serialization_error(msgpack_data: bytes, json_data: dict[str, Any],
                                                      match: str) -> None:
    for serializer, data in ((MsgpackSerializer(), msgpack_data), (JsonSerializer(), json_tag(json_data))):
        with pytest.raises(govrpc.SerializationError, match=match):
            serializer.loads(data)


def test_deep_values_within_the_limit_round_trip(serializer: Serializer) -> None:
    deep: Any = (Point(1),)
    for i in range(60):
        deep = [(deep, {i})]
    assert same(round_trip(serializer, deep), deep)


def test_deeply_nested_wire_data_is_a_serialization_error() -> None:
    data = msgpack.packb([])
    for _ in range(3000):  # without a bound, this much nesting overflows the C stack and kills the process
        data = msgpack.packb([msgpack.ExtType(1, data)])
    with pytest.raises(govrpc.SerializationError, match="nested too deeply"):
        MsgpackSerializer().loads(data)
    with pytest.raises(govrpc.SerializationError):
        JsonSerializer().loads(b'{"$type": "tuple", "v": ' * 3000 + b"[]" + b"}" * 3000)


# -- registering ------------------------------------------------------------------------------------

def test_registration_refuses_what_it_cannot_rebuild() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="neither a dataclass nor an Enum"):
        govrpc.serializable(Foo)
    with pytest.raises(govrpc.ConfigurationError, match="is not a class"):
        govrpc.serializable(Point(1))
    with pytest.raises(govrpc.ConfigurationError, match="name 'has space'"):
        govrpc.serializable(name="has space")(Point)
    with pytest.raises(govrpc.ConfigurationError, match="name 'shop.Order' is taken by .*Order"):
        govrpc.serializable(name="shop.Order")(Point)

    @dataclasses.dataclass
    class NeedsMore:
        a: int
        extra: dataclasses.InitVar[int]

    with pytest.raises(govrpc.ConfigurationError, match="needs extra, which are not fields"):
        govrpc.serializable(NeedsMore)


def test_a_class_defined_again_under_its_name_replaces_the_old_one() -> None:
    def define() -> type:
        @govrpc.serializable(name="tests.redefined")
        @dataclasses.dataclass
        class Again:
            a: int
        return Again

    first, second = define(), define()
    got = MsgpackSerializer().loads(MsgpackSerializer().dumps(first(1)))
    assert type(got) is second and got.a == 1
