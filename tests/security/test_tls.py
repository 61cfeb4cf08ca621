"""TLS and mutual TLS on the transport, with certificates made at test time."""

from __future__ import annotations

import pathlib
from typing import Any

import grpc
import pytest

import govrpc
from tests.integration.services import Echo
from tests.security.certs import CertAuthority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(directory)
    other = CertAuthority(directory, "untrusted CA")
    return {
        "ca": ca.ca_file,
        "server": ca.issue("server"),
        "client": ca.issue("client", hosts=("client",), client=True),
        "wrong_name": ca.issue("elsewhere", hosts=("elsewhere.example",)),
        "rogue_client": other.issue("rogue", hosts=("rogue",), client=True),
    }


def _server_tls(pki: dict[str, Any], mutual: bool = False, which: str = "server") -> govrpc.TLS:
    cert, key = pki[which]
    return govrpc.TLS(cert_file=cert, key_file=key, ca_file=pki["ca"] if mutual else None)


def test_tls_server_publishes_tls_and_a_trusting_client_calls_it(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    server = start_server(memory_registry, Echo(), tls=_server_tls(pki))
    assert server.urls[0].params["tls"] == "true"
    client = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]))
    assert client.proxy("test.Echo").echo("over tls") == "over tls"


def test_grpc_credential_objects_work_on_both_sides(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    cert, key = (pathlib.Path(p).read_bytes() for p in pki["server"])
    start_server(memory_registry, Echo(), credentials=grpc.ssl_server_credentials([(key, cert)]))
    roots = pathlib.Path(pki["ca"]).read_bytes()
    client = client_factory(memory_registry, credentials=grpc.ssl_channel_credentials(roots))
    assert client.proxy("test.Echo").echo(7) == 7


def test_plaintext_client_refuses_to_dial_a_tls_provider(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    echo = Echo()
    start_server(memory_registry, echo, tls=_server_tls(pki))
    proxy = client_factory(memory_registry).proxy("test.Echo", retries=0)
    with pytest.raises(govrpc.RpcError, match="serves TLS only"):
        proxy.echo(1)
    assert echo.calls == 0


def test_client_without_the_trusted_ca_is_refused(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    start_server(memory_registry, Echo(), tls=_server_tls(pki))
    # the system roots do not trust the test CA: the handshake fails, nothing falls back to plaintext
    proxy = client_factory(memory_registry, tls=govrpc.TLS()).proxy("test.Echo", retries=0, timeout=2.0)
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.echo(1)


def test_server_with_the_wrong_name_is_refused(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    start_server(memory_registry, Echo(), tls=_server_tls(pki, which="wrong_name"))
    proxy = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"])).proxy(
        "test.Echo", retries=0, timeout=2.0)
    with pytest.raises(govrpc.ProviderUnavailableError):
        proxy.echo(1)
    # the name the certificate does carry is accepted when the client expects it
    named = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"], server_name="elsewhere.example"))
    assert named.proxy("test.Echo").echo(2) == 2


def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
        memory_registry: str, start_server: Any, client_factory: Any, pki: dict[str, Any]) -> None:
    echo = Echo()
    start_server(memory_registry, echo, tls=_server_tls(pki, mutual=True))
    for client_tls in (govrpc.TLS(ca_file=pki["ca"]),
                       govrpc.TLS(ca_file=pki["ca"], cert_file=pki["rogue_client"][0],
                                  key_file=pki["rogue_client"][1])):
        proxy = client_factory(memory_registry, tls=client_tls).proxy("test.Echo", retries=0, timeout=2.0)
        with pytest.raises(govrpc.ProviderUnavailableError):
            proxy.echo(1)
    assert echo.calls == 0
    cert, key = pki["client"]
    good = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"], cert_file=cert, key_file=key))
    assert good.proxy("test.Echo").echo(3) == 3


def test_tls_and_token_together(memory_registry: str, start_server: Any, client_factory: Any,
                                pki: dict[str, Any]) -> None:
    start_server(memory_registry, Echo(), tls=_server_tls(pki), token="tok-1")
    client = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]), token="tok-1")
    assert client.proxy("test.Echo").echo(4) == 4


def test_bad_tls_settings_are_clear_errors(tmp_path: Any, pki: dict[str, Any]) -> None:
    with pytest.raises(govrpc.ConfigurationError, match="cannot be read"):
        govrpc.Server("memory://tls-bad", tls=govrpc.TLS(cert_file=str(tmp_path / "none.crt"),
                                                         key_file=str(tmp_path / "none.key")))
    with pytest.raises(govrpc.ConfigurationError, match="cert_file and key_file"):
        govrpc.Server("memory://tls-bad", tls=govrpc.TLS(ca_file=pki["ca"]))
    with pytest.raises(govrpc.ConfigurationError, match="both cert_file and key_file"):
        govrpc.Client("memory://tls-bad", tls=govrpc.TLS(cert_file=pki["client"][0]))
    with pytest.raises(govrpc.ConfigurationError, match="not both"):
        govrpc.Client("memory://tls-bad", tls=govrpc.TLS(), credentials=grpc.ssl_channel_credentials())
    with pytest.raises(govrpc.ConfigurationError, match="ChannelCredentials"):
        govrpc.Client("memory://tls-bad", credentials="yes please")
