"""Consumer filters at two levels, bound to what they serve, bound again when settings change."""

from __future__ import annotations

import threading
from typing import Any

import govrpc
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.url import URL
from tests.helpers import wait_until
from tests.integration.services import Echo


class Recording(Filter):
    """Binds only where ``retries`` is 0 (a key configurators can set), records what it served."""

    def __init__(self, level: str) -> None:
        self.level = level  # type: ignore[misc]
        self.bound: list[URL] = []
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def bind(self, url: URL) -> Filter | None:
        with self._lock:
            self.bound.append(url)
        return self if url.params.get("retries") == "0" else None

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        with self._lock:
            self.seen.append(invoker.url.address if self.level == "invoker" else invocation.method)
        return invoker.invoke(invocation)


def test_invoker_filters_run_once_per_attempt_on_their_provider(memory_registry, start_server,
                                                                 client_factory) -> None:
    one = start_server(memory_registry, Echo("p1"))
    two = start_server(memory_registry, Echo("p2"))
    per_call, per_provider = Recording("reference"), Recording("invoker")
    client = client_factory(memory_registry, local_first=False, filters=[per_call, per_provider])
    proxy = client.proxy("test.Echo", retries=0, loadbalance="roundrobin")
    assert sorted(proxy.whoami() for _ in range(4)) == ["p1", "p1", "p2", "p2"]
    assert per_call.seen == ["whoami"] * 4
    addresses = {f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"}
    assert sorted(per_provider.seen) == sorted(list(addresses) * 2)
    # bound to each provider's URL (with the consumer's settings over it), and to the consumer URL
    assert {u.address for u in per_provider.bound} == addresses
    assert all(u.path == "test.Echo" and u.params["retries"] == "0" for u in per_provider.bound)
    assert [u.scheme for u in per_call.bound] == ["consumer"]


def test_a_filter_with_nothing_to_do_is_no_link_until_a_configurator_gives_it_work(
        memory_registry, start_server, client_factory) -> None:
    start_server(memory_registry, Echo("p1"))
    per_call, per_provider = Recording("reference"), Recording("invoker")
    client = client_factory(memory_registry, local_first=False, filters=[per_call, per_provider])
    proxy = client.proxy("test.Echo", application="web")
    assert proxy.whoami() == "p1"
    assert per_call.seen == [] and per_provider.seen == []  # bound to nothing: never ran
    with govrpc.Admin(memory_registry) as admin:
        admin.set_override("test.Echo", "no-retries", "retries = 0")
        wait_until(lambda: proxy.whoami() and per_call.seen and per_provider.seen, timeout=5)
        assert per_call.seen[-1] == "whoami" and per_provider.seen
        admin.delete_rule("test.Echo", "configurators", "no-retries")
        wait_until(lambda: client.reference("test.Echo").invoker is client.reference("test.Echo").cluster,
                   timeout=5)
    calls = len(per_call.seen)
    proxy.whoami()
    assert len(per_call.seen) == calls  # unbound again
