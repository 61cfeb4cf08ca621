"""The console end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A live system (real providers on file and ZooKeeper registries, a consumer
calling them) is governed from the page: log in, find the service, write a
route rule with a typo and see the error where it is, fix it, explain it, save
it and see the traffic move; disable a provider and see calls stop reaching it.
Screenshots of the main pages go to ``$GOVRPC_ARTIFACTS`` (default ``artifacts/console``).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import pytest

import govrpc
from govrpc.console import ConsoleServer, Login, hash_password
from tests.helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "s3cret-console"
ARTIFACTS = pathlib.Path(os.environ.get("GOVRPC_ARTIFACTS", pathlib.Path(__file__).parents[2] / "artifacts"))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"headless Chromium is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"headless Chromium not available: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is missing (Debian's chromium package; `make test` installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _missing(f"the playwright package is missing: {exc}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()


@govrpc.service("console.Where", idempotent=True)
class Where:
    def __init__(self, name: str) -> None:
        self.name = name

    def where(self) -> str:
        return self.name


@pytest.fixture
def console() -> Iterator[Any]:
    servers: list[ConsoleServer] = []

    def start(registry: str) -> ConsoleServer:
        server = ConsoleServer(registry, Login(hash_password(PASSWORD, iterations=1000)), port=0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _live_system(registry: str, start_server: Any, client_factory: Any) -> tuple[dict[str, str], Any]:
    a = start_server(registry, Where("a"), port=0)
    b = start_server(registry, Where("b"), port=0)
    client = client_factory(registry, application="web")
    proxy = client.proxy("console.Where", loadbalance="roundrobin", retries=0, timeout=5)
    wait_until(lambda: {proxy.where() for _ in range(6)} == {"a", "b"}, what="both providers serving")
    return {"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"}, proxy


def _served(proxy: Any, calls: int = 12) -> set[str]:
    return {proxy.where() for _ in range(calls)}


def _log_in(page: Any, base: str, target: str = "/services") -> None:
    page.goto(base + target)
    assert "/login" in page.url
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"**{target}*")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_route_rule_with_typo_explained_saved_moves_live_traffic(browser: Any, console: Any, file_registry: str,
                                                                  start_server: Any, client_factory: Any) -> None:
    addresses, proxy = _live_system(file_registry, start_server, client_factory)
    base = console(file_registry).url
    page = browser.new_page()
    try:
        _log_in(page, base)
        page.fill("#q", "console.")
        page.click("#search button")
        page.wait_for_selector("#services >> text=console.Where")
        _shot(page, "services")
        page.click("#services >> text=console.Where")
        page.wait_for_selector("#providers")
        assert page.locator("#providers tbody tr").count() == 2
        assert page.locator("#consumers >> text=web").count() == 1
        _shot(page, "service")

        page.click("#rules-link")
        page.wait_for_selector("#editor")
        page.fill("#rule-name", "only-a")
        typo = f"method = where => port == {addresses['a'].split(':')[1]}"
        page.fill("#rule-text", typo)
        page.wait_for_selector("#error-mark")
        assert page.get_attribute("#check", "data-position") == str(typo.index("=="))
        assert f"line 1, column {typo.index('==') + 1}:" in page.inner_text("#check .message")
        _shot(page, "rule-error")

        page.fill("#rule-text", typo.replace("==", "="))
        page.wait_for_selector("#check.ok")
        page.click("#explain-button")
        page.wait_for_selector(".explain-final")
        assert page.inner_text(".explain-final") == f"result: {addresses['a']}"
        _shot(page, "rule-explain")
        assert _served(proxy) == {"a", "b"}  # explain is a dry run: nothing stored yet

        page.click("#save")
        page.wait_for_selector("li.rule[data-name='only-a']")
        wait_until(lambda: _served(proxy) == {"a"}, what="traffic to provider a only")
        _shot(page, "rules")

        page.click("li.rule[data-name='only-a'] a.history")
        page.wait_for_selector("#history tr[data-version='1']")
        assert page.inner_text("#history tr[data-version='1'] td:nth-child(2)") == "admin"
        _shot(page, "history")
    finally:
        page.close()


@pytest.mark.parametrize("kind", ["file", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_disable_provider_from_the_page_stops_its_calls(kind: str, request: Any, browser: Any, console: Any,
                                                         start_server: Any, client_factory: Any) -> None:
    registry = request.getfixturevalue("file_registry") if kind == "file" else request.getfixturevalue("zk_url")()
    addresses, proxy = _live_system(registry, start_server, client_factory)
    base = console(registry).url
    page = browser.new_page()
    try:
        _log_in(page, base, "/services?q=Where")
        page.click("#services >> text=console.Where")
        row = f"#providers tr[data-address='{addresses['b']}']"
        page.click(f"{row} button.disable")
        page.wait_for_selector(f"{row}.disabled")
        wait_until(lambda: _served(proxy) == {"a"}, what="calls no longer reaching provider b")
        _shot(page, f"provider-disabled-{kind}")
        page.click(f"{row} button.enable")
        page.wait_for_selector(f"{row}.enabled")
        wait_until(lambda: _served(proxy) == {"a", "b"}, what="provider b serving again")
    finally:
        page.close()


def test_pages_without_login_are_refused(browser: Any, console: Any, memory_registry: str) -> None:
    base = console(memory_registry).url
    page = browser.new_page()
    try:
        for target in ("/services", "/rules?service=x", "/history?service=x&category=routers&name=r"):
            page.goto(base + target)
            assert "/login" in page.url
            assert page.locator("#services, #editor, #history").count() == 0
        page.goto(base + "/login")
        page.fill("#password", "wrong")
        page.click("#login")
        page.wait_for_selector("#login-error")
        status = page.evaluate("""async () => (await fetch('/api/rule', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{}'})).status""")
        assert status == 401
        _shot(page, "login")
    finally:
        page.close()


def _span(trace: str, span: str, parent: str, kind: str, service: str, method: str, start: int,
          **attrs: Any) -> dict[str, Any]:
    return {"trace_id": trace, "span_id": span, "parent_span_id": parent, "name": f"/{service}/{method}",
            "kind": kind, "start_time_unix_nano": start, "end_time_unix_nano": start + 5_000_000, "status": "UNSET",
            "attributes": {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                           "rpc.grpc.status_code": 0, **attrs}}


def test_dependency_picture_of_the_trace_report(browser: Any, console: Any, memory_registry: str,
                                                tmp_path: pathlib.Path) -> None:
    import json

    rows = []
    for i in range(20):
        start, trace = 1_700_000_000 * 10**9 + i * 10**8, f"{i + 1:032x}"
        rows.append(_span(trace, f"{4 * i + 1:016x}", "", "CLIENT", "demo.Orders", "place", start,
                          **{"govrpc.application": "web"}))
        rows.append(_span(trace, f"{4 * i + 2:016x}", f"{4 * i + 1:016x}", "SERVER", "demo.Orders", "place", start))
        rows.append(_span(trace, f"{4 * i + 3:016x}", f"{4 * i + 2:016x}", "CLIENT", "demo.Stock", "take", start,
                          **{"govrpc.application": "orders"}))
    spans = tmp_path / "spans.jsonl"
    spans.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["end_time_unix_nano"])))
    server = ConsoleServer(memory_registry, Login(hash_password(PASSWORD, iterations=1000)), port=0,
                           spans=(str(spans),)).start()
    page = browser.new_page()
    try:
        _log_in(page, server.url, "/dependencies")
        page.wait_for_selector("svg#dependencies")
        edges = {(g.get_attribute("data-caller"), g.get_attribute("data-service"))
                 for g in page.query_selector_all("svg#dependencies g.edge")}
        assert edges == {("web", "demo.Orders"), ("orders", "demo.Stock")}
        assert page.locator("#dependency-table tbody tr").count() == 2
        _shot(page, "dependencies")
    finally:
        page.close()
        server.stop()


