"""dumps+loads per value: govrpc's serializers against the bare library calls govrpc made before issue 9.

"before" is exactly what the serializers did until then: ``msgpack.packb(v, use_bin_type=True)``
with ``msgpack.unpackb(raw=False, strict_map_key=False)``, and ``json.dumps(v, separators=(",", ":"),
ensure_ascii=False)`` with ``json.loads``. Rounds alternate, best of each is printed (ns).

    python benchmarks/serialization.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import timeit
from typing import Any, Callable

import msgpack

from govrpc.rpc.serialization import JsonSerializer, MsgpackSerializer

CALL: tuple[tuple[Any, ...], dict[str, Any]] = (("ann",), {})
RESULT = {"id": 7, "name": "ann", "tags": ["a", "b"], "score": 1.5}


def before_msgpack(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False, strict_map_key=False)


def before_json(value: Any) -> Any:
    return json.loads(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, choices=range(1, 51), metavar="1..50")
    rounds = parser.parse_args().rounds
    packer, text = MsgpackSerializer(), JsonSerializer()
    cases: list[tuple[str, int, Callable[[], Any]]] = [
        ("msgpack call before", 100_000, lambda: before_msgpack(CALL)),
        ("msgpack call after (dumps_call)", 100_000, lambda: packer.loads(packer.dumps_call(*CALL))),
        ("msgpack result dict before", 100_000, lambda: before_msgpack(RESULT)),
        ("msgpack result dict after", 100_000, lambda: packer.loads(packer.dumps(RESULT))),
        ("msgpack tuple (1, 2) after", 50_000, lambda: packer.loads(packer.dumps((1, 2)))),
        ("msgpack aware datetime after", 50_000,
         lambda: packer.loads(packer.dumps(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))),
        ("json call before", 30_000, lambda: before_json(CALL)),
        ("json call after (dumps_call)", 30_000, lambda: text.loads(text.dumps_call(*CALL))),
        ("json result dict before", 30_000, lambda: before_json(RESULT)),
        ("json result dict after", 30_000, lambda: text.loads(text.dumps(RESULT))),
    ]
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(rounds):
        for name, number, run in cases:
            best[name] = min(best[name], timeit.timeit(run, number=number) / number * 1e9)
    for name, _, _ in cases:
        print(f"{name:36s} {best[name]:8.0f} ns")


if __name__ == "__main__":
    main()
