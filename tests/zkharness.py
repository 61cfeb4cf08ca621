"""A real ZooKeeper for the tests: standalone servers and ensembles on 127.0.0.1.

Runs Debian's ``zookeeper`` package on the installed Java (the command of
/work/shared/BASELINE.md). Every server binds 127.0.0.1 on free ports, keeps
its data in a temporary directory and is stopped by its PID. Helpers expire
a client's session for real (a second client takes over the session and
closes it, so the server expires it) and drop a client's connection.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

__all__ = [
    "ZookeeperEnsemble",
    "ZookeeperMissing",
    "ZookeeperServer",
    "drop_connection",
    "expire_session",
    "free_port",
    "zookeeper_classpath",
]

JAR_DIR = "/usr/share/java"
_JARS = ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")
TICK_MS = 500  # sessions of 1..10 s (2..20 ticks): fast expiry tests
_LOG4J = """log4j.rootLogger=WARN, F
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File={log}
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=%d %p [%t] %c{{1}}: %m%n
"""


class ZookeeperMissing(RuntimeError):
    """Java or Debian's zookeeper jars are not installed."""


def zookeeper_classpath() -> str:
    """The jars the server needs; raises ``ZookeeperMissing`` naming what is absent."""
    if shutil.which("java") is None:
        raise ZookeeperMissing("no `java` on PATH (install Debian's zookeeper package: `make zookeeper`)")
    missing = [j for j in _JARS if not os.path.exists(os.path.join(JAR_DIR, j))]
    if "zookeeper.jar" in missing:
        raise ZookeeperMissing(f"{JAR_DIR}/zookeeper.jar is missing (install Debian's zookeeper package: "
                               "`make zookeeper`)")
    return ":".join(os.path.join(JAR_DIR, j) for j in _JARS if j not in missing)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def four_letter(port: int, word: str = "srvr", timeout: float = 1.0) -> str:
    """Send a four-letter command; "" if the server does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                data = s.recv(4096)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZookeeperServer:
    """One ZooKeeper server process (standalone, or member ``myid`` of an ensemble)."""

    def __init__(self, *, port: int | None = None, tick_ms: int = TICK_MS, base_dir: str | None = None,
                 myid: int = 0, peers: list[tuple[int, int, int]] | None = None) -> None:
        self.classpath = zookeeper_classpath()
        self.port = port or free_port()
        self.tick_ms = tick_ms
        self.myid = myid
        self.peers = peers or []  # (client port, quorum port, election port) of every member
        self.dir = base_dir or tempfile.mkdtemp(prefix="govrpc-zk-")
        self._own_dir = base_dir is None
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "zookeeper.log")

    def _write_config(self) -> None:
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={data}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,stat,cons",
            "maxClientCnxns=0",
            f"minSessionTimeout={2 * self.tick_ms}",
            f"maxSessionTimeout={40 * self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            "preAllocSize=1024",
            "snapCount=100000",
        ]
        if self.peers:
            with open(os.path.join(data, "myid"), "w") as f:
                f.write(str(self.myid))
            for n, (_, quorum, election) in enumerate(self.peers, 1):
                lines.append(f"server.{n}=127.0.0.1:{quorum}:{election}")
            lines.append("electionPortBindRetry=3")
        with open(os.path.join(self.dir, "zoo.cfg"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write(_LOG4J.format(log=self.log_path))

    def start(self, wait: float | None = 30.0) -> ZookeeperServer:
        """Start the process and (unless ``wait`` is None) wait until it serves clients."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Dzookeeper.admin.enableServer=false",
               "-cp", f"{self.dir}:{self.classpath}",
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", os.path.join(self.dir, "zoo.cfg")]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait is not None:
            try:
                self.wait_serving(wait)
            except BaseException:
                self.cleanup()  # no JVM or temp dir left behind a server that never answered
                raise
        return self

    def serving(self) -> bool:
        answer = four_letter(self.port)
        return "Mode:" in answer

    @property
    def mode(self) -> str:
        """"standalone", "leader", "follower" or "" (not serving)."""
        for line in four_letter(self.port).splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with {self.proc.returncode}; log: {self._tail()}")
            if self.serving():
                return
            time.sleep(0.05)
        raise RuntimeError(f"ZooKeeper on port {self.port} did not answer within {timeout} s; log: {self._tail()}")

    def _tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        if downtime:
            time.sleep(downtime)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class ZookeeperEnsemble:
    """``size`` servers on 127.0.0.1 forming one quorum."""

    def __init__(self, size: int = 3, tick_ms: int = TICK_MS) -> None:
        zookeeper_classpath()
        self.dir = tempfile.mkdtemp(prefix="govrpc-zk-ensemble-")
        peers = [(free_port(), free_port(), free_port()) for _ in range(size)]
        self.servers = []
        for n, (client_port, _, _) in enumerate(peers, 1):
            base = os.path.join(self.dir, f"zk{n}")
            os.makedirs(base)
            self.servers.append(ZookeeperServer(port=client_port, tick_ms=tick_ms, base_dir=base,
                                                myid=n, peers=peers))

    @property
    def hosts(self) -> str:
        return ",".join(s.hosts for s in self.servers)

    def start(self, timeout: float = 60.0) -> ZookeeperEnsemble:
        for server in self.servers:
            server.start(wait=None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.serving() for s in self.servers):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"ensemble {self.hosts} formed no quorum within {timeout} s")

    def leader(self) -> ZookeeperServer:
        for server in self.servers:
            if server.mode == "leader":
                return server
        raise RuntimeError(f"ensemble {self.hosts} has no leader")

    def cleanup(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def expire_session(client: Any, hosts: str, timeout: float = 10.0) -> None:
    """Make the server expire ``client``'s session (a kazoo ``KazooClient``).

    A second client joins the same session (same id and password) and closes
    it: the server ends the session, and ``client`` learns on its next
    contact that its session expired, as after a long partition.
    """
    from kazoo.client import KazooClient

    session_id, password = client.client_id
    twin = KazooClient(hosts=hosts, client_id=(session_id, password), timeout=client._session_timeout / 1000.0)
    try:
        twin.start(timeout=timeout)
    finally:
        twin.stop()
        twin.close()


def drop_connection(client: Any) -> None:
    """Break ``client``'s TCP connection; it reconnects and keeps its session (SUSPENDED, then CONNECTED)."""
    from kazoo.protocol.connection import _CONNECTION_DROP

    client._call(_CONNECTION_DROP, client.handler.async_result())


def unique_root() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# -- pytest fixtures (imported by tests/conftest.py) ------------------------------

import pytest  # noqa: E402 - the harness classes above are usable without pytest


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"ZooKeeper is required under CI=true but cannot start: {reason}", pytrace=False)
    pytest.skip(f"ZooKeeper not available: {reason}")


