"""Server lifecycle edges: SIGTERM with a handler past its deadline, a start that fails half-way."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import govrpc
from govrpc.registry import acquire_registry, release_registry
from govrpc.registry.memory import MemoryRegistry
from govrpc.rpc.inprocess import find_local
from govrpc.rpc.server import STOP_BOUND
from govrpc.server import ServerState
from govrpc.url import URL
from tests.helpers import wait_until
from tests.integration.services import Echo

ROOT = Path(__file__).resolve().parents[2]
GRACE = 1.0
BLOCK = 120.0  # how long the stuck method would run: far past any bound the test waits for


@contextlib.contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """A Python process run from the repository root, killed (by its PID) if a test leaves it running."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def _registered(registry: str, service: str) -> list[URL]:
    instance = acquire_registry(registry)
    try:
        return instance.lookup(service)
    finally:
        release_registry(instance)


def _catches_sigterm(pid: int) -> bool:
    """Has process ``pid`` installed its SIGTERM handler yet? (Linux: the caught-signals mask in /proc)"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize(("mode", "in_flight"), [("serve", False), ("handler", False), ("serve", True)])
def test_sigterm_ends_a_provider_whose_method_outlived_its_deadline(tmp_path: Path, mode: str,
                                                                     in_flight: bool) -> None:
    """SIGTERM means deregister, drain, stop, exit: within the grace plus STOP_BOUND, stuck method or not.

    ``in_flight``: the stuck call's own deadline is still far off at SIGTERM; it is cancelled
    after the grace instead of holding the process.
    """
    registry = f"file://{tmp_path}/registry"
    with _process("-m", "tests.integration.stuck_provider", registry, str(GRACE), mode) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("serving"), proc.stderr.read() if proc.stderr else ""
        with govrpc.Client(registry, local_first=False) as client:
            if in_flight:
                stuck = client.proxy("test.Stuck", timeout=BLOCK / 2, retries=0)
                pending = stuck.block.future(BLOCK)
                wait_until(stuck.blocked, what="the provider to be in the stuck method")
            else:
                with pytest.raises(govrpc.CallTimeoutError):
                    client.proxy("test.Stuck", timeout=0.5, retries=0).block(BLOCK)  # its thread goes on
            wait_until(lambda: _catches_sigterm(proc.pid), what="the provider's SIGTERM handler")
            os.kill(proc.pid, signal.SIGTERM)
            try:
                # a bounded wait: before the fix the process lived until the method returned (BLOCK s)
                code = proc.wait(timeout=GRACE + STOP_BOUND + 10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the provider did not exit within {GRACE + STOP_BOUND + 10} s of SIGTERM")
            out, err = proc.communicate(timeout=5)
            assert code == 0, err
            if in_flight:
                with pytest.raises(govrpc.RpcError):  # cancelled at the end of the grace, not left hanging
                    pending.result(timeout=10)
            assert "stopped" in out
            assert _registered(registry, "test.Stuck") == []  # it deregistered on the way out


def test_serve_returns_when_stopped_elsewhere_and_restores_the_handlers(memory_registry) -> None:
    before = signal.getsignal(signal.SIGTERM)
    server = govrpc.Server(memory_registry).add(Echo())
    server.start()
    stopper = threading.Timer(0.3, server.stop, kwargs={"grace": 0})
    stopper.start()
    server.serve(grace=0.5)
    stopper.join(5)
    assert server.state is ServerState.STOPPED
    assert signal.getsignal(signal.SIGTERM) is before


def test_serve_refuses_a_bad_grace_and_other_threads(memory_registry) -> None:
    server = govrpc.Server(memory_registry)
    for grace in (-1, float("nan"), True, "5"):
        with pytest.raises(govrpc.ConfigurationError, match="grace"):
            server.serve(grace=grace)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(5)
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert server.state is ServerState.NEW  # nothing started


@govrpc.service("test.Refused")
class Refused:
    def anything(self) -> None:
        pass


class RefusingRegistry(MemoryRegistry):
    """A memory registry that refuses to register one service (as an ACL or quota would)."""

    def register(self, url: URL) -> None:
        if url.path == "test.Refused":
            raise govrpc.RegistryError(f"registration of {url.path} refused")
        super().register(url)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_failed_start_leaves_nothing_bound_registered_or_started(request: Any) -> None:
    registry = RefusingRegistry(MemoryRegistry.parse_address(f"memory://refusing-{request.node.name}"))
    server = govrpc.Server(registry).add(Echo()).add(Refused())
    with pytest.raises(govrpc.RegistryError, match="refused"):
        server.start()
    port = server.port
    assert port > 0
    assert server.state is ServerState.STOPPED
    assert registry.lookup("test.Echo") == []  # registered before the refusal, deregistered after it
    assert _bindable(port)  # the gRPC server let go of its port
    for service in ("test.Echo", "test.Refused"):
        assert find_local(URL("grpc", "127.0.0.1", port, service)) is None  # nor serves in-process
    server.stop()  # harmless
    assert server.state is ServerState.STOPPED
    with pytest.raises(govrpc.ConfigurationError, match="stopped"):
        server.start()
    with pytest.raises(govrpc.ConfigurationError, match="stopped"):
        server.add(Echo("again"))


def test_a_port_in_use_fails_start_cleanly(memory_registry, start_server) -> None:
    taken = start_server(memory_registry, Echo()).port
    server = govrpc.Server(memory_registry, port=taken).add(Echo("second"))
    with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{taken}"):
        server.start()
    assert server.state is ServerState.STOPPED
    server.stop()
    assert [url.port for url in _registered(memory_registry, "test.Echo")] == [taken]  # only the first server's


def test_the_example_provider_deregisters_and_exits_on_sigterm(tmp_path: Path) -> None:
    registry = f"file://{tmp_path}/registry"
    with _process(str(ROOT / "examples" / "provider.py"), registry, "p1") as proc:
        assert proc.stdout is not None and "serving demo.Greeter" in proc.stdout.readline()
        wait_until(lambda: _catches_sigterm(proc.pid), what="the provider's SIGTERM handler")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5 + STOP_BOUND + 10)  # its grace is 5 s
        err = proc.communicate(timeout=5)[1]
        assert code == 0, err
        assert _registered(registry, "demo.Greeter") == []
