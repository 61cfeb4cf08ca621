"""The ``govrpc`` command.

Each sub-command is one ``_cmd_*`` function registered in ``build_parser``;
commands that read or change a registry take ``--registry URL`` (default: the
``GOVRPC_REGISTRY`` environment variable, else ``memory://``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from govrpc.exceptions import GovRpcError

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=os.environ.get("GOVRPC_REGISTRY", "memory://"),
                        help="registry URL (default: $GOVRPC_REGISTRY or memory://)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from govrpc.demo import run_demo

    return run_demo(calls=args.calls, threads=args.threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govrpc", description="Governed RPC on gRPC.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="three providers, one consumer, one provider stopped mid-traffic")
    demo.add_argument("--calls", type=int, default=3000, help="calls to make (default 3000)")
    demo.add_argument("--threads", type=int, default=4, help="consumer threads (default 4)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except GovRpcError as exc:
        print(f"govrpc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
