"""TLS and token authentication on the asyncio twins, and across sync and asyncio sides.

Certificates are the TLS tests' own (made at test time); each test runs one event loop
bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any, Awaitable, Callable

import grpc
import pytest

import govrpc
from govrpc.context import current_attachments
from govrpc.security import TOKEN_KEY
from tests.integration.services import Echo
from tests.security.test_tls import _server_tls, pki  # noqa: F401 - the module's certificates

SECRET = "aio-s3cret-7c1d"


def run(make: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    """Run ``make()`` on a fresh event loop; no test waits longer than ``seconds``."""
    async def bounded() -> Any:
        return await asyncio.wait_for(make(), seconds)
    return asyncio.run(bounded())


@govrpc.service("aio.SecureEcho")
class AsyncEcho:
    """An ``async def`` provider counting the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.attachments: list[dict[str, str]] = []

    async def echo(self, value: Any) -> Any:
        self.calls += 1
        self.attachments.append(dict(current_attachments() or {}))
        return value


async def serve(registry: str, service: Any, **options: Any) -> govrpc.AsyncServer:
    server = govrpc.AsyncServer(registry, **options)
    await server.add(service)
    return await server.start()


def aclient(registry: str, **options: Any) -> govrpc.AsyncClient:
    options.setdefault("local_first", False)  # what crosses grpc.aio is under test
    return govrpc.AsyncClient(registry, **options)


def test_async_tls_server_is_called_by_a_client_trusting_its_ca_only(
        memory_registry: str, pki: dict[str, Any]) -> None:  # noqa: F811
    async def main() -> None:
        provider = AsyncEcho()
        server = await serve(memory_registry, provider, tls=_server_tls(pki))
        try:
            assert server.urls[0].params["tls"] == "true"
            async with aclient(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"])) as client:
                assert await client.proxy("aio.SecureEcho", timeout=5.0).echo("over tls") == "over tls"
            # the system roots do not trust the test CA: the handshake fails, no plaintext fallback
            async with aclient(memory_registry, tls=govrpc.TLS()) as untrusting:
                with pytest.raises(govrpc.ProviderUnavailableError):
                    await untrusting.proxy("aio.SecureEcho", retries=0, timeout=2.0).echo(1)
            # grpc's own credential objects work as well
            roots = pathlib.Path(pki["ca"]).read_bytes()
            async with aclient(memory_registry, credentials=grpc.ssl_channel_credentials(roots)) as client:
                assert await client.proxy("aio.SecureEcho", timeout=5.0).echo(2) == 2
            assert provider.calls == 2
        finally:
            await server.stop(grace=0)
    run(main)


def test_plaintext_async_client_refuses_a_tls_provider(memory_registry: str, pki: dict[str, Any]) -> None:  # noqa: F811
    async def main() -> None:
        provider = AsyncEcho()
        server = await serve(memory_registry, provider, tls=_server_tls(pki))
        try:
            async with aclient(memory_registry) as client:
                with pytest.raises(govrpc.RpcError, match="serves TLS only"):
                    await client.proxy("aio.SecureEcho", retries=0).echo(1)
            assert provider.calls == 0
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
        memory_registry: str, pki: dict[str, Any]) -> None:  # noqa: F811
    async def main() -> None:
        provider = AsyncEcho()
        server = await serve(memory_registry, provider, tls=_server_tls(pki, mutual=True))
        try:
            rogue_cert, rogue_key = pki["rogue_client"]
            for client_tls in (govrpc.TLS(ca_file=pki["ca"]),
                               govrpc.TLS(ca_file=pki["ca"], cert_file=rogue_cert, key_file=rogue_key)):
                async with aclient(memory_registry, tls=client_tls) as client:
                    with pytest.raises(govrpc.ProviderUnavailableError):
                        await client.proxy("aio.SecureEcho", retries=0, timeout=2.0).echo(1)
            assert provider.calls == 0
            cert, key = pki["client"]
            async with aclient(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"], cert_file=cert,
                                                                key_file=key)) as client:
                assert await client.proxy("aio.SecureEcho", timeout=5.0).echo(3) == 3
            assert provider.calls == 1
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_server_refuses_calls_without_the_token_before_the_method(
        memory_registry: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        provider = AsyncEcho()
        server = await serve(memory_registry, provider, token=SECRET)
        try:
            assert all(SECRET not in str(url) for url in server.urls)
            for token in (None, "wrong-token"):
                async with aclient(memory_registry, token=token) as client:
                    with pytest.raises(govrpc.UnauthenticatedError) as caught:
                        await client.proxy("aio.SecureEcho", retries=0).echo("x")
                    assert caught.value.code == "UNAUTHENTICATED"
                    assert SECRET not in str(caught.value)
                    if token:
                        assert token not in str(caught.value)
            assert provider.calls == 0  # the provider's code never ran
            async with aclient(memory_registry, token=SECRET) as client:
                assert await client.proxy("aio.SecureEcho").echo("x") == "x"
                client.rotate_token("next-token")
                with pytest.raises(govrpc.UnauthenticatedError):
                    await client.proxy("aio.SecureEcho", retries=0).echo("y")
                server.rotate_token(["next-token"])
                assert await client.proxy("aio.SecureEcho").echo("z") == "z"
            assert provider.calls == 2
            assert all(TOKEN_KEY not in seen for seen in provider.attachments)  # the method never sees it
        finally:
            await server.stop(grace=0)
    run(main)
    assert SECRET not in caplog.text and "next-token" not in caplog.text


def test_sync_client_calls_an_async_server_with_tls_and_token(
        memory_registry: str, client_factory: Any, pki: dict[str, Any]) -> None:  # noqa: F811
    async def main() -> None:
        provider = AsyncEcho()
        server = await serve(memory_registry, provider, tls=_server_tls(pki), token=SECRET)
        try:
            good = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]), token=SECRET)
            assert await asyncio.to_thread(good.proxy("aio.SecureEcho", timeout=5.0).echo, 5) == 5
            anonymous = client_factory(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]))
            with pytest.raises(govrpc.UnauthenticatedError):
                await asyncio.to_thread(anonymous.proxy("aio.SecureEcho", retries=0, timeout=5.0).echo, 6)
            plaintext = client_factory(memory_registry, token=SECRET)
            with pytest.raises(govrpc.RpcError, match="serves TLS only"):
                await asyncio.to_thread(plaintext.proxy("aio.SecureEcho", retries=0).echo, 7)
            assert provider.calls == 1
        finally:
            await server.stop(grace=0)
    run(main)


