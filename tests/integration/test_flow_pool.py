"""The pool cluster quota from the operator's side: the CLI sets it, a switch back to split ends it."""

from __future__ import annotations

from typing import Any

import govrpc
from govrpc.flowctl.filter import ProviderFlowFilter
from govrpc.flowctl.pool import QUOTA, LeaseState
from tests.helpers import wait_until
from tests.integration.services import Echo


def flow_filter(server: govrpc.Server) -> ProviderFlowFilter:
    return next(f for f in server.filters if isinstance(f, ProviderFlowFilter))


def test_the_cli_sets_the_pool_and_a_switch_to_split_ends_the_lease(file_registry: str, start_server: Any,
                                                                    capsys: Any) -> None:
    from govrpc.cli import main

    server = start_server(file_registry, Echo())
    assert main(["flow", "set", "test.Echo", "cluster.mode=pool", "--registry", file_registry]) == 0
    assert flow_filter(server).leases() == []  # a mode without a total limits nothing
    assert main(["flow", "set", "test.Echo", "cluster.tps=50", "cluster.period=0.1",
                 "--registry", file_registry]) == 0
    lease = wait_until(lambda: next(iter(flow_filter(server).leases()), None), what="a lease")
    wait_until(lambda: lease.state is LeaseState.LEASING, what="leasing")
    with govrpc.Admin(file_registry) as admin:
        assert list(admin.registry.rules("test.Echo", QUOTA)) == [f"127.0.0.1:{server.port}"]
    capsys.readouterr()
    assert main(["flow", "set", "test.Echo", "cluster.mode=tokens", "--registry", file_registry]) == 2
    assert main(["flow", "set", "test.Echo", "cluster.period=0", "--registry", file_registry]) == 2
    err = capsys.readouterr().err
    assert "cluster.mode must be one of split, pool" in err and "cluster.period" in err
    assert flow_filter(server).leases() == [lease]  # refused where written: nothing changed
    assert main(["flow", "set", "test.Echo", "cluster.mode=split", "--registry", file_registry]) == 0
    wait_until(lambda: flow_filter(server).leases() == [], what="the lease dropped")
    with govrpc.Admin(file_registry) as admin:
        wait_until(lambda: admin.registry.rules("test.Echo", QUOTA) == {}, what="the lease removed")
