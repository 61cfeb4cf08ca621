"""Timeouts follow DESIGN.md's precedence: registry override, consumer setting, client default."""

from __future__ import annotations

import time

import pytest

import govrpc
from tests.helpers import wait_until
from tests.integration.services import Echo


def test_per_method_and_registry_overrides(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo())
    client = client_factory(memory_registry, timeout=5.0)
    proxy = client.proxy("test.Echo", retries=0, methods={"sleep": {"timeout": 0.3}})
    reference = proxy._reference
    assert reference.timeout_of("sleep") == 0.3 and reference.timeout_of("echo") == 5.0
    with pytest.raises(govrpc.CallTimeoutError):
        proxy.sleep(1.0)

    admin = govrpc.Admin(memory_registry)
    try:
        admin.set_override("test.Echo", "slow-sleep", "sleep.timeout = 3\ntimeout = 2.5")
        assert wait_until(lambda: reference.timeout_of("sleep") == 3.0)
        assert reference.timeout_of("echo") == 2.5  # the registry beats the consumer and the default
        assert proxy.sleep(1.0) == 1.0
        with pytest.raises(govrpc.RuleError, match="timeout must be a positive number"):
            admin.set_override("test.Echo", "bad", "timeout = -1")
        assert "bad" not in admin.rules("test.Echo", "configurators")
        admin.delete_rule("test.Echo", "configurators", "slow-sleep")
        assert wait_until(lambda: reference.timeout_of("sleep") == 0.3)
        assert reference.timeout_of("echo") == 5.0
    finally:
        admin.close()


def test_a_broken_override_keeps_the_last_good_timeout(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo())
    proxy = client_factory(memory_registry, timeout=5.0).proxy("test.Echo")
    reference = proxy._reference
    registry = govrpc.Admin(memory_registry).registry
    registry.put_rule("test.Echo", "configurators", "t", "timeout = 2")
    assert wait_until(lambda: reference.timeout == 2.0)
    registry.put_rule("test.Echo", "configurators", "t", "timeout = soon")  # written around Admin
    time.sleep(0.2)
    assert reference.timeout == 2.0
    assert proxy.echo("still calling") == "still calling"


@pytest.mark.parametrize("options, named", [
    ({"timeout": 0}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
    ({"methods": {"sleep": {"timeout": -1}}}, "sleep.timeout"),
    ({"methods": {"sleep": {"timeout": "abc"}}}, "sleep.timeout"),
])
def test_bad_timeouts_are_refused_where_configured(memory_registry, start_server, client_factory,
                                                   options, named) -> None:
    start_server(memory_registry, Echo())
    client = client_factory(memory_registry)
    with pytest.raises(govrpc.ConfigurationError, match=f"{named} must be a positive number of seconds"):
        client.proxy("test.Echo", **options)
    with pytest.raises(govrpc.ConfigurationError, match="timeout must be a positive number of seconds"):
        govrpc.Client(memory_registry, timeout="never")
    with pytest.raises(govrpc.ConfigurationError, match="timeout must be a positive number of seconds"):
        client.invoke("test.Echo", "echo", [1], timeout=-2)
    assert client.proxy("test.Echo").echo("unharmed") == "unharmed"
