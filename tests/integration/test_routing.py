"""Routing end to end: rules written by an operator move a running consumer's traffic; local-first."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest

import govrpc
from govrpc.exceptions import RuleError
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.registry.file import FileRegistry
from govrpc.router import TagPassOnFilter
from govrpc.router.script import default_engine
from govrpc.rpc import InProcessInvoker
from govrpc.url import URL


@govrpc.service("test.Routed", idempotent=True)
class Routed:
    def __init__(self, name: str) -> None:
        self.name = name
        self.threads: list[str] = []

    def whoami(self) -> str:
        self.threads.append(threading.current_thread().name)
        return self.name

    def tag_seen(self) -> str:
        return dict(govrpc.context.current_attachments() or {}).get("tag", "")


class CountingFilter(Filter):
    side = "provider"

    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        self.calls += 1
        return invoker.invoke(invocation)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> float:
    """Seconds it took ``predicate`` to hold (a bounded wait, not a timing assertion)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Traffic:
    """A consumer thread calling ``whoami`` in a loop (bounded) and counting answers per provider."""

    def __init__(self, proxy: Any, limit: int = 20_000) -> None:
        self.proxy = proxy
        self.limit = limit
        self.recent: collections.deque[str] = collections.deque(maxlen=30)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="routing-traffic", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(self.limit):
            if self.stop.is_set():
                return
            try:
                self.recent.append(self.proxy.whoami())
            except govrpc.GovRpcError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.002)

    def only(self, *names: str) -> bool:
        recent = list(self.recent)
        return len(recent) >= 20 and set(recent[-20:]) <= set(names)

    def spread(self, *names: str) -> bool:
        return set(list(self.recent)[-30:]) == set(names)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _move_and_back(registry: str, admin: govrpc.Admin, start_server: Any, client_factory: Any) -> list[float]:
    for name in ("a", "b"):
        start_server(registry, Routed(name), tags={"name": name})
    client = client_factory(registry, application="shop")
    traffic = Traffic(client.proxy("test.Routed", timeout=2.0))
    try:
        wait_until(lambda: traffic.spread("a", "b"), what="traffic on both providers")
        admin.add_route("test.Routed", "only-b", "application = shop => name = b")
        traffic.recent.clear()
        moved = wait_until(lambda: traffic.only("b"), what="the rule to move traffic to b")
        admin.remove_route("test.Routed", "only-b")
        traffic.recent.clear()
        back = wait_until(lambda: traffic.spread("a", "b"), what="traffic back on both providers")
    finally:
        traffic.close()
    assert traffic.failures == []
    return [moved, back]


def test_a_rule_written_on_the_file_registry_moves_traffic_and_back(tmp_path, start_server,
                                                                    client_factory) -> None:
    registry = f"file://{tmp_path}/registry"
    operator = FileRegistry(URL.parse(registry))  # its own instance: changes travel through the files
    try:
        with govrpc.Admin(operator) as admin:
            seconds = _move_and_back(registry, admin, start_server, client_factory)
    finally:
        operator.close()
    print(f"file registry: rule applied after {seconds[0]:.3f} s, removed after {seconds[1]:.3f} s")


@pytest.mark.zookeeper
def test_a_rule_written_on_zookeeper_moves_traffic_and_back(zk_url, start_server, client_factory) -> None:
    from govrpc.registry.zookeeper import ZookeeperRegistry

    registry = zk_url()
    operator = ZookeeperRegistry(URL.parse(registry))  # its own session: changes travel through ZooKeeper
    try:
        with govrpc.Admin(operator) as admin:
            seconds = _move_and_back(registry, admin, start_server, client_factory)
    finally:
        operator.close()
    print(f"zookeeper: rule applied after {seconds[0]:.3f} s, removed after {seconds[1]:.3f} s")


