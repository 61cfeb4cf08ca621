"""The entry-point loader, including a third party's load balancer found by name."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

import govrpc
from govrpc.cluster.loadbalance import LoadBalancer, RandomLoadBalancer
from govrpc.configurator import parse_configurator
from govrpc.exceptions import RuleError
from govrpc.extension import GROUPS, extension_names, get_extension, loader, reset_cache
from govrpc.options import known_options

from tests.helpers import wait_until


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
    """Install a tiny distribution that declares a load balancer and a filter, each with an option, as pip would."""
    package = tmp_path / "acme_lb"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from govrpc.cluster.loadbalance import LoadBalancer
        from govrpc.invocation import Filter
        from govrpc.options import Option

        class FirstLoadBalancer(LoadBalancer):
            INDEX = Option.integer("first.index", 0, low=0, high=99, doc="which provider, in sorted order")
            options = (INDEX,)

            def __init__(self, url=None):
                super().__init__(url)
                self.index = self.INDEX.read(url)

            def select(self, invokers, invocation):
                ordered = sorted(invokers, key=lambda i: i.url.port)
                return ordered[self.index % len(ordered)]

        class QuotaFilter(Filter):
            options = (Option.integer("acme.tps", None, low=1, doc="calls per second"),)

            def invoke(self, invoker, invocation):
                return invoker.invoke(invocation)
    """))
    dist = tmp_path / "acme_lb-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-lb\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[govrpc.loadbalance]\nfirst = acme_lb:FirstLoadBalancer\n\n"
                                           "[govrpc.filter]\nacme-quota = acme_lb:QuotaFilter\n")
    sys.path.insert(0, str(tmp_path))
    reset_cache()
    yield "first"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_lb", None)
    reset_cache()


@govrpc.service("ext.Where")
class Where:
    def __init__(self, n: int) -> None:
        self.n = n

    def who(self) -> int:
        return self.n


def serve_three(registry: str, start_server) -> None:
    """Three providers of ``ext.Where``, answering 0, 1 and 2."""
    for n in range(3):
        start_server(registry, Where(n))


def test_a_third_party_balancer_is_selected_by_name(third_party: str, memory_registry: str,
                                                    start_server, client_factory) -> None:
    assert third_party in extension_names("govrpc.loadbalance")
    cls = get_extension("govrpc.loadbalance", third_party)
    assert issubclass(cls, LoadBalancer) and cls.__module__ == "acme_lb"

    serve_three(memory_registry, start_server)
    client = client_factory(memory_registry)
    proxy = client.proxy("ext.Where", loadbalance=third_party)
    answers = {proxy.who() for _ in range(20)}
    assert len(answers) == 1  # "first" always picks the same provider


def test_a_third_party_balancers_own_option_is_set_by_a_configurator(third_party: str, memory_registry: str,
                                                                    start_server, client_factory) -> None:
    assert parse_configurator("first.index = 1\nfind.first.index = 2").params["find.first.index"] == "2"
    with pytest.raises(RuleError, match=r"first.index must be an integer from 0 to 99, not '-1'") as caught:
        parse_configurator("first.index = -1")
    assert caught.value.position == len("first.index = ")

    serve_three(memory_registry, start_server)
    client = client_factory(memory_registry)
    proxy = client.proxy("ext.Where", loadbalance=third_party)
    first = {proxy.who() for _ in range(10)}
    assert len(first) == 1
    with govrpc.Admin(memory_registry) as admin:
        with pytest.raises(RuleError, match="first.index must be"):
            admin.set_override("ext.Where", "pick", "first.index = many")
        admin.set_override("ext.Where", "pick", "first.index = 1")
        assert wait_until(lambda: {proxy.who() for _ in range(5)} != first)
        second = {proxy.who() for _ in range(10)}
        assert len(second) == 1 and second != first  # the next provider, every time
        admin.delete_rule("ext.Where", "configurators", "pick")
        assert wait_until(lambda: {proxy.who() for _ in range(5)} == first)
    with pytest.raises(govrpc.ConfigurationError, match="first.index must be"):
        client.proxy("ext.Where", loadbalance=third_party, **{"first.index": 100})


def test_a_third_party_filters_option_is_known(third_party: str) -> None:
    assert "acme.tps" in known_options()
    assert parse_configurator("acme.tps = 50").params["acme.tps"] == "50"
    with pytest.raises(RuleError, match="acme.tps must be an integer >= 1"):
        parse_configurator("acme.tps = 0")


def test_an_uninstalled_extensions_option_is_unknown_again(third_party: str, tmp_path: Path) -> None:
    assert "first.index" in known_options()
    sys.path.remove(str(tmp_path))  # the distribution is gone
    try:
        reset_cache()
        assert "first.index" not in known_options()
        with pytest.raises(RuleError, match="unknown key 'first.index'"):
            parse_configurator("first.index = 1")
    finally:
        sys.path.insert(0, str(tmp_path))
