"""ZooKeeper registry against a real server: layout, discovery, rules, bad input, ACLs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

import govrpc
from govrpc.exceptions import ConfigurationError, RegistryError, RegistryUnreachableError
from govrpc.registry.base import acquire_registry, release_registry
from govrpc.registry.zookeeper import ZookeeperRegistry
from govrpc.url import URL
from tests.helpers import wait_until
from tests.integration.services import Echo
from tests.zkharness import free_port, zk_address

pytestmark = pytest.mark.zookeeper


class Recorder:
    """A listener that keeps every list it was given, in order."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, urls: Any) -> None:
        with self.lock:
            self.calls.append(sorted(str(u) for u in urls) if isinstance(urls, list) else urls)
            self.threads.add(threading.current_thread().name)

    @property
    def last(self) -> Any:
        with self.lock:
            return self.calls[-1] if self.calls else None


def provider_url(port: int, service: str = "test.Echo", **params: Any) -> URL:
    return URL("grpc", "127.0.0.1", port, service, {"methods": "echo", **params})


@pytest.fixture
def kazoo(zookeeper: Any) -> Any:
    client = KazooClient(zookeeper.hosts, timeout=5)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


def test_server_and_client_through_zookeeper(zk_url: Any, start_server: Any, client_factory: Any,
                                              kazoo: Any) -> None:
    address = zk_url()
    registry = acquire_registry(address)
    assert isinstance(registry, ZookeeperRegistry)
    try:
        server = start_server(address, Echo("p1"), application="echo-app")
        client = client_factory(address, application="web")
        proxy = client.proxy("test.Echo", timeout=3.0)
        assert proxy.whoami() == "p1"

        # the DESIGN.md layout: ephemeral provider and consumer nodes named by the encoded URL
        providers = kazoo.get_children(f"{registry.root}/test.Echo/providers")
        assert providers == [server.urls[0].encoded()]
        _, stat = kazoo.get(f"{registry.root}/test.Echo/providers/{providers[0]}")
        assert stat.ephemeralOwner == registry.client.client_id[0]
        consumers = kazoo.get_children(f"{registry.root}/test.Echo/consumers")
        assert len(consumers) == 1 and URL.decode(consumers[0]).params["application"] == "web"

        admin = govrpc.Admin(address)
        try:
            assert admin.services() == ["test.Echo"]
            assert admin.providers("test.Echo") == server.urls
            assert [u.params["application"] for u in admin.consumers("test.Echo")] == ["web"]
        finally:
            admin.close()

        second = start_server(address, Echo("p2"))
        wait_until(lambda: {proxy.whoami() for _ in range(20)} == {"p1", "p2"}, what="both providers")
        server.stop(grace=1)
        wait_until(lambda: {proxy.whoami() for _ in range(10)} == {"p2"}, what="p1 removed")
        assert kazoo.get_children(f"{registry.root}/test.Echo/providers") == [second.urls[0].encoded()]
    finally:
        release_registry(registry)


def test_listeners_get_each_change_in_order_on_the_dispatcher(zk_url: Any, kazoo: Any) -> None:
    registry = ZookeeperRegistry(ZookeeperRegistry.parse_address(zk_url()))
    try:
        fast, slow = Recorder(), Recorder()
        release = threading.Event()

        def slow_listener(urls: list[URL]) -> None:
            slow(urls)
            if len(slow.calls) == 2:
                release.wait(10)  # blocks the dispatcher, not kazoo's threads

        registry.subscribe("test.Echo", fast)
        registry.subscribe("test.Echo", slow_listener)
        assert fast.calls == [[]] and slow.calls == [[]]
        urls = [provider_url(9000 + i) for i in range(3)]
        for url in urls:
            registry.register(url)
            wait_until(lambda: len(slow.calls) >= 2, what="first push")
        # kazoo keeps working while a listener blocks: the nodes are all there
        assert len(kazoo.get_children(f"{registry.root}/test.Echo/providers")) == 3
        assert registry.lookup("test.Echo") == sorted(urls, key=lambda u: u.encoded())
        release.set()
        wait_until(lambda: fast.last == sorted(map(str, urls)) and slow.last == fast.last, what="all three")
        assert {t for t in fast.threads} == {"govrpc-zk-dispatch"}
        # each list grows: changes are applied in order, none twice
        sizes = [len(c) for c in fast.calls]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        assert fast.calls == slow.calls

        registry.unsubscribe("test.Echo", fast)
        registry.unregister(urls[0])
        wait_until(lambda: len(slow.last) == 2, what="removal")
        assert len(fast.last) == 3
    finally:
        registry.close()


