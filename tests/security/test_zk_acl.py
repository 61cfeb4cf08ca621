"""ZooKeeper digest ACLs end to end: a second process without credentials reads, and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.services import Echo

pytestmark = pytest.mark.zookeeper

ANONYMOUS = textwrap.dedent("""
    import json, sys
    import govrpc
    from tests.integration.services import Echo

    address = sys.argv[1]
    out = {}
    with govrpc.Client(address, local_first=False, timeout=3.0) as client:
        out["call"] = client.proxy("test.Echo").echo("read is allowed")
    server = govrpc.Server(address).add(Echo("intruder"))
    try:
        server.start()
        out["register"] = "registered"
    except govrpc.RegistryError as exc:
        out["register"] = type(exc).__name__ + ": " + str(exc)
    admin = govrpc.Admin(address)
    for name, action in (("rule", lambda: admin.set_override("test.Echo", "hijack", "weight = 1")),
                         ("route", lambda: admin.add_route("test.Echo", "hijack", "=> false")),
                         ("delete", lambda: admin.delete_rule("test.Echo", "configurators", "weights"))):
        try:
            action()
            out[name] = "written"
        except govrpc.RegistryError as exc:
            out[name] = type(exc).__name__ + ": " + str(exc)
    admin.close()
    print(json.dumps(out))
""")


def test_an_unauthenticated_process_reads_but_cannot_register_or_change_rules(
        zk_url: Any, start_server: Any) -> None:
    secured = zk_url(auth="ops:s3cret-pw")
    server = start_server(secured, Echo("p1"))
    import govrpc

    with govrpc.Admin(secured) as admin:
        admin.set_override("test.Echo", "weights", "weight = 50")
    anonymous = zk_url()
    done = subprocess.run([sys.executable, "-c", ANONYMOUS, anonymous], capture_output=True, text=True,
                          timeout=60, cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["call"] == "read is allowed"
    for action in ("register", "rule", "route", "delete"):
        assert out[action].startswith("AccessDenied") and "not allowed" in out[action], out  # a RegistryError
    assert "s3cret-pw" not in done.stdout + done.stderr
    with govrpc.Admin(secured) as admin:
        assert admin.rules("test.Echo", "configurators") == {"weights": "weight = 50"}
        assert admin.routes("test.Echo") == {}
        assert admin.providers("test.Echo") == server.urls
