"""The README's quickstart runs as written; the two-process example works on a file registry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quickstart_is_the_example_and_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None, "README.md has no python quickstart block"
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert block.group(1).strip() == example.strip()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["hello ann", "hello bob", "hello dee"]


def test_provider_and_consumer_processes(tmp_path: Path) -> None:
    registry = f"file://{tmp_path}/registry"
    providers = [subprocess.Popen([sys.executable, str(ROOT / "examples" / "provider.py"), registry, name],
                                  stdout=subprocess.PIPE, text=True) for name in ("p1", "p2")]
    try:
        for p in providers:
            assert p.stdout is not None and "serving demo.Greeter" in p.stdout.readline()
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "consumer.py"), registry, "40"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "from p1" in done.stdout and "from p2" in done.stdout
    finally:
        for p in providers:
            p.terminate()
            p.wait(timeout=15)
            assert p.stdout is not None
            p.stdout.close()
