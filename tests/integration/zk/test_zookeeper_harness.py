"""The harness itself: a missing ZooKeeper fails under CI=true and skips otherwise; helpers really act."""

from __future__ import annotations

from typing import Any

import pytest
from kazoo.client import KazooClient, KazooState

from tests import zkharness
from tests.helpers import wait_until

pytestmark = pytest.mark.zookeeper


def test_missing_zookeeper_fails_under_ci_and_skips_elsewhere(monkeypatch: Any) -> None:
    monkeypatch.setattr(zkharness, "JAR_DIR", "/nonexistent-java-dir")
    with pytest.raises(zkharness.ZookeeperMissing, match="zookeeper.jar is missing"):
        zkharness.zookeeper_classpath()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        zkharness.start_server_or_skip()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="not available"):
        zkharness.start_server_or_skip()


def test_expire_session_and_drop_connection_do_what_they_say(zookeeper: Any) -> None:
    client = KazooClient(zookeeper.hosts, timeout=2)
    states: list[str] = []
    client.add_listener(states.append)
    client.start(timeout=10)
    try:
        session = client.client_id[0]
        zkharness.drop_connection(client)
        deadline_ok = wait_until(lambda: client.connected and KazooState.SUSPENDED in states)
        assert deadline_ok and client.client_id[0] == session  # same session after a dropped connection
        zkharness.expire_session(client, zookeeper.hosts)
        assert wait_until(lambda: KazooState.LOST in states and client.connected)
        assert client.client_id[0] != session
    finally:
        client.stop()
        client.close()

