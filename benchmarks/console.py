"""The console's two figures (issue 16): first render of the services page with 1,000 services x 10
providers, and the console's own load on the registry while idle.

    .venv/bin/python benchmarks/console.py [--registry file|memory] [--services 1000] [--providers 10]

"first render" is the first page (50 services) after login with a cold cache, measured twice: the
HTTP response alone, and in headless Chromium (navigation until the page's load event) when
/usr/bin/chromium and playwright are there. "idle reads" counts the registry reads (services,
lookup, rules) the console makes over 10 s when nobody uses it, then over 10 s with one services
page reloaded every 2 s by a browser-less client.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from govrpc.console import ConsoleServer, Login, hash_password  # noqa: E402
from govrpc.registry import acquire_registry, release_registry  # noqa: E402
from govrpc.url import URL  # noqa: E402

PASSWORD = "bench"


def _count_reads(registry: Any) -> dict[str, int]:
    counts = {"reads": 0}
    for name in ("services", "lookup", "rules"):
        original = getattr(registry, name)

        def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            counts["reads"] += 1
            return _original(*args, **kwargs)

        setattr(registry, name, counted)
    return counts


def _get(server: ConsoleServer, path: str, cookie: str = "") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _login(server: ConsoleServer) -> str:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request("POST", "/login", body=f"user=admin&password={PASSWORD}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        return response.getheader("Set-Cookie", "").split(";", 1)[0]
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", choices=("file", "memory"), default="file")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        address = f"file://{tmp}/registry" if args.registry == "file" else "memory://console-bench"
        writer = acquire_registry(address)
        started = time.perf_counter()
        for s in range(args.services):
            for p in range(args.providers):
                writer.register(URL("grpc", f"10.0.{p}.{s % 250 + 1}", 20000 + s, f"bench.Service{s:05d}",
                                    {"application": f"app{s % 37}", "version": "1.0", "weight": "100",
                                     "methods": "get,put", "timestamp": str(int(time.time() * 1000))}))
        print(f"registered {args.services} services x {args.providers} providers in "
              f"{time.perf_counter() - started:.1f} s ({args.registry} registry)")
        server = ConsoleServer(address, Login(hash_password(PASSWORD, iterations=1000)), port=0).start()
        counts = _count_reads(server.admin.registry)
        try:
            cookie = _login(server)
            server.app.cache.clear()
            t0 = time.perf_counter()
            status, _, body = _get(server, "/services", cookie)
            http_ms = (time.perf_counter() - t0) * 1000
            assert status == 200 and b"bench.Service00049" in body, status
            print(f"services page, first render (HTTP, cold cache): {http_ms:.0f} ms, {len(body) // 1024} KiB, "
                  f"{counts['reads']} registry reads")
            t0 = time.perf_counter()
            status, _, body = _get(server, "/services?q=Service009&page=2", cookie)
            print(f"search + page 2: {(time.perf_counter() - t0) * 1000:.0f} ms")
            _browser(server, cookie)
            before = counts["reads"]
            time.sleep(10)
            print(f"idle, nobody on the page: {(counts['reads'] - before) / 10:.1f} registry reads/s")
            before = counts["reads"]
            for _ in range(5):
                _get(server, "/services", cookie)
                time.sleep(2)
            print(f"one services page reloaded every 2 s: {(counts['reads'] - before) / 10:.1f} registry reads/s")
        finally:
            server.stop()
            release_registry(writer)
    return 0


def _browser(server: ConsoleServer, cookie: str) -> None:
    if not os.access("/usr/bin/chromium", os.X_OK):
        print("chromium: not installed, browser figure skipped")
        return
    from playwright.sync_api import sync_playwright

    name, _, value = cookie.partition("=")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        context = browser.new_context()
        context.add_cookies([{"name": name, "value": value, "url": server.url}])
        page = context.new_page()
        server.app.cache.clear()
        t0 = time.perf_counter()
        page.goto(server.url + "/services", wait_until="load")
        print(f"services page, first render in Chromium (navigation to load, cold cache): "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms (the browser's first page)")
        for _ in range(2):
            server.app.cache.clear()
            t0 = time.perf_counter()
            page.goto(server.url + "/services?page=3", wait_until="load")
            print(f"  again, another page, cold cache: {(time.perf_counter() - t0) * 1000:.0f} ms")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
