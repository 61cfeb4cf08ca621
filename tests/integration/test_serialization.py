"""Values that travel: datetimes and registered dataclasses cross real gRPC as arguments and results."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import govrpc

PARIS = ZoneInfo("Europe/Paris")


@govrpc.serializable(name="test.Meeting")
@dataclasses.dataclass(frozen=True)
class Meeting:
    title: str
    start: dt.datetime
    length: dt.timedelta
    attendees: tuple[str, ...] = ()


@dataclasses.dataclass
class Secret:
    value: int


@govrpc.service("test.Calendar")
class Calendar:
    def __init__(self) -> None:
        self.received: list[Any] = []

    def postpone(self, meeting: Meeting, by: dt.timedelta) -> Meeting:
        self.received.append((meeting, by))
        return dataclasses.replace(meeting, start=meeting.start + by)

    def at(self, when: dt.datetime) -> dt.datetime:
        self.received.append(when)
        return when.replace(hour=9)

    def leak(self) -> Any:
        return {"kept": [Secret(1)]}


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_datetimes_and_registered_dataclasses_cross_grpc(serializer: str, memory_registry: str, start_server: Any,
                                                          client_factory: Any) -> None:
    calendar = Calendar()
    start_server(memory_registry, calendar, serializer=serializer)
    client = client_factory(memory_registry, local_first=False)
    proxy = client.proxy("test.Calendar", timeout=2.0)
    meeting = Meeting("review", dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS), dt.timedelta(minutes=45),
                      ("ann", "bob"))

    moved = proxy.postpone(meeting, by=dt.timedelta(days=1))
    sent, by = calendar.received[-1]
    assert type(sent) is Meeting and sent == meeting and sent.start.tzinfo is PARIS and sent.start.fold == 1
    assert type(sent.attendees) is tuple and type(by) is dt.timedelta
    assert type(moved) is Meeting and moved.start == dt.datetime(2026, 10, 26, 2, 30, tzinfo=PARIS)
    assert moved.start.tzinfo is PARIS and moved.attendees == ("ann", "bob")

    naive = proxy.at(dt.datetime(2026, 1, 2, 3, 4, 5, 6))
    assert calendar.received[-1] == dt.datetime(2026, 1, 2, 3, 4, 5, 6) and calendar.received[-1].tzinfo is None
    assert naive == dt.datetime(2026, 1, 2, 9, 4, 5, 6) and naive.tzinfo is None
    assert client.pool.addresses()  # over gRPC, not in-process


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_what_cannot_travel_is_refused_with_its_path(serializer: str, memory_registry: str, start_server: Any,
                                                      client_factory: Any) -> None:
    calendar = Calendar()
    start_server(memory_registry, calendar, serializer=serializer)
    proxy = client_factory(memory_registry, local_first=False).proxy("test.Calendar", timeout=2.0)
    with pytest.raises(govrpc.SerializationError,
                       match=rf"test.Calendar.*cannot encode the arguments with {serializer}: "
                             r"args\[0\]\.start: cannot serialize type .*Secret \(a dataclass not registered"):
        proxy.postpone(Meeting("x", Secret(1), dt.timedelta(0)), dt.timedelta(0))  # type: ignore[arg-type]
    assert calendar.received == []  # refused before sending
    with pytest.raises(govrpc.SerializationError,
                       match=r'cannot encode the result dict: value\["kept"\]\[0\]: cannot serialize type .*Secret'):
        proxy.leak()
    assert proxy.at(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)).hour == 9  # the server keeps serving
