"""Monitoring on ZooKeeper: health summaries under /{service}/monitors, two rooms' registries as one."""

from __future__ import annotations

import collections
from typing import Any

import govrpc
from govrpc.cli import main
from tests.helpers import wait_until
from tests.integration.services import Echo
from tests.zkharness import zk_address


def test_summaries_are_nodes_under_monitors_and_govrpc_top_reads_them(zk_url, start_server, client_factory,
                                                                      capsys) -> None:
    url = zk_url()
    server = start_server(url, Echo(), report_interval=0.2)
    client = client_factory(url)
    for i in range(10):
        client.proxy("test.Echo").echo(i)
    with govrpc.Admin(url) as admin:
        wait_until(lambda: any(h.calls for h in admin.health("test.Echo").get("test.Echo", [])),
                   what="a summary with the calls")
        names = list(admin.registry.rules("test.Echo", "monitors"))
    assert names == [f"provider-127.0.0.1-{server.port}"]
    capsys.readouterr()
    assert main(["top", "--registry", url]) == 0
    assert f"127.0.0.1:{server.port}" in capsys.readouterr().out


def test_a_consumer_on_two_zookeepers_keeps_calling_when_one_goes_away(zookeeper, zookeeper_private,
                                                                        start_server, client_factory) -> None:
    room_a = zk_address(zookeeper.hosts)
    room_b = zk_address(zookeeper_private.hosts)
    start_server(room_a, Echo("a"), tags={"zone": "a"})
    start_server(room_b, Echo("b"), host="127.0.0.2", tags={"zone": "b"})
    client = client_factory([room_a, room_b])
    echo = client.proxy("test.Echo", loadbalance="roundrobin")
    reference: Any = client.reference("test.Echo", loadbalance="roundrobin")
    wait_until(lambda: len(reference.directory.invokers) == 2, what="the providers of both rooms")
    assert set(echo.whoami() for _ in range(10)) == {"a", "b"}
    zookeeper_private.kill()  # room b's registry is gone; its provider still runs
    seen = collections.Counter(echo.whoami() for _ in range(40))
    assert sum(seen.values()) == 40 and seen["a"] > 0
