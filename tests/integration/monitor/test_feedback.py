"""Feedback into routing: ORCA load reports read by govrpc consumers, unhealthy providers
deprioritised by every balancer, and consumers' own summaries in the registry."""

from __future__ import annotations

import collections

import pytest

import govrpc
from govrpc.cluster.stats import ProviderState
from govrpc.monitor.orca import LOAD_TRAILER, OrcaReaderFilter, encode_load_report
from govrpc.url import URL
from tests.helpers import wait_until


@govrpc.service("fb.Work", idempotent=True)
class Work:
    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name


def test_govrpc_consumers_weigh_providers_by_their_orca_reports(memory_registry, start_server,
                                                                client_factory) -> None:
    start_server(memory_registry, Work("busy"), orca=lambda: {"cpu_utilization": 0.9})
    start_server(memory_registry, Work("light"), orca=lambda: {"cpu_utilization": 0.1})
    client = client_factory(memory_registry, timeout=5.0)
    options = {"loadbalance": "healthweighted", "healthweighted.refresh": 0.05, "healthweighted.orca": True}
    work = client.proxy("fb.Work", **options)
    reference = client.reference("fb.Work", **options)
    for _ in range(50):
        work.who()
    loads = sorted(round(e.state.load.utilization, 2) for e in reference.directory.invokers)
    assert loads == [0.1, 0.9]
    seen = collections.Counter(work.who() for _ in range(600))
    assert seen["light"] > 4 * seen["busy"] > 0  # (0.1 + 0.02) / (0.9 + 0.02): about 8 to 1, never zero
    plain = client.proxy("fb.Work", loadbalance="healthweighted", **{"healthweighted.refresh": 0.05})
    seen = collections.Counter(plain.who() for _ in range(400))
    assert seen["busy"] > 100 and seen["light"] > 100  # without healthweighted.orca loads count for nothing


def test_a_reference_without_orca_reads_no_trailer(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Work("a"), orca=True)
    client = client_factory(memory_registry)
    reference = client.reference("fb.Work", loadbalance="healthweighted")
    client.proxy("fb.Work", loadbalance="healthweighted").who()
    (endpoint,) = reference.directory.invokers
    assert endpoint.chain is endpoint.transport  # no reader bound, no link
    assert "invoke" not in vars(endpoint.transport)  # the plain call: trailers never read
    assert endpoint.state.load is None
    with pytest.raises(govrpc.ConfigurationError, match="healthweighted.orca"):
        client.proxy("fb.Work", loadbalance="healthweighted", **{"healthweighted.orca": "maybe"})


def test_malformed_load_reports_are_ignored() -> None:
    reader = OrcaReaderFilter().bind(URL.parse("grpc://127.0.0.1:1/fb.Work?healthweighted.orca=true"))
    assert reader is not None
    state = ProviderState()
    reader.attach_state(state)  # type: ignore[attr-defined]
    for garbage in (b"\xff", b"\x09\x00\x00", b""):
        reader.on_trailers(((LOAD_TRAILER, garbage),))  # type: ignore[attr-defined]
    assert state.load is None or state.load.utilization == 0.0
    reader.on_trailers((("other", "x"),))  # type: ignore[attr-defined]
    reader.on_trailers(((LOAD_TRAILER, encode_load_report({"cpu_utilization": 0.4})),))  # type: ignore[attr-defined]
    assert state.load.utilization == 0.4
    reader.on_trailers(((LOAD_TRAILER, encode_load_report(  # type: ignore[attr-defined]
        {"application_utilization": 0.2, "cpu_utilization": 0.9, "rps_fractional": 10, "eps": 5})),))
    assert state.load.utilization == pytest.approx(0.7)  # the application's figure, plus the failed share
    assert OrcaReaderFilter().bind(URL.parse("grpc://127.0.0.1:1/fb.Work")) is None
