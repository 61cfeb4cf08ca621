"""memory:// and file:// registries: the Registry contract, and file across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import govrpc
from govrpc.registry import acquire_registry, release_registry
from govrpc.url import URL
from tests.helpers import wait_until


@pytest.fixture(params=["memory", "file"])
def registry(request, memory_registry, file_registry):
    address = memory_registry if request.param == "memory" else file_registry
    reg = acquire_registry(address)
    yield reg
    release_registry(reg)


def test_register_subscribe_unregister(registry) -> None:
    pushes: list[list[URL]] = []
    lock = threading.Lock()

    def listener(urls: list[URL]) -> None:
        with lock:
            pushes.append(urls)

    a = URL.parse("grpc://127.0.0.1:1001/reg.Svc?version=1")
    b = URL.parse("grpc://127.0.0.1:1002/reg.Svc?version=1")
    consumer = URL.parse("consumer://127.0.0.1/reg.Svc?application=web")
    registry.subscribe("reg.Svc", listener)
    assert pushes[0] == []
    registry.register(a)
    registry.register(b)
    registry.register(consumer)
    assert wait_until(lambda: pushes and set(pushes[-1]) == {a, b})
    assert set(registry.lookup("reg.Svc")) == {a, b}
    assert registry.lookup("reg.Svc", "consumers") == [consumer]
    assert "reg.Svc" in registry.services()
    registry.unregister(a)
    assert wait_until(lambda: pushes[-1] == [b])
    registry.unsubscribe("reg.Svc", listener)
    count = len(pushes)
    registry.unregister(b)
    time.sleep(0.3)
    assert len(pushes) == count
    registry.unregister(b)  # unknown: ignored


def test_rules_are_stored_and_watched(registry) -> None:
    seen: list[dict[str, str]] = []
    registry.watch_rules("reg.Svc", "routers", seen.append)
    assert seen[-1] == {}
    registry.put_rule("reg.Svc", "routers", "r1", "host = 1.2.3.4 => false")
    assert wait_until(lambda: seen[-1] == {"r1": "host = 1.2.3.4 => false"})
    assert registry.rules("reg.Svc", "routers") == {"r1": "host = 1.2.3.4 => false"}
    registry.delete_rule("reg.Svc", "routers", "r1")
    assert wait_until(lambda: seen[-1] == {})
    with pytest.raises(govrpc.ConfigurationError, match="category"):
        registry.put_rule("reg.Svc", "providers", "x", "y")
    with pytest.raises(govrpc.ConfigurationError, match="rule name"):
        registry.put_rule("reg.Svc", "routers", "../escape", "y")


def test_a_failing_listener_does_not_stop_the_others(registry) -> None:
    good: list[list[URL]] = []

    def bad(urls: list[URL]) -> None:
        raise RuntimeError("listener bug")

    registry.subscribe("reg.Bad", bad)
    registry.subscribe("reg.Bad", good.append)
    url = URL.parse("grpc://127.0.0.1:1003/reg.Bad")
    registry.register(url)
    assert wait_until(lambda: good and good[-1] == [url])


CHILD = textwrap.dedent("""
    import sys, time
    from govrpc.registry import acquire_registry
    from govrpc.url import URL
    reg = acquire_registry({registry!r})
    reg.register(URL.parse("grpc://127.0.0.1:{port}/reg.Multi"))
    print("ready", flush=True)
    time.sleep(60)
