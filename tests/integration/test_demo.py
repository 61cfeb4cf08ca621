"""`govrpc demo`: the newcomer's first run must show balancing and a lossless stop."""

from __future__ import annotations

import subprocess
import sys

from govrpc.cli import main


def test_demo_spreads_calls_and_loses_none(capsys) -> None:
    assert main(["demo", "--calls", "900", "--threads", "4"]) == 0
    out = capsys.readouterr().out
    assert "failed calls: 0" in out
    for name in ("provider-1", "provider-2", "provider-3"):
        assert f"{name}:" in out
    assert "(0 after provider-3 stopped)" in out
    assert "result: OK" in out


def test_the_command_is_installed() -> None:
    done = subprocess.run([sys.executable, "-m", "govrpc.cli", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "demo" in done.stdout
