"""``govrpc services|providers|consumers`` and ``Admin`` on the zookeeper, file and memory registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import govrpc
from govrpc.cli import main
from tests.integration.services import Echo
from tests.integration.zk.test_zookeeper_sessions import ROOT

pytestmark = pytest.mark.zookeeper


@pytest.fixture(params=["zookeeper", "file", "memory"])
def registry_address(request: Any, file_registry: str, memory_registry: str) -> str:
    if request.param == "zookeeper":  # only this variant needs a ZooKeeper server
        return request.getfixturevalue("zk_url")()
    return file_registry if request.param == "file" else memory_registry


def test_listing_commands_on_every_registry(registry_address: str, start_server: Any, client_factory: Any,
                                            capsys: Any) -> None:
    server = start_server(registry_address, Echo("p1"), application="echo-app", weight=7)
    client = client_factory(registry_address, application="web")
    assert client.proxy("test.Echo", timeout=3.0).whoami() == "p1"

    with govrpc.Admin(registry_address) as admin:
        assert admin.services() == ["test.Echo"]
        assert admin.providers("test.Echo") == server.urls
        assert [c.params["application"] for c in admin.consumers("test.Echo")] == ["web"]
        admin.put_rule("test.Echo", "configurators", "w", "weight=5")
        assert admin.rules("test.Echo", "configurators") == {"w": "weight=5"}
        admin.delete_rule("test.Echo", "configurators", "w")
        assert admin.rules("test.Echo", "configurators") == {}

    assert main(["services", "--registry", registry_address]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["SERVICE", "PROVIDERS", "CONSUMERS"]
    assert out[1].split() == ["test.Echo", "1", "1"]

    assert main(["providers", "test.Echo", "--registry", registry_address]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["ADDRESS", "VERSION", "GROUP", "APPLICATION"]
    assert table[1].startswith(f"127.0.0.1:{server.port}") and "echo-app" in table[1] and " 7 " in table[1]

    assert main(["providers", "test.Echo", "--json", "--registry", registry_address]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["url"] for r in records] == [str(server.urls[0])]
    assert records[0]["params"]["weight"] == "7" and records[0]["address"] == f"127.0.0.1:{server.port}"

    assert main(["consumers", "test.Echo", "--json", "--registry", registry_address]) == 0
    consumers = json.loads(capsys.readouterr().out)
    assert [c["params"]["application"] for c in consumers] == ["web"]
    assert main(["consumers", "test.Echo", "--registry", registry_address]) == 0
    assert "web" in capsys.readouterr().out

    assert main(["providers", "no.Such", "--registry", registry_address]) == 0
    assert "no.Such has no providers" in capsys.readouterr().out


def test_command_in_its_own_process_reads_zookeeper_from_the_environment(zk_url: Any, start_server: Any) -> None:
    address = zk_url()
    server = start_server(address, Echo("p1"))
    env = dict(os.environ, GOVRPC_REGISTRY=address,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "govrpc.cli", "providers", "test.Echo", "--json"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert [r["url"] for r in json.loads(done.stdout)] == [str(server.urls[0])]


def test_command_with_a_bad_registry_address_says_what_is_wrong(capsys: Any) -> None:
    assert main(["services", "--registry", "zookeeper://127.0.0.1:2181/x?bogus=1"]) == 2
    assert "unknown parameter bogus" in capsys.readouterr().err