def test_traffic_chart_updates_and_switches_flip(browser: Any, console: Any, file_registry: str,
                                                 start_server: Any, client_factory: Any) -> None:
    server = start_server(file_registry, Where("a"), port=0, report_interval=0.2)
    proxy = client_factory(file_registry).proxy("console.Where", timeout=5)
    address = f"127.0.0.1:{server.port}"
    base = console(file_registry).url
    page = browser.new_page()
    try:
        _log_in(page, base, "/service?name=console.Where")
        page.wait_for_selector("#traffic")
        line = f"#chart-qps polyline[data-address='{address}']"

        def moved() -> bool:
            _served(proxy, 20)
            refreshed = int(page.get_attribute("#traffic", "data-refreshed") or 0)
            last = page.get_attribute(line, "data-last") if page.locator(line).count() else None
            return refreshed >= 2 and last is not None and float(last) > 0

        wait_until(moved, timeout=20, what="the traffic chart refreshed with calls of the provider")
        before = int(page.get_attribute("#traffic-charts", "data-points") or 0)
        wait_until(lambda: _served(proxy, 5) and int(page.get_attribute("#traffic-charts", "data-points") or 0) > before,
                   timeout=20, what="more points on the chart")
        _shot(page, "traffic")

        page.click("nav >> text=Switches")
        page.wait_for_selector("#switch-form")
        page.fill("#switch-name", "promo")
        page.fill("#switch-value", "true")
        page.click("#switch-set")
        page.wait_for_selector("tr[data-switch='promo'] button.flip")
        assert page.inner_text("tr[data-switch='promo'] td.value") == "true"
        page.click("tr[data-switch='promo'] button.flip")
        page.wait_for_selector("tr[data-switch='promo'] >> text=Turn on")
        assert page.inner_text("tr[data-switch='promo'] td.value") == "false"
        _shot(page, "switches")
        with govrpc.Admin(file_registry) as admin:
            assert admin.switches() == {"promo": False}
    finally:
        page.close()