def test_async_client_calls_a_sync_server_with_tls_and_token(
        memory_registry: str, start_server: Any, pki: dict[str, Any]) -> None:  # noqa: F811
    echo = Echo()
    start_server(memory_registry, echo, tls=_server_tls(pki), token=SECRET)

    async def main() -> None:
        async with aclient(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]), token=SECRET) as client:
            assert await client.proxy("test.Echo", timeout=5.0).echo(8) == 8
        async with aclient(memory_registry, tls=govrpc.TLS(ca_file=pki["ca"]), token="wrong-token") as client:
            with pytest.raises(govrpc.UnauthenticatedError):
                await client.proxy("test.Echo", retries=0, timeout=5.0).echo(9)
        async with aclient(memory_registry, token=SECRET) as client:
            with pytest.raises(govrpc.RpcError, match="serves TLS only"):
                await client.proxy("test.Echo", retries=0).echo(10)
    run(main)
    assert echo.calls == 1


def test_async_client_in_process_calls_to_a_sync_server_are_checked_too(
        memory_registry: str, start_server: Any) -> None:
    echo = Echo()
    start_server(memory_registry, echo, token=SECRET)

    async def main() -> None:
        async with aclient(memory_registry, local_first=True) as anonymous:
            with pytest.raises(govrpc.UnauthenticatedError):
                await anonymous.proxy("test.Echo", retries=0).echo(1)
        async with aclient(memory_registry, local_first=True, token=SECRET) as client:
            assert await client.proxy("test.Echo").echo(2) == 2
    run(main)
    assert echo.calls == 1


def test_bad_security_settings_on_the_async_twins_are_clear_errors(pki: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(govrpc.ConfigurationError, match="cert_file and key_file"):
        govrpc.AsyncServer("memory://aio-tls-bad", tls=govrpc.TLS(ca_file=pki["ca"]))
    with pytest.raises(govrpc.ConfigurationError, match="not both"):
        govrpc.AsyncClient("memory://aio-tls-bad", tls=govrpc.TLS(), credentials=grpc.ssl_channel_credentials())
    with pytest.raises(govrpc.ConfigurationError, match="non-empty string"):
        govrpc.AsyncServer("memory://aio-tls-bad", token="")
    with pytest.raises(govrpc.ConfigurationError, match="without token="):
        govrpc.AsyncServer("memory://aio-tls-bad").rotate_token("t")
