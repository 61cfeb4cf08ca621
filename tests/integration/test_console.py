"""The console over HTTP (no browser): login, CSRF, history kept in the registry, ZooKeeper identity, bad input."""

from __future__ import annotations

import http.client
import json
import re
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest

import govrpc
from govrpc.console import ConsoleServer, Login, RuleHistory, hash_password
from govrpc.exceptions import ConfigurationError, RuleError
from tests.helpers import wait_until

PASSWORD = "pw-for-tests"


class Browserless:
    """A minimal HTTP client with one cookie, enough to act as a logged-in user."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.cookie = ""
        self.csrf = ""

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                form: bool = False) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        sent = dict(headers or {})
        if self.cookie:
            sent["Cookie"] = self.cookie
        data = None
        if body is not None:
            data = urlencode(body) if form else json.dumps(body)
            sent["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            conn.close()

    def log_in(self, password: str = PASSWORD) -> int:
        status, headers, _ = self.request("POST", "/login", {"user": "admin", "password": password}, form=True)
        if "Set-Cookie" in headers:
            self.cookie = headers["Set-Cookie"].split(";", 1)[0]
            _, _, page = self.request("GET", "/services")
            self.csrf = re.search(r'<meta name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        return status

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, _, text = self.request("POST", path, body, headers={"X-CSRF-Token": self.csrf})
        return status, json.loads(text)


@pytest.fixture
def console() -> Iterator[Any]:
    servers: list[ConsoleServer] = []

    def start(registry: str, **options: Any) -> Browserless:
        server = ConsoleServer(registry, Login(hash_password(PASSWORD, iterations=1000)), port=0, **options).start()
        servers.append(server)
        return Browserless(server)

    yield start
    for server in servers:
        server.stop()


@govrpc.service("console.Echo")
class Echo:
    def echo(self, text: str) -> str:
        return text


def test_every_page_and_write_needs_the_login(console: Any, memory_registry: str) -> None:
    user = console(memory_registry)
    for path in ("/services", "/service?name=x", "/rules?service=x", "/dependencies"):
        status, headers, body = user.request("GET", path)
        assert status == 303 and headers["Location"].startswith("/login?next=")
    status, _, _ = user.request("POST", "/api/rule", {"service": "x", "category": "routers", "name": "r", "text": "=> false"})
    assert status == 401
    assert user.log_in("wrong") == 401
    assert user.log_in() == 303
    status, _, page = user.request("GET", "/services")
    assert status == 200 and "no service matches" in page
    assert user.server.host == "127.0.0.1"


def test_writes_need_the_csrf_token_and_the_same_origin(console: Any, memory_registry: str) -> None:
    user = console(memory_registry)
    user.log_in()
    rule = {"service": "console.Echo", "category": "routers", "name": "r", "text": "=> false"}
    status, _, _ = user.request("POST", "/api/rule", rule)
    assert status == 403
    status, _, _ = user.request("POST", "/api/rule", rule, headers={"X-CSRF-Token": "forged"})
    assert status == 403
    status, _, _ = user.request("POST", "/api/rule", rule,
                                headers={"X-CSRF-Token": user.csrf, "Origin": "http://evil.example"})
    assert status == 403
    with govrpc.Admin(memory_registry) as admin:
        assert admin.routes("console.Echo") == {}
    assert user.post("/api/rule", rule) == (200, {"ok": True, "version": 1})
    with govrpc.Admin(memory_registry) as admin:
        assert admin.routes("console.Echo") == {"r": "=> false"}


def test_bad_rule_is_refused_with_its_position_and_nothing_is_stored(console: Any, memory_registry: str) -> None:
    user = console(memory_registry)
    user.log_in()
    text = "retries = 2\ntimeout = soon\n"
    status, answer = user.post("/api/check", {"category": "configurators", "text": text})
    assert status == 200 and answer["ok"] is False and answer["position"] == text.index("soon")
    status, answer = user.post("/api/rule", {"service": "console.Echo", "category": "configurators",
                                             "name": "c", "text": text})
    assert status == 400 and answer["position"] == text.index("soon")
    status, answer = user.post("/api/rule", {"service": "console.Echo", "category": "providers",
                                             "name": "c", "text": text})
    assert status == 400 and "not one of" in answer["error"]
    with govrpc.Admin(memory_registry) as admin:
        assert admin.rules("console.Echo", "configurators") == {}
        assert RuleHistory(admin).versions("console.Echo") == []


def test_history_is_in_the_registry_with_who_and_rollback(console: Any, file_registry: str) -> None:
    user = console(file_registry)
    user.log_in()
    rule = {"service": "console.Echo", "category": "routers", "name": "r"}
    assert user.post("/api/rule", {**rule, "text": "=> host = 10.0.0.1"})[0] == 200
    assert user.post("/api/rule", {**rule, "text": "=> host = 10.0.0.2"})[0] == 200
    user.server.stop()  # a console restarted (or a second one) sees the same history: nothing was in memory
    again = console(file_registry)
    again.log_in()
    assert again.post("/api/rollback", {**rule, "version": 1}) == (200, {"ok": True})
    with govrpc.Admin(file_registry) as admin:
        assert admin.routes("console.Echo") == {"r": "=> host = 10.0.0.1"}
        versions = RuleHistory(admin).versions("console.Echo", "routers", "r")
    assert [(v.version, v.user, v.action, v.text) for v in versions] == [
        (3, "admin", "rollback to v1", "=> host = 10.0.0.1"),
        (2, "admin", "put", "=> host = 10.0.0.2"),
        (1, "admin", "put", "=> host = 10.0.0.1")]
    status, _, page = again.request("GET", "/history?" + urlencode({**rule, "category": "routers"}))
    assert status == 200 and "Roll back to v2" in page and "Roll back to v3" not in page
    status, answer = again.post("/api/rollback", {**rule, "version": 9})
    assert status == 400 and "no version 9" in answer["error"]


def test_history_is_bounded_per_rule(memory_registry: str) -> None:
    with govrpc.Admin(memory_registry) as admin:
        history = RuleHistory(admin, keep=3)
        for i in range(6):
            history.put("console.Echo", "routers", "r", f"=> host = 10.0.0.{i}", user="ann")
        history.put("console.Echo", "routers", "other", "=> false", user="bob")
        assert [v.version for v in history.versions("console.Echo", "routers", "r")] == [6, 5, 4]
        assert len(admin.rules("console.Echo", "history")) == 4
        with pytest.raises(RuleError):
            history.put("console.Echo", "routers", "r", "=> host == 1", user="ann")
        assert [v.version for v in history.versions("console.Echo", "routers", "r")] == [6, 5, 4]


def test_services_page_is_paged_and_searchable_and_shows_consumer_only_services(
        console: Any, memory_registry: str, start_server: Any, client_factory: Any) -> None:
    registry = govrpc.registry.acquire_registry(memory_registry)
    try:
        for i in range(120):
            registry.register(govrpc.url.URL("grpc", "127.0.0.1", 20000 + i, f"bulk.S{i:03d}", {"application": "bulk"}))
        client = client_factory(memory_registry, application="lonely-app")
        client.proxy("orphan.Service")  # a consumer whose service has no provider at all
        user = console(memory_registry)
        user.log_in()
        _, _, first = user.request("GET", "/services")
        assert "121 services, page 1 of 3" in first
        assert first.count("<tr><td>") == 50
        _, _, found = user.request("GET", "/services?q=S11")
        assert "10 services, page 1 of 1" in found and "bulk.S119" in found and "bulk.S010" not in found
        _, _, orphan = user.request("GET", "/services?q=orphan")
        assert "orphan.Service" in orphan and "consumers only" in orphan and "lonely-app" in orphan
        status, _, _ = user.request("GET", "/services?page=abc")
        assert status == 400
    finally:
        govrpc.registry.release_registry(registry)


@pytest.mark.zookeeper
def test_rules_are_written_with_the_consoles_zookeeper_identity(console: Any, zk_url: Any) -> None:
    from kazoo.client import KazooClient

    registry = zk_url(auth="console:secret")
    user = console(registry)
    user.log_in()
    assert user.post("/api/rule", {"service": "console.Echo", "category": "configurators", "name": "c",
                                   "text": "retries = 1\n"})[0] == 200
    admin = user.server.admin
    zk = admin.registry.client  # type: ignore[attr-defined]
    path = f"{admin.registry.root}/console.Echo/configurators/c"  # type: ignore[attr-defined]
    acls, _ = zk.get_acls(path)
    assert any(acl.id.scheme == "digest" and acl.id.id.startswith("console:") for acl in acls)
    stranger = KazooClient(hosts=admin.registry.hosts, timeout=10)  # type: ignore[attr-defined]
    stranger.start(timeout=10)
    try:
        from kazoo.exceptions import NoAuthError

        with pytest.raises(NoAuthError):
            stranger.set(path, b"retries = 9\n")
    finally:
        stranger.stop()
        stranger.close()


def test_login_configuration_errors_are_clear(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="needs a password"):
        Login.from_environment({})
    with pytest.raises(ConfigurationError, match="cannot read the console password file"):
        Login.from_environment({}, password_file=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("plain-text-password\n")
    with pytest.raises(ConfigurationError, match="hash-password"):
        Login.from_environment({}, password_file=str(bad))
    good = tmp_path / "good"
    good.write_text(hash_password("pw", iterations=1000) + "\n")
    login = Login.from_environment({"GOVRPC_CONSOLE_USER": "ops"}, password_file=str(good))
    assert login.login("ops", "pw") is not None and login.login("ops", "nope") is None
    assert login.login("admin", "pw") is None
    assert "pw" not in repr(vars(Login.from_environment({"GOVRPC_CONSOLE_PASSWORD": "pw"})))


def test_traffic_panel_charts_a_live_providers_calls(console: Any, file_registry: str, start_server: Any,
                                                     client_factory: Any) -> None:
    server = start_server(file_registry, Echo(), report_interval=0.2)
    echo = client_factory(file_registry).proxy("console.Echo")
    user = console(file_registry)
    user.log_in()
    address = f"127.0.0.1:{server.port}"
    _, _, page = user.request("GET", "/service?name=console.Echo")
    assert '<section id="traffic" data-service="console.Echo">' in page

    def busy_point() -> Any:
        for _ in range(20):
            echo.echo("hi")
        status, _, text = user.request("GET", "/api/traffic?service=console.Echo")
        assert status == 200
        data = json.loads(text)
        points = data["providers"].get(address, [])
        return data if any(p["qps"] > 0 for p in points) else None

    data = wait_until(busy_point, what="a traffic point with calls")
    assert '<svg class="chart" id="chart-qps"' in data["svg"] and f'data-address="{address}"' in data["svg"]
    assert all(p["error_rate"] == 0.0 for p in data["providers"][address])
    status, _, _ = user.request("GET", "/api/traffic")
    assert status == 400


def test_the_traffic_ring_reads_only_when_asked_and_stays_bounded() -> None:
    from govrpc.console.traffic import TrafficRing
    from govrpc.monitor.health import HealthSummary

    reads: list[str] = []
    clock = [1000.0]

    def read(service: str) -> list[HealthSummary]:
        reads.append(service)
        clock[0] += 1
        return [HealthSummary("10.0.0.1:1", clock[0], 1.0, qps=5.0, success_rate=0.75, p99_ms=3.0),
                HealthSummary("10.0.0.9:1", clock[0], 1.0, side="consumer", qps=9.0)]

    ring = TrafficRing(read, poll_seconds=3600, points=3)
    assert reads == []
    assert ring.series("s") == {"10.0.0.1:1": [(1001.0, 5.0, 0.25, 3.0)]}
    ring.series("s")  # polled under poll_seconds ago: no second read
    assert reads == ["s"]
    ring.poll_seconds = 0
    for _ in range(5):
        ring.series("s")
    assert [p[0] for p in ring.series("s")["10.0.0.1:1"]] == [1005.0, 1006.0, 1007.0]


def test_switches_are_set_flipped_deleted_with_login_csrf_and_history(console: Any, memory_registry: str) -> None:
    user = console(memory_registry)
    status, _, _ = user.request("POST", "/api/switch", {"name": "promo", "value": True})
    assert status == 401
    user.log_in()
    status, _, _ = user.request("POST", "/api/switch", {"name": "promo", "value": True})
    assert status == 403
    assert user.post("/api/switch", {"name": "promo", "value": True}) == (200, {"ok": True, "switches": {"promo": True}})
    status, headers, _ = user.request("POST", "/api/switch", {"csrf": user.csrf, "name": "limit", "action": "set",
                                                              "value": '{"max": 3}'}, form=True)
    assert status == 303 and headers["Location"] == "/switches"
    assert user.post("/api/switch", {"name": "promo", "action": "flip"})[1]["switches"] == {
        "promo": False, "limit": {"max": 3}}
    _, _, page = user.request("GET", "/switches")
    assert '<tr data-switch="promo">' in page and "Turn on" in page and "{&quot;max&quot;: 3}" in page
    status, answer = user.post("/api/switch", {"name": "limit", "action": "flip"})
    assert status == 400 and "not true or false" in answer["error"]
    status, answer = user.post("/api/switch", {"name": "bad name!", "value": 1})
    assert status == 400 and "switch name" in answer["error"]
    status, _, text = user.request("POST", "/api/switch", {"csrf": user.csrf, "name": "x", "value": "{nope"}, form=True)
    assert status == 400 and "not JSON" in text
    assert user.post("/api/switch", {"name": "promo", "action": "delete"})[1]["switches"] == {"limit": {"max": 3}}
    with govrpc.Admin(memory_registry) as admin:
        assert admin.switches() == {"limit": {"max": 3}}
        versions = RuleHistory(admin).versions("govrpc.switches", "switches", "promo")
    assert [(v.version, v.user, v.action, v.text) for v in versions] == [
        (3, "admin", "delete", ""), (2, "admin", "put", "false"), (1, "admin", "put", "true")]
    assert user.post("/api/rollback", {"service": "govrpc.switches", "category": "switches", "name": "promo",
                                       "version": 1}) == (200, {"ok": True})
    with govrpc.Admin(memory_registry) as admin:
        assert admin.switches() == {"limit": {"max": 3}, "promo": True}
    status, _, page = user.request("GET", "/history?service=govrpc.switches&category=switches&name=promo")
    assert status == 200 and "rollback to v1" in page and 'href="/switches"' in page
