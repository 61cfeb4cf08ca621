"""The entry-point loader, including a third party's load balancer found by name."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

import govrpc
from govrpc.cluster.loadbalance import LoadBalancer, RandomLoadBalancer
from govrpc.extension import GROUPS, extension_names, get_extension, loader, reset_cache


def test_builtins_are_registered_through_entry_points() -> None:
    assert {"memory", "file"} <= set(extension_names("govrpc.registry"))
    assert "failover" in extension_names("govrpc.cluster")
    assert "random" in extension_names("govrpc.loadbalance")
    assert {"msgpack", "json"} <= set(extension_names("govrpc.serializer"))
    assert "pickle" not in extension_names("govrpc.serializer")
    assert get_extension("govrpc.loadbalance", "random") is RandomLoadBalancer


def test_unknown_name_lists_what_is_installed() -> None:
    with pytest.raises(govrpc.ExtensionNotFoundError) as info:
        get_extension("govrpc.loadbalance", "fastest")
    message = str(info.value)
    assert "fastest" in message and "govrpc.loadbalance" in message and "random" in message


def test_unknown_group_is_refused() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="govrpc.nothing"):
        loader("govrpc.nothing")
    assert "govrpc.limiter" in GROUPS


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[str]:
    """Install a tiny distribution that declares a load balancer, as pip would."""
    package = tmp_path / "acme_lb"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from govrpc.cluster.loadbalance import LoadBalancer

        class FirstLoadBalancer(LoadBalancer):
            def select(self, invokers, invocation):
                return invokers[0]
    """))
    dist = tmp_path / "acme_lb-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-lb\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[govrpc.loadbalance]\nfirst = acme_lb:FirstLoadBalancer\n")
    sys.path.insert(0, str(tmp_path))
    reset_cache()
    yield "first"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_lb", None)
    reset_cache()


def test_a_third_party_balancer_is_selected_by_name(third_party: str, memory_registry: str,
                                                    start_server, client_factory) -> None:
    assert third_party in extension_names("govrpc.loadbalance")
    cls = get_extension("govrpc.loadbalance", third_party)
    assert issubclass(cls, LoadBalancer) and cls.__module__ == "acme_lb"

    @govrpc.service("ext.Where")
    class Where:
        def __init__(self, n: int) -> None:
            self.n = n

        def who(self) -> int:
            return self.n

    for n in range(3):
        start_server(memory_registry, Where(n))
    client = client_factory(memory_registry)
    proxy = client.proxy("ext.Where", loadbalance=third_party)
    answers = {proxy.who() for _ in range(20)}
    assert len(answers) == 1  # "first" always picks the same provider