def start_server_or_skip(**options: Any) -> ZookeeperServer:
    try:
        return ZookeeperServer(**options).start()
    except (ZookeeperMissing, RuntimeError, OSError) as exc:
        _missing(str(exc))
        raise  # unreachable: _missing raises


@pytest.fixture(scope="session")
def zookeeper() -> Any:
    """One standalone ZooKeeper for the whole session (each test uses its own root path)."""
    server = start_server_or_skip()
    yield server
    server.cleanup()


@pytest.fixture
def zookeeper_private() -> Any:
    """A ZooKeeper of this test's own, for tests that stop, restart or wipe the server."""
    server = start_server_or_skip()
    yield server
    server.cleanup()


def zk_address(hosts: str, root: str | None = None, **params: Any) -> str:
    """``zookeeper://hosts/root?...`` with short timeouts suited to tests."""
    defaults = {"session_timeout": 2, "connect_timeout": 10, "operation_timeout": 3, "empty_protection": 0}
    defaults.update(params)
    query = "&".join(f"{k}={v}" for k, v in defaults.items() if v is not None)
    return f"zookeeper://{hosts}/{root or unique_root()}?{query}"


@pytest.fixture
def zk_url(zookeeper: ZookeeperServer, tmp_path: Any) -> Any:
    """``zk_url(**params)``: an address on the session server, in this test's own root path.

    Every call with the same params gives the same address (one shared registry per process);
    snapshots go to this test's temporary directory.
    """
    root = unique_root()

    def make(**params: Any) -> str:
        params.setdefault("snapshot_dir", tmp_path / "snapshots")
        return zk_address(zookeeper.hosts, root, **params)

    return make