def test_rules_are_persistent_watched_text(zk_url: Any, kazoo: Any) -> None:
    address = zk_url()
    registry = acquire_registry(address)
    try:
        seen = Recorder()
        registry.watch_rules("test.Echo", "routers", seen)
        assert seen.calls == [{}]
        registry.put_rule("test.Echo", "routers", "gray", "host = 10.* => tag = gray")
        wait_until(lambda: seen.last == {"gray": "host = 10.* => tag = gray"}, what="rule push")
        registry.put_rule("test.Echo", "routers", "gray", "=> false")
        wait_until(lambda: seen.last == {"gray": "=> false"}, what="rule update")
        _, stat = kazoo.get(f"{registry.root}/test.Echo/routers/gray")
        assert stat.ephemeralOwner == 0
        # another process writes a rule straight into ZooKeeper
        kazoo.create(f"{registry.root}/test.Echo/routers/manual", "method = find* => host = 10.0.0.1".encode())
        wait_until(lambda: len(seen.last) == 2, what="rule written by someone else")
        assert registry.rules("test.Echo", "routers")["manual"] == "method = find* => host = 10.0.0.1"
        assert registry.rules("test.Echo", "configurators") == {}
        registry.delete_rule("test.Echo", "routers", "gray")
        registry.delete_rule("test.Echo", "routers", "never-there")
        wait_until(lambda: list(seen.last) == ["manual"], what="rule deletion")
        with pytest.raises(ConfigurationError, match="rule category"):
            registry.put_rule("test.Echo", "providers", "x", "y")
    finally:
        release_registry(registry)
    # rules outlive the process that wrote them
    again = acquire_registry(address)
    try:
        assert again.rules("test.Echo", "routers") == {"manual": "method = find* => host = 10.0.0.1"}
    finally:
        release_registry(again)


def test_garbage_nodes_are_skipped_with_one_warning_each(zk_url: Any, kazoo: Any, caplog: Any) -> None:
    registry = ZookeeperRegistry(ZookeeperRegistry.parse_address(zk_url()))
    try:
        good = provider_url(9100)
        registry.register(good)
        seen = Recorder()
        registry.subscribe("test.Echo", seen)
        assert seen.last == [str(good)]
        base = f"{registry.root}/test.Echo/providers"
        garbage = {
            "not-a-url": "not a URL",
            provider_url(9101, service="other.Service").encoded(): "names service",
            "grpc%3A%2F%2F127.0.0.1%3A99999%2Ftest.Echo": "bad port",
            URL("http", "127.0.0.1", 80, "test.Echo").encoded(): "not a provider scheme",
            URL("grpc", "", 0, "test.Echo").encoded(): "bad address",
        }
        caplog.set_level(logging.WARNING, logger="govrpc.registry.zookeeper")
        for name in garbage:
            kazoo.create(f"{base}/{name}", b"")
        # a valid name with garbage data is still a provider: the name is what counts
        other = provider_url(9102)
        kazoo.create(f"{base}/{other.encoded()}", b"\xff\xfe\x00garbage")
        wait_until(lambda: seen.last == sorted([str(good), str(other)]), what="the good provider")
        registry.register(provider_url(9103))  # more pushes: the garbage is not reported again
        wait_until(lambda: len(seen.last) == 3, what="third provider")
        warnings = [r.getMessage() for r in caplog.records if "skipping node" in r.getMessage()]
        for name, problem in garbage.items():
            mine = [w for w in warnings if name[:40] in w]
            assert len(mine) == 1, (name, warnings)
            assert problem in mine[0]
        assert len(registry.lookup("test.Echo")) == 3
    finally:
        registry.close()


