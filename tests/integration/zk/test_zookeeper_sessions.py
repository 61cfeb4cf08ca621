"""What ZooKeeper users actually hit: killed providers, expired sessions, restarts, leader loss, outages."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from kazoo.client import KazooClient, KazooState

import govrpc
from govrpc.exceptions import RegistryUnreachableError
from govrpc.registry.zookeeper import ZookeeperRegistry
from govrpc.url import URL
from tests.integration.services import Echo
from tests.helpers import wait_until
from tests.integration.zk.test_zookeeper_registry import Recorder, provider_url
from tests.zkharness import ZookeeperEnsemble, ZookeeperMissing, drop_connection, expire_session, zk_address

pytestmark = pytest.mark.zookeeper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def open_registry(address: str) -> ZookeeperRegistry:
    """A registry instance of its own (as another process would have), closed by the caller."""
    return ZookeeperRegistry(ZookeeperRegistry.parse_address(address))


def session_of(registry: ZookeeperRegistry) -> int | None:
    client_id = registry.client.client_id  # None while reconnecting
    return client_id[0] if client_id else None


def owner_of(kazoo: KazooClient, path: str) -> int | None:
    stat = kazoo.exists(path)
    return stat.ephemeralOwner if stat else None


@pytest.fixture
def kazoo_factory() -> Any:
    clients: list[KazooClient] = []

    def make(hosts: str) -> KazooClient:
        client = KazooClient(hosts, timeout=5)
        client.start(timeout=15)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()
        client.close()


class CallLoop:
    """Calls ``proxy.whoami`` from one thread until stopped (bounded by count and time)."""

    def __init__(self, proxy: Any, max_calls: int = 100_000, max_seconds: float = 60) -> None:
        self.proxy = proxy
        self.ok = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(max_calls, max_seconds), daemon=True)

    def _run(self, max_calls: int, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        while not self._stop.is_set() and self.ok + len(self.failures) < max_calls and time.monotonic() < deadline:
            try:
                self.proxy.whoami()
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on
                self.failures.append(exc)
            time.sleep(0.002)

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_provider_killed_with_sigkill_disappears_within_the_session_timeout(
        zk_url: Any, start_server: Any, client_factory: Any) -> None:
    address = zk_url(session_timeout=2)
    local = start_server(address, Echo("local"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-m", "tests.integration.zk.provider_main", address, "remote"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("READY"), line
        client = client_factory(address)
        proxy = client.proxy("test.Echo", timeout=3.0)
        wait_until(lambda: {proxy.whoami() for _ in range(20)} == {"local", "remote"}, what="both providers")
        directory = client.reference("test.Echo").directory
        assert len(directory.urls) == 2

        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        # the session timeout (2 s) plus one tick and the noise of a shared machine
        wait_until(lambda: len(directory.urls) == 1, timeout=2 + 8, what="the killed provider to disappear")
        gone_after = time.monotonic() - killed
        assert directory.urls == tuple(local.urls)
        assert gone_after >= 1.0  # it was the session expiry, not something else, that removed it
        assert {proxy.whoami() for _ in range(10)} == {"local"}
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_session_expiry_registers_again_and_resubscribes(zookeeper: Any, zk_url: Any, kazoo_factory: Any) -> None:
    address = zk_url(session_timeout=2)
    kazoo = kazoo_factory(zookeeper.hosts)
    provider = open_registry(address)
    consumer = open_registry(address)
    try:
        url = provider_url(9300)
        provider.register(url)
        node = f"{provider.root}/test.Echo/providers/{url.encoded()}"
        first_session = session_of(provider)
        assert owner_of(kazoo, node) == first_session
        seen = Recorder()
        consumer.subscribe("test.Echo", seen)
        assert seen.last == [str(url)]

        expire_session(provider.client, zookeeper.hosts)
        wait_until(lambda: session_of(provider) not in (None, first_session)
                   and owner_of(kazoo, node) == session_of(provider), what="re-registration")
        wait_until(lambda: seen.last == [str(url)], what="consumer sees the provider again")

        # the consumer's own session expires: its watches are re-armed on the new session
        old = session_of(consumer)
        expire_session(consumer.client, zookeeper.hosts)
        wait_until(lambda: session_of(consumer) not in (None, old)
                   and not consumer.subscription_status("test.Echo").stale, what="consumer's new session")
        second = provider_url(9301)
        provider.register(second)
        wait_until(lambda: seen.last == sorted([str(url), str(second)]), what="change seen on the new session")
    finally:
        consumer.close()
        provider.close()
    assert kazoo.get_children(f"{provider.root}/test.Echo/providers") == []  # close removed them


def test_dropped_connection_keeps_the_session_and_the_last_providers(
        zookeeper: Any, zk_url: Any, kazoo_factory: Any) -> None:
    address = zk_url(session_timeout=4)
    kazoo = kazoo_factory(zookeeper.hosts)
    provider = open_registry(address)
    consumer = open_registry(address)
    try:
        url = provider_url(9400)
        provider.register(url)
        seen = Recorder()
        consumer.subscribe("test.Echo", seen)
        session = session_of(consumer)
        states: list[Any] = []
        consumer.client.add_listener(states.append)
        drop_connection(consumer.client)
        drop_connection(provider.client)
        wait_until(lambda: KazooState.SUSPENDED in states, what="the consumer's connection to be suspended")
        assert consumer.subscription_status("test.Echo").providers == (url,)  # kept while suspended
        wait_until(lambda: consumer.client.connected and provider.client.connected, what="reconnection")
        assert session_of(consumer) == session
        # watches were set again after the reconnect: a new provider is seen
        second = provider_url(9401)
        provider.register(second)
        wait_until(lambda: seen.last == sorted([str(url), str(second)]), what="change after reconnect")
        assert [] not in seen.calls
        assert owner_of(kazoo, f"{provider.root}/test.Echo/providers/{url.encoded()}") == \
            session_of(provider)
    finally:
        consumer.close()
        provider.close()


def test_whole_zookeeper_restart_providers_come_back_and_no_call_fails(
        zookeeper_private: Any, tmp_path: Any, kazoo_factory: Any) -> None:
    zk = zookeeper_private
    address = zk_address(zk.hosts, session_timeout=4, empty_protection=10, snapshot_dir=tmp_path)
    provider_registry = open_registry(address)
    consumer_registry = open_registry(address)
    server = govrpc.Server(provider_registry).add(Echo("p1")).start()
    client = govrpc.Client(consumer_registry)
    try:
        proxy = client.proxy("test.Echo", timeout=3.0)
        assert proxy.whoami() == "p1"
        node = f"{provider_registry.root}/test.Echo/providers/{server.urls[0].encoded()}"
        with CallLoop(proxy) as calls:
            # the whole server goes away (a crash) and comes back with its data: sessions and entries survive
            zk.kill()
            wait_until(lambda: not consumer_registry.client.connected, what="the consumer to notice")
            assert consumer_registry.subscription_status("test.Echo").providers == tuple(server.urls)
            time.sleep(1.0)  # a real outage lasts a while; calls go on meanwhile
            zk.start()
            wait_until(lambda: provider_registry.client.connected and consumer_registry.client.connected,
                       what="reconnect after restart")
            kazoo = kazoo_factory(zk.hosts)
            wait_until(lambda: owner_of(kazoo, node) == session_of(provider_registry),
                       what="the provider entry after the restart")

            # an entry removed behind the provider's back is re-created after its next reconnect; first
            # let the provider's repair passes after the restart end (one still running would re-create
            # the entry at once, before the consumer could see it gone)
            wait_until(lambda: provider_registry._repair.idle, what="the provider's repair to settle")
            kazoo.delete(node)
            wait_until(lambda: consumer_registry.subscription_status("test.Echo").stale, timeout=20,
                       what="held-back push")
            drop_connection(provider_registry.client)
            wait_until(lambda: owner_of(kazoo, node) == session_of(provider_registry),
                       what="the provider's own check after reconnecting")
            wait_until(lambda: not consumer_registry.subscription_status("test.Echo").stale, what="fresh list")

            # the server comes back empty (rebuilt, data lost): every process registers again
            kazoo.stop()
            old_session = session_of(provider_registry)
            zk.kill()
            shutil.rmtree(os.path.join(zk.dir, "data", "version-2"), ignore_errors=True)
            zk.start()
            kazoo = kazoo_factory(zk.hosts)
            wait_until(lambda: owner_of(kazoo, node) not in (None, old_session)
                       and owner_of(kazoo, node) == session_of(provider_registry),
                       timeout=4 * 3 + 15, what="the provider registered again on the rebuilt server")
            wait_until(lambda: consumer_registry.subscription_status("test.Echo").providers == tuple(server.urls)
                       and not consumer_registry.subscription_status("test.Echo").stale,
                       timeout=15, what="the consumer watching the rebuilt server")
            ok_before = calls.ok
            wait_until(lambda: calls.ok > ok_before + 20, what="more calls")
        assert calls.failures == []
        assert consumer_registry.subscription_status("test.Echo").providers == tuple(server.urls)
        assert consumer_registry.subscription_status("test.Echo").source == "zookeeper"
        assert [c.params["application"] for c in consumer_registry.lookup("test.Echo", "consumers")] == \
            ["govrpc-consumer"]
    finally:
        client.close()
        server.stop(grace=0.5)
        consumer_registry.close()
        provider_registry.close()


def test_ensemble_leader_killed_while_a_consumer_calls(tmp_path: Any, kazoo_factory: Any) -> None:
    try:
        ensemble = ZookeeperEnsemble(3)
    except ZookeeperMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"ZooKeeper is required under CI=true: {exc}")
        pytest.skip(str(exc))
    try:
        ensemble.start()
        address = zk_address(ensemble.hosts, session_timeout=6, empty_protection=10, snapshot_dir=tmp_path)
        provider_registry = open_registry(address)
        consumer_registry = open_registry(address)
        servers = [govrpc.Server(provider_registry).add(Echo(f"p{i}")).start() for i in (1, 2)]
        client = govrpc.Client(consumer_registry)
        try:
            proxy = client.proxy("test.Echo", timeout=3.0)
            wait_until(lambda: {proxy.whoami() for _ in range(20)} == {"p1", "p2"}, what="both providers")
            sessions = (session_of(provider_registry), session_of(consumer_registry))
            with CallLoop(proxy) as calls:
                leader = ensemble.leader()
                leader.kill()
                survivors = [s for s in ensemble.servers if s is not leader]
                wait_until(lambda: any(s.mode == "leader" for s in survivors), timeout=30, what="a new leader")
                wait_until(lambda: provider_registry.client.connected and consumer_registry.client.connected,
                           timeout=30, what="clients reconnected")
                ok_before = calls.ok
                wait_until(lambda: calls.ok > ok_before + 50, what="calls after the election")
            assert calls.failures == []
            assert calls.ok > 50
            kazoo = kazoo_factory(",".join(s.hosts for s in survivors))
            names = kazoo.get_children(f"{provider_registry.root}/test.Echo/providers")
            assert sorted(names) == sorted(s.urls[0].encoded() for s in servers)
            # the sessions survived the election: nothing had to be registered again
            assert (session_of(provider_registry), session_of(consumer_registry)) == sessions
            assert consumer_registry.subscription_status("test.Echo").providers == \
                tuple(sorted((s.urls[0] for s in servers), key=URL.encoded))
        finally:
            client.close()
            for server in servers:
                server.stop(grace=0.5)
            consumer_registry.close()
            provider_registry.close()
    finally:
        ensemble.cleanup()


def test_consumer_started_while_zookeeper_is_down_uses_its_snapshot(
        zookeeper_private: Any, tmp_path: Any, caplog: Any) -> None:
    zk = zookeeper_private
    snapshots = tmp_path / "snapshots"
    address = zk_address(zk.hosts, session_timeout=4, connect_timeout=1, snapshot_dir=snapshots)
    provider_registry = open_registry(address)
    server = govrpc.Server(provider_registry).add(Echo("p1")).start()
    try:
        first = govrpc.Client(address)
        assert first.proxy("test.Echo", timeout=3.0).whoami() == "p1"
        first.close()  # its snapshot stays on disk
        zk.stop()

        caplog.set_level(logging.WARNING, logger="govrpc.registry.zookeeper")
        with govrpc.Client(address) as client:
            assert client.proxy("test.Echo", timeout=3.0).whoami() == "p1"
            status = client.registry.subscription_status("test.Echo")  # type: ignore[attr-defined]
            assert status.source == "snapshot" and status.stale
            messages = " ".join(r.getMessage() for r in caplog.records)
            assert "starting from the provider snapshots" in messages
            assert "using the provider snapshot of test.Echo saved" in messages

            zk.start()
            wait_until(lambda: client.registry.subscription_status("test.Echo").source == "zookeeper",  # type: ignore
                       timeout=30, what="back on ZooKeeper")
            assert client.registry.subscription_status("test.Echo").providers == tuple(server.urls)  # type: ignore
            assert client.proxy("test.Echo", timeout=3.0).whoami() == "p1"
        zk.stop()
        # no snapshot: a clear error after the bounded wait
        with pytest.raises(RegistryUnreachableError, match="no provider snapshot"):
            govrpc.Client(address.replace(str(snapshots), str(tmp_path / "empty")))
    finally:
        server.stop(grace=0.5)
        provider_registry.close()


def test_a_push_removing_every_provider_is_held_back_then_applied(
        zookeeper: Any, zk_url: Any, kazoo_factory: Any) -> None:
    kazoo = kazoo_factory(zookeeper.hosts)
    consumer = open_registry(zk_url(empty_protection=1.5))
    try:
        base = f"{consumer.root}/test.Echo/providers"
        urls = [provider_url(9500 + i) for i in range(2)]
        for url in urls:
            kazoo.create(f"{base}/{url.encoded()}", b"", makepath=True)
        seen = Recorder()
        consumer.subscribe("test.Echo", seen)
        wait_until(lambda: seen.last == sorted(map(str, urls)), what="two providers")

        # an accident removes both at once: the consumer keeps them, marked stale ...
        tx = kazoo.transaction()
        for url in urls:
            tx.delete(f"{base}/{url.encoded()}")
        tx.commit()
        wait_until(lambda: consumer.subscription_status("test.Echo").stale, what="the held-back push")
        assert seen.last == sorted(map(str, urls))
        assert consumer.subscription_status("test.Echo").held_since is not None
        # ... and providers that come back in time replace them without an empty list in between
        kazoo.create(f"{base}/{urls[0].encoded()}", b"")
        wait_until(lambda: seen.last == [str(urls[0])], what="the provider that came back")
        assert [] not in seen.calls and not consumer.subscription_status("test.Echo").stale

        # a real shutdown of every provider is honoured after the hold time
        kazoo.delete(f"{base}/{urls[0].encoded()}")
        wait_until(lambda: consumer.subscription_status("test.Echo").stale, what="held again")
        wait_until(lambda: seen.last == [], timeout=1.5 + 10, what="the empty list after the hold")
        assert not consumer.subscription_status("test.Echo").stale
    finally:
        consumer.close()


def test_register_during_an_outage_is_kept_and_done_once_zookeeper_is_back(
        zookeeper_private: Any, tmp_path: Any, kazoo_factory: Any, caplog: Any) -> None:
    zk = zookeeper_private
    registry = open_registry(zk_address(zk.hosts, session_timeout=4, snapshot_dir=tmp_path))
    try:
        seen = Recorder()
        registry.subscribe("test.Echo", seen)
        zk.stop()
        wait_until(lambda: not registry.client.connected, what="disconnection")
        caplog.set_level(logging.WARNING, logger="govrpc.registry.zookeeper")
        url, other = provider_url(9600), URL("consumer", "127.0.0.1", 0, "test.Echo", {"application": "web"})
        registry.register(url)  # returns at once; retried in the background
        registry.register(other)
        assert "retrying in the background" in caplog.text
        zk.start()
        kazoo = kazoo_factory(zk.hosts)
        wait_until(lambda: owner_of(kazoo, f"{registry.root}/test.Echo/providers/{url.encoded()}")
                   == session_of(registry), timeout=30, what="the registration after the outage")

        def consumer_listed() -> bool:
            try:
                return registry.lookup("test.Echo", "consumers") == [other]
            except RegistryUnreachableError:  # a restarted server's first seconds: the session may drop again
                return False

        wait_until(consumer_listed, timeout=30, what="the consumer entry")
        wait_until(lambda: seen.last == [str(url)], what="the subscriber to see it")
    finally:
        registry.close()


def test_a_provider_started_during_an_outage_serves_and_registers_once_zookeeper_is_back(
        zookeeper_private: Any, tmp_path: Any, kazoo_factory: Any) -> None:
    zk = zookeeper_private
    zk.stop()
    # no snapshot anywhere: a consumer would be refused, a provider must still start
    address = zk_address(zk.hosts, session_timeout=4, connect_timeout=1, snapshot_dir=tmp_path / "none")
    server = govrpc.Server(address).add(Echo("p1")).start()
    try:
        assert server.port > 0
        with pytest.raises(RegistryUnreachableError, match="no provider snapshot"):
            govrpc.Client(address)
        zk.start()
        kazoo = kazoo_factory(zk.hosts)
        root = server.registry.root  # type: ignore[union-attr]
        node = f"{root}/test.Echo/providers/{server.urls[0].encoded()}"
        wait_until(lambda: kazoo.exists(node) is not None, timeout=30, what="the provider's node")
        with govrpc.Client(address) as client:
            assert client.proxy("test.Echo", timeout=3.0).whoami() == "p1"
    finally:
        server.stop(grace=0.5)