def test_a_broken_rule_is_refused_by_admin_and_cli_and_nothing_is_stored(file_registry) -> None:
    with govrpc.Admin(file_registry) as admin:
        with pytest.raises(RuleError, match="position"):
            admin.add_route("test.Routed", "bad", "host = 1 => port ==")
        with pytest.raises(RuleError):
            admin.put_rule("test.Routed", "routers", "bad", "kind: script\nscript: 1 +")
        assert admin.routes("test.Routed") == {}
    done = subprocess.run([sys.executable, "-m", "govrpc.cli", "route", "add", "test.Routed", "bad",
                           "a = 1 & => b = 2", "--registry", file_registry],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "at position 6" in done.stderr
    with govrpc.Admin(file_registry) as admin:
        assert admin.routes("test.Routed") == {}


def test_a_consumer_that_receives_a_broken_rule_keeps_the_last_good_one(memory_registry, start_server,
                                                                        client_factory, caplog) -> None:
    for name in ("a", "b"):
        start_server(memory_registry, Routed(name), tags={"name": name})
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Routed", timeout=2.0)
    registry = client.registry
    registry.put_rule("test.Routed", "routers", "pin", "=> name = a")
    assert {proxy.whoami() for _ in range(20)} == {"a"}
    registry.put_rule("test.Routed", "routers", "pin", "=> name = = b")  # behind Admin's back
    assert {proxy.whoami() for _ in range(20)} == {"a"}
    assert any("keeping its last good version" in r.getMessage() for r in caplog.records)


@pytest.mark.zookeeper
def test_a_script_rule_on_zookeeper_routes_each_call_by_what_it_carries(zk_url, start_server,
                                                                      client_factory) -> None:
    """A script reading a per-call value (an attachment) moves only the calls that carry it,
    and one that is not a bool or names nothing known is refused where it is written."""
    registry = zk_url()
    for name in ("a", "b"):
        start_server(registry, Routed(name), tags={"name": name})
    client = client_factory(registry)
    proxy = client.proxy("test.Routed", timeout=2.0)
    assert {proxy.whoami() for _ in range(20)} == {"a", "b"}
    with govrpc.Admin(registry) as admin:
        admin.add_route("test.Routed", "eu", "kind: script\nscript: 'has(invocation.attachments.region) "
                        "&& invocation.attachments.region == \"eu\" ? provider.name == \"b\" : provider.name == \"a\"'")
        with govrpc.attachments(region="eu"):
            wait_until(lambda: {proxy.whoami() for _ in range(10)} == {"b"}, what="the script rule to apply")
        assert {proxy.whoami() for _ in range(20)} == {"a"}
        with govrpc.attachments(region="us"):
            assert {proxy.whoami() for _ in range(20)} == {"a"}
        with govrpc.attachments(region="eu"):
            assert {proxy.whoami() for _ in range(20)} == {"b"}
        if default_engine() == "cel-expr-python":  # cel-python only finds this when it evaluates
            with pytest.raises(RuleError) as caught:
                admin.add_route("test.Routed", "bad", "kind: script\nscript: provider.nme + 1")
            assert caught.value.position is not None and "bad" not in admin.routes("test.Routed")


def test_cli_route_add_list_explain_rm(tmp_path, start_server) -> None:
    registry = f"file://{tmp_path}/registry"
    a = start_server(registry, Routed("a"), tags={"name": "a"})
    start_server(registry, Routed("b"), tags={"name": "b", "tag": "gray"})

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "govrpc.cli", *args, "--registry", registry],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("route", "add", "test.Routed", "writes", "method = save* => name = a")
    assert "method = save* => name = a" in cli("route", "list", "test.Routed")
    out = cli("route", "explain", "test.Routed", "saveIt")
    assert "tag: untagged call" in out and "writes: kept providers matching 'name = a'" in out
    assert out.strip().endswith("result: 1 provider(s)") and f"127.0.0.1:{a.port}" in out
    gray = cli("route", "explain", "test.Routed", "whoami", "--attachment", "tag=gray")
    assert "tag 'gray': providers tagged 'gray'" in gray
    cli("route", "rm", "test.Routed", "writes")
    assert "no route rule" in cli("route", "list", "test.Routed")


def test_local_first_calls_in_process_without_the_network(memory_registry, start_server,
                                                          client_factory) -> None:
    counting = CountingFilter()
    provider = Routed("local")
    start_server(memory_registry, provider, filters=[counting])
    client = client_factory(memory_registry, local_first=True)
    proxy = client.proxy("test.Routed", timeout=2.0)
    assert [proxy.whoami() for _ in range(5)] == ["local"] * 5
    # no gRPC: no channel was ever opened, and no gRPC server thread ran the method
    assert client.pool.addresses() == []
    assert all(t.startswith("govrpc-inprocess") for t in provider.threads), provider.threads
    assert counting.calls == 5  # the provider's own filters still ran
    assert all(isinstance(i.transport, InProcessInvoker) for i in client.reference("test.Routed", timeout=2.0).directory.invokers)

    network = client_factory(memory_registry, local_first=False)
    assert network.proxy("test.Routed", timeout=2.0).whoami() == "local"
    assert provider.threads[-1].startswith("govrpc-server") and network.pool.addresses() != []
    assert counting.calls == 6


def test_local_first_keeps_deadlines_and_error_types(memory_registry, start_server, client_factory) -> None:
    from tests.integration.services import Echo, OutOfStock

    start_server(memory_registry, Echo("local"))
    client = client_factory(memory_registry, local_first=True)
    echo = client.proxy("test.Echo", timeout=0.2)
    with pytest.raises(govrpc.CallTimeoutError):
        echo.sleep(1.0)
    with pytest.raises(OutOfStock):
        echo.buy("nothing")
    assert echo.add(2, b=3) == 5


def test_local_first_encodes_as_the_wire_does(memory_registry, start_server, client_factory) -> None:
    from tests.integration.services import Echo

    start_server(memory_registry, Echo("local"), max_message_size=64 * 1024)
    client = client_factory(memory_registry, local_first=True)
    echo = client.proxy("test.Echo", timeout=2.0, retries=0)
    sent = {"k": (1, 2)}
    got = echo.echo(sent)
    assert got == {"k": (1, 2)} and got is not sent and got["k"] is not sent["k"]  # a copy, types kept
    with pytest.raises(govrpc.SerializationError, match="msgpack"):
        echo.echo(object())
    with pytest.raises(govrpc.MessageTooLargeError):
        echo.echo(b"x" * 200_000)
    assert client.pool.addresses() == []


