"""Token rotation through the registry, under load, on ZooKeeper: no call dropped, no token stored."""

from __future__ import annotations

from typing import Any

import pytest

import govrpc
from govrpc.registry.zookeeper import ZookeeperRegistry
from govrpc.security import token_digest
from tests.chaos.harness import Load
from tests.helpers import wait_until
from tests.integration.services import Echo

pytestmark = pytest.mark.zookeeper

OLD, NEW = "old-token-41c2", "new-token-77d9"


def _accepts(client_factory: Any, address: str, token: str) -> bool:
    probe = client_factory(address, token=token).proxy("test.Echo", retries=0, timeout=2.0)
    try:
        probe.echo("probe")
        return True
    except govrpc.UnauthenticatedError:
        return False


def _quietly(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except govrpc.UnauthenticatedError:
        return None


def test_rotation_through_the_registry_drops_no_call(zk_url: Any, client_factory: Any, figures: Any) -> None:
    address = zk_url()
    registries = [ZookeeperRegistry(ZookeeperRegistry.parse_address(address)) for _ in range(2)]
    servers = [govrpc.Server(r, token=OLD).add(Echo(f"p{i}")).start()
               for i, r in enumerate(registries)]
    admin = govrpc.Admin(address)
    try:
        client = client_factory(address, token=OLD)
        echo = client.proxy("test.Echo", retries=0)  # no retry to hide a refused call
        wait_until(lambda: len(client.reference("test.Echo", retries=0).directory.urls) == 2, what="providers")
        with Load(lambda w, n: echo.echo(n), threads=3, seconds=40) as load:
            load.wait_calls(100)
            admin.accept_tokens("test.Echo", [OLD, NEW])  # the overlap
            wait_until(lambda: all(_accepts(client_factory, f"{address}", NEW) for _ in range(6)),
                       what="providers accepting the new token")
            client.rotate_token(NEW)
            load.wait_calls(100)
            admin.accept_tokens("test.Echo", [NEW])
            wait_until(lambda: not any(_accepts(client_factory, address, OLD) for _ in range(6)),
                       what="providers refusing the old token")
            load.wait_calls(100)
            load.stop()
        figures(load, "token rotated through the registry under load")
        assert load.failed == 0, load.examples
        # what the registry holds: digests only, and no token in any provider URL
        stored = admin.rules("test.Echo", "configurators")
        assert stored == {"token": f"token.sha256 = {token_digest(NEW)}\n"}
        for url in admin.providers("test.Echo"):
            assert OLD not in str(url) and NEW not in str(url)
        # the override gone, the servers' own token counts again
        admin.delete_rule("test.Echo", "configurators", "token")
        wait_until(lambda: _accepts(client_factory, address, OLD), what="the servers' own token again")
    finally:
        admin.close()
        for server in servers:
            server.stop(grace=0.5)
        for registry in registries:
            registry.close()


def test_bad_token_rules_are_refused_where_written(zk_url: Any) -> None:
    with govrpc.Admin(zk_url()) as admin:
        with pytest.raises(govrpc.RuleError, match="SHA-256"):
            admin.set_override("test.Echo", "token", "token.sha256 = not-a-digest")
        with pytest.raises(govrpc.ConfigurationError):
            admin.accept_tokens("test.Echo", ["has space "])
        assert admin.rules("test.Echo", "configurators") == {}


def test_a_token_filter_by_name_accepts_only_what_the_registry_lists(
        memory_registry: str, start_server: Any, client_factory: Any) -> None:
    start_server(memory_registry, Echo(), filters=["token"])
    client = client_factory(memory_registry, token=NEW)
    with pytest.raises(govrpc.UnauthenticatedError):
        client.proxy("test.Echo", retries=0).echo(1)
    with govrpc.Admin(memory_registry) as admin:
        admin.accept_tokens("test.Echo", [NEW])
    wait_until(lambda: _accepts(client_factory, memory_registry, NEW), what="the registry's token")


def test_cli_accepts_tokens_from_stdin_and_a_running_server_follows(
        file_registry: str, start_server: Any, client_factory: Any) -> None:
    import subprocess
    import sys

    server = start_server(file_registry, Echo(), token=OLD)
    other = start_server(file_registry, Echo(), token=OLD)  # not named: keeps its own token
    done = subprocess.run([sys.executable, "-m", "govrpc.cli", "tokens", "accept", "test.Echo", "--address",
                           server.urls[0].address, "--registry", file_registry], input=f"{OLD}\n{NEW}\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "accept 2 token(s)" in done.stdout and NEW not in done.stdout + done.stderr
    direct = client_factory(file_registry, token=NEW)
    named = direct.proxy("test.Echo", url=str(server.urls[0]), retries=0)
    wait_until(lambda: _quietly(named.echo, 1) == 1, what="the CLI's tokens reaching the named server")
    with pytest.raises(govrpc.UnauthenticatedError):  # the server the rule does not name keeps its own token
        direct.proxy("test.Echo", url=str(other.urls[0]), retries=0).echo(1)
    empty = subprocess.run([sys.executable, "-m", "govrpc.cli", "tokens", "accept", "test.Echo", "--registry",
                            file_registry], input="", capture_output=True, text=True, timeout=60)
    assert empty.returncode != 0 and "none came" in empty.stderr
