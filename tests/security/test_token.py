"""Token authentication: refused before the provider's code, never written where it could leak."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import govrpc
from govrpc.security import TOKEN_KEY
from tests.integration.services import Echo

SECRET = "s3cret-token-0f9a"


class RecordAttachments(govrpc.Filter):
    """A provider filter after the token check: what the rest of the chain sees."""

    side = "provider"

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def invoke(self, invoker: Any, invocation: Any) -> Any:
        self.seen.append(dict(invocation.attachments))
        return invoker.invoke(invocation)


def test_call_without_or_with_a_wrong_token_is_refused_before_the_method(
        memory_registry: str, start_server: Any, client_factory: Any, caplog: Any) -> None:
    echo = Echo()
    start_server(memory_registry, echo, token=SECRET)
    caplog.set_level(logging.DEBUG)
    for token in (None, "wrong-token"):
        client = client_factory(memory_registry, token=token)
        proxy = client.proxy("test.Echo", retries=0)
        with pytest.raises(govrpc.UnauthenticatedError) as caught:
            proxy.echo("x")
        assert caught.value.code == "UNAUTHENTICATED"
        assert SECRET not in str(caught.value)
        if token:
            assert token not in str(caught.value)
    assert echo.calls == 0  # the provider's code never ran
    good = client_factory(memory_registry, token=SECRET).proxy("test.Echo")
    assert good.echo("x") == "x"
    assert echo.calls == 1
    assert SECRET not in caplog.text


def test_token_stays_out_of_provider_urls_and_provider_attachments(
        memory_registry: str, start_server: Any, client_factory: Any) -> None:
    recorder = RecordAttachments()
    server = start_server(memory_registry, Echo(), token=SECRET, filters=[recorder])
    assert server.urls and all(SECRET not in str(url) for url in server.urls)
    client = client_factory(memory_registry, token=SECRET)
    proxy = client.proxy("test.Echo")
    with govrpc.attachments(trace="t-1"):
        assert proxy.echo(1) == 1
    assert all(SECRET not in str(u) for r in client._references.values() for u in r.directory.urls)
    assert len(recorder.seen) == 1 and recorder.seen[0]["trace"] == "t-1"  # the caller's own attachment arrives
    assert TOKEN_KEY not in recorder.seen[0] and SECRET not in str(recorder.seen[0])  # the token does not


def test_in_process_calls_are_checked_too(memory_registry: str, start_server: Any) -> None:
    echo = Echo()
    start_server(memory_registry, echo, token=SECRET)
    with govrpc.Client(memory_registry, local_first=True) as anonymous:
        with pytest.raises(govrpc.UnauthenticatedError):
            anonymous.proxy("test.Echo", retries=0).echo(1)
    with govrpc.Client(memory_registry, local_first=True, token=SECRET) as client:
        assert client.proxy("test.Echo").echo(1) == 1
    assert echo.calls == 1


def test_rotation_with_an_overlap_drops_no_call(memory_registry: str, start_server: Any,
                                                client_factory: Any) -> None:
    server = start_server(memory_registry, Echo(), token="old-token")
    old = client_factory(memory_registry, token="old-token").proxy("test.Echo")
    new = client_factory(memory_registry, token="new-token").proxy("test.Echo", retries=0)
    assert old.echo(1) == 1
    server.rotate_token(["old-token", "new-token"])  # overlap: both accepted
    assert old.echo(2) == 2 and new.echo(3) == 3
    server.rotate_token("new-token")
    assert new.echo(4) == 4
    with pytest.raises(govrpc.UnauthenticatedError):
        client_factory(memory_registry, token="old-token").proxy("test.Echo", retries=0).echo(5)


@pytest.mark.parametrize("bad", ["", " padded ", "tab\there", "é-not-ascii", 42, []])
def test_bad_tokens_are_refused_where_configured_without_echoing_them(bad: Any) -> None:
    with pytest.raises(govrpc.ConfigurationError) as caught:
        govrpc.Server("memory://bad-token", token=bad)
    if isinstance(bad, str) and bad:
        assert bad not in str(caught.value)
    if isinstance(bad, str):
        with pytest.raises(govrpc.ConfigurationError):
            govrpc.Client("memory://bad-token", token=bad)


def test_rotate_token_on_a_server_without_token_is_an_error() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="without token"):
        govrpc.Server("memory://no-token").rotate_token("x")
