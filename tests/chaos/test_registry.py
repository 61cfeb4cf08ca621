"""The registry failing under load: expired sessions, a killed ZooKeeper leader, ZooKeeper down for 20 s."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import govrpc
from govrpc.registry.zookeeper import ZookeeperRegistry
from tests.chaos.harness import Load
from tests.helpers import wait_until
from tests.integration.services import Echo
from tests.zkharness import ZookeeperEnsemble, ZookeeperMissing, expire_session, zk_address

pytestmark = pytest.mark.zookeeper


def open_registry(address: str) -> ZookeeperRegistry:
    """A registry instance of its own, as another process would have; closed by the caller."""
    return ZookeeperRegistry(ZookeeperRegistry.parse_address(address))


def session_of(registry: ZookeeperRegistry) -> int | None:
    client_id = registry.client.client_id
    return client_id[0] if client_id else None


def providers_of(registry: ZookeeperRegistry, service: str) -> list[str]:
    return sorted(registry.client.get_children(f"{registry.root}/{service}/providers"))


def test_expired_sessions_register_again_resubscribe_and_see_later_changes(
        zookeeper: Any, zk_url: Any, providers: Any, client_factory: Any, figures: Any) -> None:
    # empty_protection at its default (the test addresses turn it off): the only provider's node is
    # gone between its session's expiry and its registration again, and that push must not be trusted
    address = zk_url(session_timeout=2, empty_protection=None)
    provider_registry, consumer_registry = open_registry(address), open_registry(address)
    servers: list[govrpc.Server] = []
    try:
        servers.append(govrpc.Server(provider_registry).add(Echo("p1")).start())
        providers(address, "ledger")  # a process of its own too, untouched by the expiries
        client = client_factory(consumer_registry)
        echo = client.proxy("test.Echo", retries=2, timeout=3.0)
        reference = client.reference("test.Echo", retries=2, timeout=3.0)
        wait_until(lambda: len(reference.directory.urls) == 1, what="the first provider")
        with Load(lambda w, n: echo.echo(n), threads=3, seconds=30) as load:
            load.wait_calls(100)
            before = session_of(provider_registry), session_of(consumer_registry)
            expire_session(provider_registry.client, zookeeper.hosts)
            expire_session(consumer_registry.client, zookeeper.hosts)
            wait_until(lambda: session_of(provider_registry) not in (None, before[0])
                       and session_of(consumer_registry) not in (None, before[1]), what="new sessions")
            # the provider is registered again on its new session; the consumer's watches are re-armed
            wait_until(lambda: providers_of(consumer_registry, "test.Echo") == [servers[0].urls[0].encoded()],
                       what="the provider registered again")
            wait_until(lambda: not consumer_registry.subscription_status("test.Echo").stale, what="resubscribed")
            servers.append(govrpc.Server(provider_registry).add(Echo("p2")).start())  # a later change
            wait_until(lambda: len(reference.directory.urls) == 2, what="the consumer to see p2")
            wait_until(lambda: {echo.whoami() for _ in range(20)} == {"p1", "p2"}, what="calls reaching p2")
            load.wait_calls(100)
            load.stop()
        figures(load, "5 consumer and provider sessions expired")
        assert load.failed == 0, load.examples
        consumers = consumer_registry.client.get_children(f"{consumer_registry.root}/test.Echo/consumers")
        assert consumers, "the consumer registered itself again"
    finally:
        for server in servers:
            server.stop(grace=0.5)
        consumer_registry.close()
        provider_registry.close()


def _ensemble() -> ZookeeperEnsemble:
    try:
        return ZookeeperEnsemble(3)
    except ZookeeperMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"ZooKeeper is required under CI=true: {exc}")
        pytest.skip(str(exc))
        raise


def test_zookeeper_leader_sigkilled_fails_no_call_and_keeps_every_provider(
        tmp_path: Any, providers: Any, client_factory: Any, figures: Any) -> None:
    ensemble = _ensemble()
    try:
        ensemble.start()
        address = zk_address(ensemble.hosts, session_timeout=6, empty_protection=10, snapshot_dir=tmp_path)
        procs = [providers(address, f"p{i}") for i in range(3)]
        client = client_factory(address, timeout=3.0)
        ledger = client.proxy("chaos.Ledger", retries=2, loadbalance="roundrobin")
        reference = client.reference("chaos.Ledger", retries=2, loadbalance="roundrobin")
        wait_until(lambda: len(reference.directory.urls) == 3, timeout=20, what="three providers")
        with Load(lambda w, n: ledger.balance(f"a{w}", n), threads=4, seconds=60) as load:
            load.wait_calls(200)
            leader = ensemble.leader()
            leader.kill()
            survivors = [s for s in ensemble.servers if s is not leader]
            wait_until(lambda: any(s.mode == "leader" for s in survivors), timeout=30, what="a new leader")
            load.wait_calls(300, timeout=30)
            load.stop()
        figures(load, "3 ZooKeeper leader SIGKILLed (3-node ensemble)")
        assert load.failed == 0, load.examples
        checker = open_registry(zk_address(",".join(s.hosts for s in survivors)))
        try:
            root = client.registry.root  # type: ignore[attr-defined]
            wait_until(lambda: len(checker.client.get_children(f"{root}/chaos.Ledger/providers")) == 3,
                       timeout=20, what="every provider still registered")
        finally:
            checker.close()
        assert all(p.proc.poll() is None for p in procs)
    finally:
        ensemble.cleanup()


def test_zookeeper_down_for_20_s_calls_go_on_and_a_new_provider_registers_after(
        zookeeper_private: Any, tmp_path: Any, providers: Any, client_factory: Any, figures: Any) -> None:
    zk = zookeeper_private
    address = zk_address(zk.hosts, session_timeout=4, connect_timeout=1, snapshot_dir=tmp_path)
    [providers(address, f"p{i}") for i in range(2)]
    client = client_factory(address, timeout=3.0)
    ledger = client.proxy("chaos.Ledger", retries=2, loadbalance="roundrobin")
    reference = client.reference("chaos.Ledger", retries=2, loadbalance="roundrobin")
    wait_until(lambda: len(reference.directory.urls) == 2, timeout=20, what="two providers")
    with Load(lambda w, n: ledger.balance(f"a{w}", n), threads=4, seconds=60, pause=0.01) as load:
        load.wait_calls(100)
        zk.stop()
        down = time.monotonic()
        late = providers(address, "late")  # starts and serves while ZooKeeper is down
        time.sleep(max(0.0, 20.0 - (time.monotonic() - down)))
        load.wait_calls(100)
        assert len(reference.directory.urls) == 2, "the known providers were kept through the outage"
        zk.start()
        wait_until(lambda: len(reference.directory.urls) == 3, timeout=30, what="the late provider registered")
        wait_until(lambda: "late" in {ledger.balance("x", 0)[0] for _ in range(12)}, what="calls reaching it")
        load.wait_calls(100)
        load.stop()
    figures(load, "4 ZooKeeper down for 20 s")
    assert load.failed == 0, load.examples
    assert late.proc.poll() is None
