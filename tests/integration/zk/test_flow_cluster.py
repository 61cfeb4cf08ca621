"""Cluster quota on ZooKeeper: instances share ``cluster.tps`` and re-split when one dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

import govrpc
from govrpc.exceptions import RateLimitedError
from govrpc.flowctl.filter import FlowGate
from tests.helpers import wait_until
from tests.integration.services import Echo
from tests.integration.zk.test_zookeeper_sessions import ROOT

pytestmark = pytest.mark.zookeeper


def share_of(server: govrpc.Server) -> float | None:
    """The cluster share a server's flow filter enforces on test.Echo (None: no quota bound)."""
    link: Any = server.invokers[next(iter(server.invokers))]
    while hasattr(link, "filter"):
        gate = getattr(link.filter, "service", None)
        if isinstance(gate, FlowGate) and gate.share is not None:
            return gate.share.rate
        link = link.next
    return None


def test_three_instances_share_a_total_and_re_split_when_one_is_killed(zk_url: Any, start_server: Any,
                                                                      client_factory: Any) -> None:
    address = zk_url(session_timeout=2)
    with govrpc.Admin(address) as admin:
        admin.set_flow("test.Echo", {"cluster.tps": 60})
    one, two = start_server(address, Echo("one")), start_server(address, Echo("two"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-m", "tests.integration.zk.provider_main", address, "three"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("READY"), line
        for server in (one, two):
            wait_until(lambda s=server: share_of(s) == pytest.approx(20.0), what="a third of 60 each")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        for server in (one, two):  # the session expiry (2 s) removes it; each then takes half
            wait_until(lambda s=server: share_of(s) == pytest.approx(30.0), timeout=15, what="half of 60 each")
        # what the share refuses says so: limited by the cluster quota
        proxy = client_factory(address).proxy("test.Echo", cluster="failfast", timeout=3.0,
                                              url=f"grpc://127.0.0.1:{one.port}")
        outcomes = []
        for _ in range(60):
            try:
                proxy.echo(1)
                outcomes.append("ok")
            except RateLimitedError as exc:
                outcomes.append(exc.reason)
        assert "cluster" in outcomes and outcomes.count("ok") >= 25
        with govrpc.Admin(address) as admin:
            admin.set_flow("test.Echo", {"cluster.tps": 600})  # an operator's change reaches them too
        wait_until(lambda: share_of(one) == pytest.approx(300.0), what="the new total split")
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


@pytest.mark.parametrize("kind", ["zookeeper", "file"])
def test_weights_decide_the_shares_and_a_leaving_instance_gives_its_share_back(
        kind: str, request: Any, file_registry: str, start_server: Any) -> None:
    address = request.getfixturevalue("zk_url")() if kind == "zookeeper" else file_registry
    heavy = govrpc.Server(address, weight=300)
    heavy.add(Echo("heavy"), **{"cluster.tps": 100})
    heavy.start()
    try:
        light = start_server(address, Echo("light"), weight=100)
        with govrpc.Admin(address) as admin:
            admin.set_flow("test.Echo", {"cluster.tps": 100})
        wait_until(lambda: share_of(heavy) == pytest.approx(75.0), what="three quarters for weight 300")
        wait_until(lambda: share_of(light) == pytest.approx(25.0), what="a quarter for weight 100")
        light.stop(grace=0.1)  # deregistered: the one left takes it all
        wait_until(lambda: share_of(heavy) == pytest.approx(100.0), what="the whole total")
    finally:
        heavy.stop(grace=0.5)
