"""The ZooKeeper client's own TLS (kazoo's ``use_ssl``) to a ZooKeeper serving a secureClientPort."""

from __future__ import annotations

import gc
import logging
import os
import pathlib
import warnings
from typing import Any, Iterator

import pytest

import govrpc
from tests.integration.services import Echo
from tests.security.certs import CertAuthority
from tests.zkharness import JAR_DIR, ZookeeperMissing, ZookeeperServer, free_port, zk_address

pytestmark = pytest.mark.zookeeper

NETTY = ("common", "buffer", "transport", "resolver", "codec", "handler", "transport-native-unix-common")


class TlsZookeeperServer(ZookeeperServer):
    """A standalone ZooKeeper with a TLS-only client port (Netty; PEM key and trust stores)."""

    def __init__(self, keystore: str, truststore: str, client_auth: str = "none") -> None:
        self.keystore, self.truststore, self.client_auth = keystore, truststore, client_auth
        self.secure_port = free_port()
        super().__init__()
        jars = [os.path.join(JAR_DIR, f"netty-{name}.jar") for name in NETTY]
        missing = [j for j in jars if not os.path.exists(j)]
        if missing:
            raise ZookeeperMissing(f"the Netty jars ZooKeeper's TLS needs are missing: {', '.join(missing)}")
        self.classpath += ":" + ":".join(jars)

    @property
    def secure_hosts(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def _write_config(self) -> None:
        super()._write_config()
        with open(os.path.join(self.dir, "zoo.cfg"), "a") as f:
            f.write("\n".join([
                f"secureClientPort={self.secure_port}", "secureClientPortAddress=127.0.0.1",
                "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                f"ssl.keyStore.location={self.keystore}", "ssl.keyStore.type=PEM",
                f"ssl.trustStore.location={self.truststore}", "ssl.trustStore.type=PEM",
                f"ssl.clientAuth={self.client_auth}", ""]))


@pytest.fixture(scope="module")
def tls_zookeeper(tmp_path_factory: Any) -> Iterator[tuple[TlsZookeeperServer, CertAuthority, pathlib.Path]]:
    directory = tmp_path_factory.mktemp("zk-tls")
    ca = CertAuthority(directory)
    cert, key = ca.issue("zookeeper")
    keystore = directory / "zookeeper-keystore.pem"
    keystore.write_text(pathlib.Path(key).read_text() + pathlib.Path(cert).read_text())
    try:
        server = TlsZookeeperServer(str(keystore), ca.ca_file, client_auth="want").start()
    except (ZookeeperMissing, RuntimeError, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"a TLS ZooKeeper is required under CI=true but cannot start: {exc}", pytrace=False)
        pytest.skip(f"TLS ZooKeeper not available: {exc}")
    yield server, ca, directory
    server.cleanup()


def test_registry_over_tls_registers_and_calls(tls_zookeeper: Any, tmp_path: Any) -> None:
    server, ca, directory = tls_zookeeper
    client_cert, client_key = ca.issue("govrpc-client", hosts=("client",), client=True)
    address = zk_address(server.secure_hosts, use_ssl="true", ca=ca.ca_file, certfile=client_cert,
                         keyfile=client_key, snapshot_dir=tmp_path)
    with govrpc.Server(address).add(Echo("over-tls")) as provider:
        with govrpc.Client(address, local_first=False) as client:
            assert client.proxy("test.Echo", timeout=3.0).whoami() == "over-tls"
            assert govrpc.Admin(client.registry).providers("test.Echo") == provider.urls


def test_tls_registry_refuses_an_untrusted_zookeeper_and_plaintext_is_refused_by_it(
        tls_zookeeper: Any, tmp_path: Any) -> None:
    server, _, directory = tls_zookeeper
    stranger = CertAuthority(directory, "stranger CA")
    untrusted = zk_address(server.secure_hosts, use_ssl="true", ca=stranger.ca_file, connect_timeout=2,
                           snapshot_dir=tmp_path)
    # kazoo leaves the socket of a failed TLS handshake to the garbage collector (handlers/utils.py
    # create_tcp_connection re-raises ssl.SSLError without closing it), and its log record's traceback
    # would keep it alive into the next test: no record, and collected here with its warning ignored
    kazoo_log = logging.getLogger("govrpc.registry.zookeeper.kazoo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        kazoo_log.disabled = True
        try:
            # a consumer with no snapshot to fall back on is refused: it never got a session
            with pytest.raises(govrpc.RegistryUnreachableError):
                govrpc.Client(untrusted)
            plaintext = zk_address(server.secure_hosts, connect_timeout=2, snapshot_dir=tmp_path)
            with pytest.raises(govrpc.RegistryUnreachableError):
                govrpc.Client(plaintext)
        finally:
            kazoo_log.disabled = False
        gc.collect()


def test_bad_tls_parameters_are_clear_errors(tmp_path: Any) -> None:
    with pytest.raises(govrpc.ConfigurationError, match="without use_ssl"):
        govrpc.Client(zk_address("127.0.0.1:1", ca="/etc/hostname"))
    with pytest.raises(govrpc.ConfigurationError, match="not a readable file"):
        govrpc.Client(zk_address("127.0.0.1:1", use_ssl="true", ca=str(tmp_path / "none.pem")))
    with pytest.raises(govrpc.ConfigurationError, match="both certfile and keyfile"):
        govrpc.Client(zk_address("127.0.0.1:1", use_ssl="true", certfile="/etc/hostname"))
    with pytest.raises(govrpc.ConfigurationError, match="true or false"):
        govrpc.Client(zk_address("127.0.0.1:1", use_ssl="yes"))
