"""Business switches flipped live through the registry (file and ZooKeeper), read locally."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

import govrpc
from govrpc.cli import main
from govrpc.degrade.switches import SWITCH_SERVICE, SWITCHES
from tests.helpers import wait_until


def _flip_live(registry: str, client_factory: Any, caplog: Any) -> None:
    name = f"recommendations-{uuid.uuid4().hex[:8]}"
    client_factory(registry)  # a running process: its client watches the switches
    live = govrpc.switch(name)
    grey = govrpc.switch(f"{name}.ranking", "v1")

    @govrpc.fallback(switch=name, to=lambda user: ["bestsellers"])
    def recommend(user: str) -> list[str]:
        return [f"for {user}"]

    assert bool(live) and recommend("ann") == ["for ann"] and grey.value == "v1"
    with govrpc.Admin(registry) as admin:
        admin.set_switch(name, False)
        admin.set_switch(f"{name}.ranking", "v2")
        wait_until(lambda: not live, timeout=1.0, what="the switch to turn off")
        assert recommend("ann") == ["bestsellers"]
        wait_until(lambda: grey.value == "v2", timeout=1.0)
        assert admin.switches()[name] is False
        with caplog.at_level(logging.ERROR, logger="govrpc.degrade"):
            admin.registry.put_rule(SWITCH_SERVICE, SWITCHES, name, "{not json")
            wait_until(lambda: "not JSON" in caplog.text, timeout=2.0, what="the refusal to be logged")
        assert not live  # the last good value is kept
        admin.set_switch(name, True)
        wait_until(lambda: bool(live), timeout=1.0)
        assert recommend("bob") == ["for bob"]
        admin.delete_switch(name)
        admin.set_switch(f"{name}.x", 1)
        wait_until(lambda: govrpc.switch(f"{name}.x", 0).value == 1, timeout=1.0)
        assert bool(govrpc.switch(name, True))  # deleted: the code's default again


def test_switches_flip_live_on_the_file_registry(file_registry, client_factory, caplog) -> None:
    _flip_live(file_registry, client_factory, caplog)


def test_switches_flip_live_on_zookeeper(zk_url, client_factory, caplog) -> None:
    _flip_live(zk_url(), client_factory, caplog)


def test_bad_switches_are_refused(memory_registry) -> None:
    with govrpc.Admin(memory_registry) as admin:
        with pytest.raises(govrpc.ConfigurationError, match="switch name"):
            admin.set_switch("bad/name", True)
        with pytest.raises(govrpc.ConfigurationError, match="JSON value"):
            admin.set_switch("ok", object())
        with pytest.raises(govrpc.ConfigurationError, match="JSON value"):
            admin.set_switch("ok", float("nan"))
        assert admin.switches() == {}
    with pytest.raises(govrpc.ConfigurationError, match="callable"):
        govrpc.fallback(switch="x", to=42)  # type: ignore[arg-type]


def test_cli_switch(file_registry, client_factory, capsys) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    client_factory(file_registry)
    assert main(["switch", name, "off", "--registry", file_registry]) == 0
    wait_until(lambda: not govrpc.switch(name), timeout=1.0)
    assert main(["switch", "--registry", file_registry]) == 0
    assert name in capsys.readouterr().out
    assert main(["switch", name, '{"strategy": "b"}', "--registry", file_registry]) == 0
    wait_until(lambda: govrpc.switch(name).value == {"strategy": "b"}, timeout=1.0)
    assert main(["switch", name, "--delete", "--registry", file_registry]) == 0
    wait_until(lambda: govrpc.switch(name, "default").value == "default", timeout=1.0)


def test_a_provider_process_sees_switches_too(file_registry, start_server) -> None:
    from tests.integration.degrade_services import Flaky

    name = f"provider-{uuid.uuid4().hex[:8]}"
    server = start_server(file_registry, Flaky("a"))  # no Client in this registry
    with govrpc.Admin(file_registry) as admin:
        admin.set_switch(name, "on-provider")
        wait_until(lambda: govrpc.switch(name).value == "on-provider", timeout=1.0)
    server.stop(grace=0)
    wait_until(lambda: govrpc.switch(name, None).value is None, timeout=1.0, what="the watcher to go")