@pytest.mark.parametrize("address, problem", [
    ("zookeeper://", "names no host"),
    ("zookeeper://h1:2181,,h2:2181/x", "empty entry"),
    ("zookeeper://h1:21x81/x", "bad host 'h1:21x81'"),
    ("zookeeper://h1:70000", "not in 1..65535"),
    ("zookeeper://h 1:2181", "bad host"),
    ("zookeeper://127.0.0.1:2181/x?sesion_timeout=3", "unknown parameter sesion_timeout"),
    ("zookeeper://127.0.0.1:2181/x?session_timeout=soon", "session_timeout='soon'"),
    ("zookeeper://127.0.0.1:2181/x?connect_timeout=-1", "connect_timeout"),
    ("zookeeper://127.0.0.1:2181/a//b", "bad root path"),
    ("zookeeper://user@127.0.0.1:2181/x", "user:password"),
    ("zookeeper://127.0.0.1:2181/x?reader=bob:pw", "reader= needs auth"),
    ("zookeeper://127.0.0.1:2181/x?hosts=elsewhere:2181", "give hosts in the address"),
    ("zookeeper://:s3cret@127.0.0.1:2181/x", "the user is missing"),
    ("zookeeper://127.0.0.1:2181/x?auth=:s3cret", "the user is missing"),
])
def test_bad_addresses_name_the_mistake(address: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")) as info:
        acquire_registry(address)
    assert "s3cret" not in str(info.value)  # a password is never echoed


def test_host_list_and_credentials_parse() -> None:
    url = ZookeeperRegistry.parse_address("zookeeper://u:p%40ss@h1,h2:2182,[::1]:2183/apps/gov?session_timeout=4")
    assert url.params["hosts"] == "h1:2181,h2:2182,[::1]:2183"
    assert url.params["auth"] == "u:p@ss"
    assert url.path == "apps/gov" and url.params["session_timeout"] == "4"


def test_unreachable_at_start_is_a_clear_error_after_a_bounded_wait(tmp_path: Any) -> None:
    address = zk_address(f"127.0.0.1:{free_port()}", connect_timeout=1, snapshot_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError, match=r"no server answered within 1 s \(connect_timeout\)"):
        acquire_registry(address)
    assert time.monotonic() - started < 10  # connect_timeout=1, plus slack for a busy machine


def test_digest_acls_protect_entries_and_rules(zk_url: Any, kazoo: Any) -> None:
    secured = zk_url(auth="ops:s3cret")
    writer = acquire_registry(secured)
    anonymous = acquire_registry(zk_url())
    try:
        url = provider_url(9200)
        writer.register(url)
        writer.put_rule("test.Echo", "configurators", "weights", "weight=50")
        acl, _ = kazoo.get_acls(f"{writer.root}/test.Echo/providers/{url.encoded()}")
        # (ZooKeeper masks the digest for clients without ADMIN: compare scheme, user and permissions)
        owner = make_digest_acl("ops", "s3cret", all=True)
        assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acl if a.id.scheme == "digest"] == \
            [("digest", "ops", owner.perms)]
        assert [(a.id.scheme, a.id.id, a.perms) for a in acl if a.id.scheme == "world"] == \
            [("world", "anyone", 1)]  # anyone: READ only

        # anyone can read ...
        assert anonymous.lookup("test.Echo") == [url]
        assert anonymous.rules("test.Echo", "configurators") == {"weights": "weight=50"}
        seen = Recorder()
        anonymous.subscribe("test.Echo", seen)
        assert seen.last == [str(url)]
        # ... and add itself as a consumer, but not change providers or rules
        consumer = URL("consumer", "127.0.0.1", 0, "test.Echo", {"application": "web"})
        anonymous.register(consumer)
        assert anonymous.lookup("test.Echo", "consumers") == [consumer]
        with pytest.raises(RegistryError, match="not allowed to register .*anonymous"):
            anonymous.register(provider_url(9201))
        with pytest.raises(RegistryError, match="not allowed to write rule"):
            anonymous.put_rule("test.Echo", "configurators", "weights", "weight=1")
        with pytest.raises(RegistryError, match="not allowed to delete rule"):
            anonymous.delete_rule("test.Echo", "configurators", "weights")
        assert writer.rules("test.Echo", "configurators") == {"weights": "weight=50"}
        assert writer.lookup("test.Echo") == [url]
    finally:
        release_registry(anonymous)
        release_registry(writer)

    # the same user with a wrong password is told so at once
    with pytest.raises(RegistryError, match="wrong password for user 'ops'"):
        acquire_registry(secured.replace("ops:s3cret", "ops:guess"))
    # another identity is refused when it tries to change anything
    intruder = acquire_registry(secured.replace("ops:s3cret", "eve:pw"))
    try:
        with pytest.raises(RegistryError, match="not allowed to register .*user 'eve'"):
            intruder.register(provider_url(9202))
    finally:
        release_registry(intruder)


def test_a_configured_reader_identity_instead_of_anyone(zk_url: Any) -> None:
    writer = acquire_registry(zk_url(auth="ops:s3cret", reader="viewer:look"))
    viewer = acquire_registry(zk_url(auth="viewer:look"))
    anonymous = acquire_registry(zk_url())
    try:
        url = provider_url(9300)
        writer.register(url)
        assert viewer.lookup("test.Echo") == [url]
        seen = Recorder()
        viewer.subscribe("test.Echo", seen)
        assert seen.last == [str(url)]
        with pytest.raises(RegistryError, match="not allowed to list .*anonymous"):
            anonymous.lookup("test.Echo")
        with pytest.raises(RegistryError, match="not allowed to register .*user 'viewer'"):
            viewer.register(provider_url(9301))
    finally:
        release_registry(anonymous)
        release_registry(viewer)
        release_registry(writer)


def test_a_rule_overwritten_with_bytes_that_are_not_utf8_keeps_its_last_good_version(
        zk_url: Any, kazoo: Any, caplog: Any) -> None:
    registry = acquire_registry(zk_url())
    try:
        seen: list[dict[str, str]] = []
        registry.watch_rules("test.Echo", "configurators", seen.append)
        registry.put_rule("test.Echo", "configurators", "off", "disabled = true")
        wait_until(lambda: seen and seen[-1] == {"off": "disabled = true"}, what="the rule")
        caplog.set_level(logging.WARNING, logger="govrpc.registry.zookeeper")
        path = f"{registry.root}/test.Echo/configurators"  # type: ignore[attr-defined]
        kazoo.set(f"{path}/off", b"\xff\xfedisabled")
        kazoo.create(f"{path}/other", b"weight = 5")
        wait_until(lambda: seen[-1].get("other") == "weight = 5", what="the read after the bad write")
        assert seen[-1]["off"] == "disabled = true"
        assert registry.rules("test.Echo", "configurators")["off"] == "disabled = true"
        assert any("keeping its last good version" in r.getMessage() for r in caplog.records)
    finally:
        release_registry(registry)
