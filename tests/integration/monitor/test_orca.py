"""ORCA load reports: the trailer govrpc providers send, and plain grpcio's weighted_round_robin reading it."""

from __future__ import annotations

import collections
import json

import grpc
import pytest

import govrpc
from govrpc.invocation import Invocation, ProviderContext
from govrpc.monitor.orca import ORCA_TRAILER, decode_load_report, encode_load_report
from govrpc.rpc.serialization import MsgpackSerializer
from govrpc.url import ServiceKey


@govrpc.service("mon.Loaded")
class Loaded:
    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name


def test_every_answer_carries_a_load_report(memory_registry, start_server) -> None:
    # grpc's client core takes the trailer for its balancers (the application never sees it), so the
    # report is read where the provider chain puts it; the next test shows a grpc client using it
    server = start_server(memory_registry, Loaded("x"), orca=True)
    chain = server.invokers[ServiceKey("mon.Loaded")]
    for _ in range(3):
        context = ProviderContext()
        assert chain.invoke(Invocation(ServiceKey("mon.Loaded"), "who", context=context)) == "x"
    reports = [decode_load_report(v) for k, v in context.trailing if k == ORCA_TRAILER]  # type: ignore[arg-type]
    assert len(reports) == 1
    assert 0.0 <= reports[0].get("cpu_utilization", 0.0) <= 1.0 and reports[0]["rps_fractional"] > 0
    plain = start_server(memory_registry, Loaded("y"))
    context = ProviderContext()
    plain.invokers[ServiceKey("mon.Loaded")].invoke(Invocation(ServiceKey("mon.Loaded"), "who", context=context))
    assert context.trailing == []


def test_grpcio_weighted_round_robin_weighs_govrpc_providers_by_their_reports(memory_registry,
                                                                             start_server) -> None:
    busy = start_server(memory_registry, Loaded("busy"), orca=lambda: {"application_utilization": 0.9})
    idle = start_server(memory_registry, Loaded("idle"), orca=lambda: {"application_utilization": 0.1})
    config = {"loadBalancingConfig": [{"weighted_round_robin": {
        "blackoutPeriod": "0s", "weightUpdatePeriod": "0.1s", "enableOobLoadReport": False}}]}
    serializer = MsgpackSerializer()
    target = f"ipv4:127.0.0.1:{busy.port},127.0.0.1:{idle.port}"
    with grpc.insecure_channel(target, options=[("grpc.service_config", json.dumps(config)),
                                                ("grpc.enable_retries", 0)]) as channel:
        call = channel.unary_unary("/mon.Loaded/who")
        request = serializer.dumps_call((), {})
        for _ in range(300):  # reports arrive, weights are computed
            call(request, timeout=5)
        seen = collections.Counter(serializer.loads(call(request, timeout=5)) for _ in range(600))
    assert seen["idle"] > 3 * seen["busy"] > 0  # qps / utilization: 9 to 1 in theory


def test_load_reports_round_trip_and_bad_ones_are_refused() -> None:
    data = encode_load_report({"cpu_utilization": 0.5, "rps_fractional": 12.0, "application_utilization": 0.25})
    assert decode_load_report(data) == {"cpu_utilization": 0.5, "rps_fractional": 12.0,
                                        "application_utilization": 0.25}
    for bad in ({"cpu": 0.5}, {"eps": -1}, {"cpu_utilization": float("nan")}):
        with pytest.raises(ValueError):
            encode_load_report(bad)
    for garbage in (b"\x09\x00", b"\xff", b"\x0b"):
        with pytest.raises(ValueError):
            decode_load_report(garbage)
    with pytest.raises(govrpc.ConfigurationError, match="orca"):
        govrpc.Server("memory://", orca="yes")  # type: ignore[arg-type]