def test_a_stopped_local_provider_is_failed_over(memory_registry, client_factory) -> None:
    first = govrpc.Server(memory_registry).add(Routed("first")).start()
    second = govrpc.Server(memory_registry).add(Routed("second")).start()
    try:
        client = client_factory(memory_registry, local_first=True)
        proxy = client.proxy("test.Routed", timeout=2.0, retries=2)
        assert {proxy.whoami() for _ in range(30)} == {"first", "second"}
        first.stop(grace=0.2)
        assert {proxy.whoami() for _ in range(30)} == {"second"}
    finally:
        first.stop(grace=0.2)
        second.stop(grace=0.2)


def test_tag_routing_and_passing_the_tag_on(memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Routed("plain"))
    start_server(memory_registry, Routed("gray"), tags={"tag": "gray"}, filters=[TagPassOnFilter()])
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Routed", timeout=2.0)
    assert {proxy.whoami() for _ in range(20)} == {"plain"}
    with govrpc.attachments(tag="gray"):
        assert {proxy.whoami() for _ in range(20)} == {"gray"}
        assert proxy.tag_seen() == "gray"  # the gray provider passes its call's tag on
    with govrpc.attachments(tag="red"):
        assert {proxy.whoami() for _ in range(20)} == {"plain"}  # fallback
    with govrpc.attachments(tag="red", tag_force="true"), pytest.raises(govrpc.NoProviderError):
        proxy.whoami()
    tagged = client.proxy("test.Routed", timeout=2.0, tag="gray")
    assert {tagged.whoami() for _ in range(10)} == {"gray"}


def test_the_consumers_own_routes_win_over_the_registry(memory_registry, start_server, client_factory) -> None:
    for name in ("a", "b"):
        start_server(memory_registry, Routed(name), tags={"name": name})
    client = client_factory(memory_registry)
    with govrpc.Admin(memory_registry) as admin:
        admin.add_route("test.Routed", "pin", "=> name = a")
    assert {client.proxy("test.Routed", timeout=2.0).whoami() for _ in range(10)} == {"a"}
    mine = client.proxy("test.Routed", timeout=2.0, routes={"pin": "=> name = b"})
    assert {mine.whoami() for _ in range(10)} == {"b"}
    with pytest.raises(RuleError):
        client.proxy("test.Routed", routes={"pin": "=> name =="})


def test_a_rule_published_by_providers_applies_below_the_consumers_own(memory_registry, start_server,
                                                                      client_factory) -> None:
    published = {"route.pin": "=> name = b"}  # a provider publishes a rule as a URL parameter
    for name in ("a", "b"):
        start_server(memory_registry, Routed(name), tags={"name": name, **published})
    with govrpc.Admin(memory_registry) as admin:
        admin.add_route("test.Routed", "pin", "=> name = a")  # the registry's rule of that name loses
    client = client_factory(memory_registry)
    assert {client.proxy("test.Routed", timeout=2.0).whoami() for _ in range(10)} == {"b"}
    mine = client.proxy("test.Routed", timeout=2.0, routes={"pin": "=> name = a"})
    assert {mine.whoami() for _ in range(10)} == {"a"}


def test_a_host_based_rule_matches_this_consumers_address(memory_registry, start_server, client_factory) -> None:
    from govrpc.net import local_address

    for name in ("a", "b"):
        start_server(memory_registry, Routed(name), tags={"name": name})
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Routed", timeout=2.0)
    assert proxy._reference.url.host == local_address()
    with govrpc.Admin(memory_registry) as admin:
        admin.add_route("test.Routed", "here", f"host = {local_address()} => name = b")
        assert {proxy.whoami() for _ in range(10)} == {"b"}
        admin.add_route("test.Routed", "here", "host = 10.254.254.254 => name = b")  # another host: no effect
        assert {proxy.whoami() for _ in range(20)} == {"a", "b"}


@govrpc.service("test.NextHop")
class NextHop:
    def context_seen(self) -> dict:
        """What a call this provider made now would carry: its context's attachments."""
        return dict(govrpc.context.current_attachments() or {})


@pytest.mark.parametrize("local_first", [True, False])
def test_the_tag_reaches_the_next_hop_only_through_the_pass_on_filter(memory_registry, client_factory,
                                                                       local_first: bool) -> None:
    plain = govrpc.Server(memory_registry).add(NextHop()).start()
    client = client_factory(memory_registry, local_first=local_first)
    try:
        proxy = client.proxy("test.NextHop")
        with govrpc.attachments(tag="gray", tenant="acme"):
            assert proxy.context_seen() == {}  # nothing of the caller's context leaks into the provider's
    finally:
        plain.stop(grace=0.5)
    passing = govrpc.Server(memory_registry, filters=[TagPassOnFilter()]).add(NextHop()).start()
    try:
        with govrpc.attachments(tag="gray", tenant="acme"):
            assert client.proxy("test.NextHop").context_seen() == {"tag": "gray"}
    finally:
        passing.stop(grace=0.5)
