"""Prometheus metrics of real calls, scraped over HTTP from both sides."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import govrpc
from tests.integration.services import Echo, OutOfStock


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_match_the_calls_made(memory_registry, start_server, client_factory) -> None:
    server = start_server(memory_registry, Echo(), metrics_registry=CollectorRegistry(), metrics_port=0)
    client = client_factory(memory_registry, metrics_registry=CollectorRegistry(), metrics_port=0)
    echo = client.proxy("test.Echo")
    for i in range(7):
        assert echo.echo(i) == i
    for _ in range(2):
        with pytest.raises(OutOfStock):
            echo.buy("tea")
    method, target = "test.Echo/echo", "govrpc:///test.Echo"
    assert client.metrics_port and server.metrics_port and client.metrics_port != server.metrics_port
    consumer = scrape(client.metrics_port)
    assert value(consumer, "grpc_client_call_duration_seconds_count", grpc_method=method, grpc_target=target,
                 grpc_status="OK") == 7
    assert value(consumer, "grpc_client_call_duration_seconds_count", grpc_method="test.Echo/buy",
                 grpc_target=target, grpc_status="UNKNOWN") == 2
    assert value(consumer, "grpc_client_attempt_started_total", grpc_method=method, grpc_target=target) == 7
    assert value(consumer, "grpc_client_attempt_duration_seconds_count", grpc_method=method, grpc_target=target,
                 grpc_status="OK") == 7
    assert value(consumer, "govrpc_calls_total", side="consumer", service="test.Echo", method="buy",
                 status="UNKNOWN") == 2
    assert value(consumer, "govrpc_inflight_calls", side="consumer", service="test.Echo", method="echo") == 0
    assert value(consumer, "govrpc_retries_total", service="test.Echo", method="echo") == 0
    assert value(consumer, "govrpc_directory_providers", service="test.Echo") == 1
    assert value(consumer, "govrpc_registry_connected", registry=str(client.registry.url)) == 1
    # the latency histogram's buckets are those of gRFC A66 and hold every call
    assert value(consumer, "grpc_client_call_duration_seconds_bucket", grpc_method=method, grpc_target=target,
                 grpc_status="OK", le="+Inf") == 7
    provider = scrape(server.metrics_port)
    assert value(provider, "grpc_server_call_started_total", grpc_method=method) == 7
    assert value(provider, "grpc_server_call_duration_seconds_count", grpc_method=method, grpc_status="OK") == 7
    assert value(provider, "grpc_server_call_duration_seconds_count", grpc_method="test.Echo/buy",
                 grpc_status="UNKNOWN") == 2
    assert value(provider, "govrpc_calls_total", side="provider", service="test.Echo", method="echo",
                 status="OK") == 7
    # no label names a provider address: cardinality is services x methods x codes
    assert not any(dict(labels).get(k) for _, labels in consumer for k in ("address", "peer", "provider"))


def test_retries_and_failovers_are_counted(memory_registry, start_server, client_factory) -> None:
    live = start_server(memory_registry, Echo())
    with socket.socket() as s:  # a port nobody listens on: connection refused, a retryable failure
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    reg = CollectorRegistry()
    client = client_factory(memory_registry, metrics_registry=reg)
    echo = client.proxy("test.Echo", url=[f"grpc://127.0.0.1:{dead}", f"grpc://127.0.0.1:{live.port}"],
                        loadbalance="roundrobin", retries=2)
    for i in range(6):
        assert echo.echo(i) == i
    labels = {"service": "test.Echo", "method": "echo"}
    retries = reg.get_sample_value("govrpc_retries_total", labels)
    failovers = reg.get_sample_value("govrpc_failovers_total", labels)
    refused = reg.get_sample_value("grpc_client_attempt_duration_seconds_count",
                                   {"grpc_method": "test.Echo/echo", "grpc_target": "govrpc:///test.Echo",
                                    "grpc_status": "UNAVAILABLE"})
    started = reg.get_sample_value("grpc_client_attempt_started_total",
                                   {"grpc_method": "test.Echo/echo", "grpc_target": "govrpc:///test.Echo"})
    assert retries is not None and retries >= 1
    assert retries == refused == started - 6  # every extra attempt followed a refused one
    assert failovers is not None and 1 <= failovers <= 6


def test_a_configurator_switches_metrics_on_for_a_running_consumer(memory_registry, start_server,
                                                                   client_factory) -> None:
    start_server(memory_registry, Echo())
    client = client_factory(memory_registry)
    echo = client.proxy("test.Echo")
    echo.echo(1)
    from prometheus_client import REGISTRY

    labels = {"grpc_method": "test.Echo/whoami", "grpc_target": "govrpc:///test.Echo", "grpc_status": "OK"}
    before = REGISTRY.get_sample_value("grpc_client_call_duration_seconds_count", labels) or 0.0
    echo.whoami()
    assert (REGISTRY.get_sample_value("grpc_client_call_duration_seconds_count", labels) or 0.0) == before
    with govrpc.Admin(memory_registry) as admin:
        admin.set_override("test.Echo", "metrics", "metrics = true")
    from tests.helpers import wait_until

    def counted() -> bool:
        echo.whoami()
        return (REGISTRY.get_sample_value("grpc_client_call_duration_seconds_count", labels) or 0.0) > before

    wait_until(counted, what="metrics switched on by the configurator")


def test_bad_metrics_settings_are_refused() -> None:
    for bad in (-1, 70000, "9100", True):
        with pytest.raises(govrpc.ConfigurationError, match="metrics_port"):
            govrpc.Client("memory://", metrics_port=bad)
        with pytest.raises(govrpc.ConfigurationError, match="metrics_port"):
            govrpc.Server("memory://", metrics_port=bad)
    with pytest.raises(govrpc.ConfigurationError, match="CollectorRegistry"):
        govrpc.Client("memory://", metrics_registry=object())
    with pytest.raises(govrpc.ConfigurationError, match="metrics"):
        govrpc.Server("memory://", metrics="yes")  # type: ignore[arg-type]
    with govrpc.Admin("memory://") as admin, pytest.raises(govrpc.RuleError, match="metrics"):
        admin.set_override("test.Echo", "m", "metrics = maybe")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(govrpc.ConfigurationError, match="cannot serve metrics"):
            govrpc.Client("memory://", metrics_registry=CollectorRegistry(), metrics_port=taken.getsockname()[1])


def test_limiter_refusals_are_counted(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo())
    reg = CollectorRegistry()
    client = client_factory(memory_registry, metrics_registry=reg)
    echo = client.proxy("test.Echo", tps=1)
    refused = 0
    for i in range(5):
        try:
            echo.echo(i)
        except govrpc.RateLimitedError:
            refused += 1
    assert refused >= 1
    assert reg.get_sample_value("govrpc_refusals_total", {"side": "consumer", "service": "test.Echo",
                                                          "method": "echo", "reason": "RateLimitedError"}) == refused
    assert reg.get_sample_value("govrpc_calls_total", {"side": "consumer", "service": "test.Echo", "method": "echo",
                                                       "status": "RESOURCE_EXHAUSTED"}) == refused
