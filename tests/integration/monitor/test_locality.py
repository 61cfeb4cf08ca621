"""Zones: a consumer prefers its zone, spills over as it sickens, can be held to it; several registries."""

from __future__ import annotations

import collections
import shutil
from typing import Any

import pytest

import govrpc
from govrpc.exceptions import ProviderUnavailableError
from govrpc.invocation import Filter, Invocation, Invoker
from tests.helpers import wait_until


@govrpc.service("mon.Zoned", idempotent=True)
class Zoned:
    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name


class Sick(Filter):
    """A provider filter that fails every call while ``on``: a provider failure, retried elsewhere."""

    side = "provider"

    def __init__(self) -> None:
        self.on = False

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        if self.on:
            raise ProviderUnavailableError("sick")
        return invoker.invoke(invocation)


def zones(file_registry: str, start_server: Any) -> Sick:
    sick = Sick()
    start_server(file_registry, Zoned("a1"), host="127.0.0.2", tags={"zone": "a"}, filters=[sick])
    start_server(file_registry, Zoned("a2"), host="127.0.0.3", tags={"zone": "a"})
    start_server(file_registry, Zoned("b1"), host="127.0.0.4", tags={"zone": "b"})
    return sick


def test_a_consumer_prefers_its_zone_and_spills_over_as_its_healthy_share_falls(file_registry, start_server,
                                                                               client_factory) -> None:
    sick = zones(file_registry, start_server)
    client = client_factory(file_registry, zone="a")
    options = {"loadbalance": "roundrobin", "outlier.interval": 0.3}
    zoned = client.proxy("mon.Zoned", **options)
    wait_until(lambda: len(client.reference("mon.Zoned", **options).directory.invokers) == 3,
               what="three providers")
    assert set(collections.Counter(zoned.who() for _ in range(60))) == {"a1", "a2"}
    sick.on = True  # a1 fails: zone a is half healthy, below the 0.7 threshold
    seen = collections.Counter(zoned.who() for _ in range(200))  # every call answered (failover)
    assert seen["b1"] > 10 and seen["a2"] > 10 and "a1" not in seen
    sick.on = False
    wait_until(lambda: zoned.who() == "a1", what="a1 back once its ejection ends")
    seen = collections.Counter(zoned.who() for _ in range(60))
    assert "b1" not in seen and seen["a1"] > 0


def test_zone_force_keeps_calls_in_the_zone(file_registry, start_server, client_factory) -> None:
    sick = zones(file_registry, start_server)
    client = client_factory(file_registry, zone="a", zone_force=True)
    zoned = client.proxy("mon.Zoned", loadbalance="roundrobin")
    wait_until(lambda: len(client.reference("mon.Zoned", loadbalance="roundrobin").directory.invokers) == 3,
               what="three providers")
    sick.on = True
    seen = collections.Counter(zoned.who() for _ in range(100))
    assert "b1" not in seen and seen["a2"] == 100


def test_a_consumer_without_a_zone_of_its_providers_uses_the_others(file_registry, start_server,
                                                                   client_factory) -> None:
    zones(file_registry, start_server)
    client = client_factory(file_registry, zone="c")
    seen = collections.Counter(client.proxy("mon.Zoned").who() for _ in range(60))
    assert set(seen) <= {"a1", "a2", "b1"} and sum(seen.values()) == 60


def test_bad_locality_settings_are_refused() -> None:
    for bad in ({"zone": "a,b"}, {"zone": 3}, {"zone_threshold": 0}, {"zone_threshold": 1.5},
                {"zone_force": "yes"}, {"region": "x/y"}):
        with pytest.raises(govrpc.ConfigurationError):
            govrpc.Client("memory://", **bad)


def test_a_consumer_on_two_registries_sees_the_union_and_survives_one_going_away(tmp_path, start_server,
                                                                                client_factory) -> None:
    room_a, room_b = f"file://{tmp_path}/room-a", f"file://{tmp_path}/room-b"
    start_server(room_a, Zoned("a1"), tags={"zone": "a"})
    start_server(room_b, Zoned("b1"), host="127.0.0.2", tags={"zone": "b"})
    client = client_factory([room_a, room_b])
    zoned = client.proxy("mon.Zoned", loadbalance="roundrobin")
    reference = client.reference("mon.Zoned", loadbalance="roundrobin")
    wait_until(lambda: len(reference.directory.invokers) == 2, what="the providers of both registries")
    assert set(zoned.who() for _ in range(10)) == {"a1", "b1"}
    with govrpc.Admin(room_a) as admin:
        assert [u.path for u in admin.consumers("mon.Zoned")] == ["mon.Zoned"]  # registered in each
    shutil.rmtree(tmp_path / "room-b")  # room b's registry goes away
    for _ in range(30):
        assert zoned.who() in ("a1", "b1")
    with pytest.raises(govrpc.ConfigurationError, match="twice"):
        govrpc.Client([room_a, room_a])
    with pytest.raises(govrpc.ConfigurationError):
        govrpc.Client([])