""")


def test_file_registry_across_processes_and_crashed_providers(file_registry) -> None:
    registry = acquire_registry(file_registry)
    seen: list[list[URL]] = []
    registry.subscribe("reg.Multi", seen.append)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(registry=file_registry, port=4242)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        started = time.monotonic()
        assert wait_until(lambda: seen and [u.port for u in seen[-1]] == [4242], timeout=2)
        assert time.monotonic() - started < 0.5 + 0.5  # half a second, plus slack for a busy machine
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert wait_until(lambda: seen[-1] == [], timeout=2)  # the dead process's entry is removed
        assert registry.lookup("reg.Multi") == []
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
        release_registry(registry)


def test_file_registry_skips_garbage_and_writes_atomically(file_registry, tmp_path: Path) -> None:
    registry = acquire_registry(file_registry)
    try:
        good = URL.parse("grpc://127.0.0.1:5000/reg.G")
        registry.register(good)
        directory = tmp_path / "registry" / "reg.G" / "providers"
        (directory / "garbage").write_text("{not json")
        (directory / "wrong-service").write_text('{"url": "grpc://127.0.0.1:5001/other.Svc", "pid": 0}')
        assert registry.lookup("reg.G") == [good]
        assert not [p for p in os.listdir(directory) if p.startswith(".tmp")]
    finally:
        release_registry(registry)


def test_memory_registries_are_shared_per_url(memory_registry) -> None:
    a = acquire_registry(memory_registry)
    b = acquire_registry(memory_registry)
    other = acquire_registry(memory_registry + "-other")
    assert a is b and a is not other
    for r in (a, b, other):
        release_registry(r)


@pytest.mark.parametrize("poll", ["0", "-1", "nan", "inf"])
def test_file_registry_refuses_a_poll_interval_that_would_spin_or_never_poll(tmp_path: Path, poll: str) -> None:
    with pytest.raises(govrpc.ConfigurationError, match=f"poll={poll!r}"):
        acquire_registry(f"file://{tmp_path}/reg?poll={poll}")


def test_file_registry_skips_entries_without_host_port_or_provider_scheme(
        file_registry, tmp_path: Path, caplog) -> None:
    registry = acquire_registry(file_registry)
    try:
        good = URL.parse("grpc://127.0.0.1:5000/reg.H")
        registry.register(good)
        seen: list[list[URL]] = []
        registry.subscribe("reg.H", seen.append)
        directory = tmp_path / "registry" / "reg.H" / "providers"
        caplog.set_level("WARNING", logger="govrpc.registry.file")
        bad = {"no-host": "grpc:///reg.H", "no-port": "grpc://127.0.0.1/reg.H",
               "foreign": "http://127.0.0.1:80/reg.H"}
        for name, text in bad.items():
            (directory / name).write_text(json.dumps({"url": text, "pid": 0}))
        assert registry.lookup("reg.H") == [good]
        other = URL.parse("grpc://127.0.0.1:5001/reg.H")
        registry.register(other)  # more reads: the bad entries are not reported again
        assert wait_until(lambda: seen[-1] == [good, other])
        assert registry.lookup("reg.H") == [good, other]
        warnings = [r.getMessage() for r in caplog.records if "skipping node" in r.getMessage()]
        for name in bad:
            assert len([w for w in warnings if w.split("skipping node ")[1].startswith(str(directory / name))]) == 1
    finally:
        release_registry(registry)


def test_file_rule_overwritten_with_bytes_that_are_not_utf8_keeps_its_last_good_version(
        file_registry, tmp_path: Path, caplog) -> None:
    registry = acquire_registry(file_registry)
    try:
        seen: list[dict[str, str]] = []
        registry.watch_rules("reg.R", "configurators", seen.append)
        registry.put_rule("reg.R", "configurators", "off", "disabled = true")
        assert seen[-1] == {"off": "disabled = true"}
        caplog.set_level("WARNING", logger="govrpc.registry.file")
        (tmp_path / "registry" / "reg.R" / "configurators" / "off").write_bytes(b"\xff\xfedisabled")
        registry.put_rule("reg.R", "configurators", "other", "weight = 5")  # forces a read now
        assert wait_until(lambda: seen[-1].get("other") == "weight = 5")
        time.sleep(0.3)  # a few polls: still in force
        assert seen[-1]["off"] == "disabled = true"
        assert registry.rules("reg.R", "configurators")["off"] == "disabled = true"
        assert any("keeping its last good version" in r.getMessage() for r in caplog.records)
        registry.put_rule("reg.R", "configurators", "off", "disabled = false")  # a good version replaces it
        assert wait_until(lambda: seen[-1]["off"] == "disabled = false")
    finally:
        release_registry(registry)


def test_warnings_about_garbage_keep_a_bounded_record(file_registry, tmp_path: Path, monkeypatch) -> None:
    from govrpc.registry import base

    monkeypatch.setattr(base, "WARNED_KEPT", 50)
    registry = acquire_registry(file_registry)
    try:
        registry.register(URL.parse("grpc://127.0.0.1:5000/reg.G"))
        directory = tmp_path / "registry" / "reg.G" / "providers"
        for i in range(300):  # hostile input: many distinct garbage names
            (directory / f"junk-{i}").write_text(json.dumps({"url": "grpc:///reg.G", "pid": 0}))
        assert registry.lookup("reg.G") == [URL.parse("grpc://127.0.0.1:5000/reg.G")]
        assert 0 < len(registry._warned) <= 50
    finally:
        release_registry(registry)
