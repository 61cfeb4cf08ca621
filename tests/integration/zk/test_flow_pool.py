"""The pool cluster quota: instances lease shares of ``cluster.tps`` by demand from the registry."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import govrpc
from govrpc.exceptions import RateLimitedError
from govrpc.flowctl.filter import ProviderFlowFilter
from govrpc.flowctl.pool import QUOTA, LeaseState, PoolLease
from tests.helpers import wait_until
from tests.integration.services import Echo
from tests.integration.zk.test_flow_cluster import share_of
from tests.zkharness import expire_session, zk_address

pytestmark = pytest.mark.zookeeper

TOTAL = 60.0
POOL = {"cluster.tps": TOTAL, "cluster.mode": "pool", "cluster.period": 0.2}


def lease_of(server: govrpc.Server) -> PoolLease | None:
    flow = next(f for f in server.filters if isinstance(f, ProviderFlowFilter))
    leases = flow.leases()
    return leases[0] if leases else None


class Load:
    """Calls one provider in a loop on its own thread (bounded in count and time), counting admissions."""

    def __init__(self, client: govrpc.Client, server: govrpc.Server, seconds: float = 60.0) -> None:
        self.proxy = client.proxy("test.Echo", cluster="failfast", timeout=3.0,
                                  url=f"grpc://127.0.0.1:{server.port}")
        self.admitted = self.refused = 0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(200_000):
            if self._stop.is_set() or time.monotonic() > self._deadline:
                return
            try:
                self.proxy.echo(1)
                self.admitted += 1
            except RateLimitedError:
                self.refused += 1
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("kind", ["zookeeper", "file"])
def test_shares_follow_demand_and_the_sum_stays_within_the_total(
        kind: str, request: Any, file_registry: str, start_server: Any, client_factory: Any) -> None:
    address = request.getfixturevalue("zk_url")() if kind == "zookeeper" else file_registry
    servers = [start_server(address, Echo(name)) for name in ("one", "two", "three")]
    with govrpc.Admin(address) as admin:  # operators switch it on like any flow key
        admin.set_flow("test.Echo", POOL)
    for server in servers:
        wait_until(lambda s=server: lease_of(s) is not None and lease_of(s).state is LeaseState.LEASING,
                   what="every instance leasing")
    client = client_factory(address)
    loads = [Load(client, servers[0])]
    try:  # one busy, two idle: the busy one gets most of the pool
        wait_until(lambda: share_of(servers[0]) >= 0.8 * TOTAL
                   and all(share_of(s) <= 0.1 * TOTAL for s in servers[1:]),  # type: ignore[operator]
                   timeout=15, what="the busy instance holding most of the pool")
        loads += [Load(client, s) for s in servers[1:]]  # all busy: about equal
        wait_until(lambda: all(abs(share_of(s) - TOTAL / 3) <= 0.1 * TOTAL for s in servers),  # type: ignore[operator]
                   timeout=15, what="about equal shares")
        before, started = sum(load.admitted for load in loads), time.monotonic()
        time.sleep(3.0)
        admitted, elapsed = sum(load.admitted for load in loads) - before, time.monotonic() - started
        assert admitted <= TOTAL * elapsed * 1.1, (admitted, elapsed)
        assert admitted >= TOTAL * elapsed * 0.3, (admitted, elapsed)  # and the pool is really handed out
        with govrpc.Admin(address) as admin:
            leases = admin.registry.rules("test.Echo", QUOTA)
        assert sorted(leases) == sorted(f"127.0.0.1:{s.port}" for s in servers)
    finally:
        for load in loads:
            load.stop()
    servers[2].stop(grace=0.1)  # a stopped instance takes its lease with it
    with govrpc.Admin(address) as admin:
        assert f"127.0.0.1:{servers[2].port}" not in admin.registry.rules("test.Echo", QUOTA)


def test_pool_leases_survive_a_lost_zookeeper_session(zookeeper_private: Any, start_server: Any,
                                                      client_factory: Any) -> None:
    address = zk_address(zookeeper_private.hosts, session_timeout=2)
    servers = []
    for name in ("one", "two", "three"):
        server = govrpc.Server(address)
        server.add(Echo(name), **POOL)
        servers.append(server.start())
    try:
        load = Load(client_factory(address), servers[0])
        try:
            wait_until(lambda: share_of(servers[0]) >= 0.8 * TOTAL, timeout=15,  # type: ignore[operator]
                       what="the busy instance leasing most of the pool")
            for server in servers:  # each has seen all three instances: its static share is a third
                wait_until(lambda s=server: lease_of(s).static == pytest.approx(TOTAL / 3),  # type: ignore[union-attr]
                           timeout=15, what="every instance's peers watch seeing three")
            registry: Any = servers[0].registry
            session = registry.client.client_id[0]
            zookeeper_private.stop()  # unreachable: each falls back to its static share, a third
            for server in servers:
                wait_until(lambda s=server: lease_of(s).state is LeaseState.FALLBACK  # type: ignore[union-attr]
                           and share_of(s) == pytest.approx(TOTAL / 3), timeout=30, what="the static share")
            zookeeper_private.start()
            wait_until(lambda: registry.client.connected, timeout=20, what="reconnection")
            expire_session(registry.client, zookeeper_private.hosts)  # and the session is lost
            wait_until(lambda: registry.client.client_id is not None and registry.client.client_id[0] != session,
                       timeout=20, what="a new session")
            renewals = lease_of(servers[0]).renewals  # type: ignore[union-attr]
            wait_until(lambda: lease_of(servers[0]).renewals > renewals + 2  # type: ignore[union-attr]
                       and lease_of(servers[0]).state is LeaseState.LEASING  # type: ignore[union-attr]
                       and share_of(servers[0]) >= 0.8 * TOTAL,  # type: ignore[operator]
                       timeout=15, what="leasing again on the new session")
        finally:
            load.stop()
    finally:
        for server in servers:
            server.stop(grace=0.1)
