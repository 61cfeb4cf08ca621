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


def test_demo_refuses_nonsense_counts(capsys) -> None:
    import pytest

    for argv in (["demo", "--calls", "0"], ["demo", "--threads", "-1"], ["demo", "--calls", "many"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be at least 3, not 0" in err and "must be at least 1, not -1" in err and "'many'" in err
