"""The ``govrpc`` command.

Each sub-command is one ``_cmd_*`` function registered in ``build_parser``;
commands that read or change a registry take ``--registry URL`` (default: the
``GOVRPC_REGISTRY`` environment variable, else ``memory://``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from govrpc.exceptions import ConfigurationError, GovRpcError

__all__ = ["build_parser", "main"]

def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=os.environ.get("GOVRPC_REGISTRY", "memory://"),
                        help="registry URL (default: $GOVRPC_REGISTRY or memory://)")


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _cmd_demo(args: argparse.Namespace) -> int:
    from govrpc.demo import run_demo

    return run_demo(calls=args.calls, threads=args.threads)


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    pairs = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{flag} takes KEY=VALUE, not {item!r}")
        pairs[key] = value
    return pairs


def _argument(text: str) -> Any:
    """A call argument given on the command line: JSON when it parses (42, true, "x"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cmd_route(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        if args.action == "add":
            if args.file:
                try:
                    with open(args.file, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigurationError(f"cannot read the rule file {args.file}: {exc}") from exc
            elif args.rule == "-":
                text = sys.stdin.read()
            elif args.rule:
                text = args.rule
            else:
                raise ConfigurationError("route add needs the rule text, '-' (stdin) or --file PATH")
            admin.add_route(args.service, args.name, text)
            print(f"route {args.name!r} of {args.service} stored")
        elif args.action == "list":
            routes = admin.routes(args.service)
            if not routes:
                print(f"{args.service} has no route rule")
            for name, text in sorted(routes.items()):
                print(f"== {name}")
                print(text.rstrip("\n"))
        elif args.action == "rm":
            admin.remove_route(args.service, args.name)
            print(f"route {args.name!r} of {args.service} removed")
        else:
            steps = admin.explain_route(args.service, args.method, application=args.application, host=args.host,
                                        args=[_argument(a) for a in args.arg or ()],
                                        attachments=_pairs(args.attachment, "--attachment"),
                                        consumer=_pairs(args.param, "--param"))
            for step in steps:
                print(f"{step.router}: {step.why}")
                print("    " + (", ".join(u.address for u in step.kept) or "(none)"))
            print(f"result: {len(steps[-1].kept)} provider(s)")
    return 0


def _route_parser(sub: argparse._SubParsersAction) -> None:
    route = sub.add_parser("route", help="route rules of a service: add, list, rm, explain")
    actions = route.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="check and store a route rule (refused if it does not parse)")
    add.add_argument("service")
    add.add_argument("name")
    add.add_argument("rule", nargs="?", help="the rule text ('-' reads stdin)")
    add.add_argument("--file", help="read the rule from this file")
    listing = actions.add_parser("list", help="the stored route rules of a service")
    listing.add_argument("service")
    rm = actions.add_parser("rm", help="remove a route rule")
    rm.add_argument("service")
    rm.add_argument("name")
    explain = actions.add_parser("explain", help="dry run: which providers each router keeps for a call, and why")
    explain.add_argument("service")
    explain.add_argument("method")
    explain.add_argument("--application", default="govrpc-consumer", help="the calling application")
    explain.add_argument("--host", default="127.0.0.1", help="the calling host")
    explain.add_argument("--arg", action="append",
                         help="a call argument, JSON or text (repeat: arguments[0], [1]...)")
    explain.add_argument("--attachment", action="append", metavar="KEY=VALUE", help="a call attachment (tag=gray)")
    explain.add_argument("--param", action="append", metavar="KEY=VALUE", help="a consumer URL parameter")
    for parser in (add, listing, rm, explain):
        _registry_option(parser)
        parser.set_defaults(func=_cmd_route)


def _cmd_flow(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        if args.action == "list":
            flow = admin.flow(args.service)
            if args.json:
                print(json.dumps(flow, indent=2, sort_keys=True))
            elif not flow:
                print(f"{args.service} has no flow setting")
            for name, params in flow.items() if not args.json else ():
                print(f"== {name}")
                for key, value in params.items():
                    print(f"{key} = {value}")
        elif args.action == "set":
            settings = _pairs(args.setting, "flow set")
            if not settings:
                raise ConfigurationError("flow set needs at least one KEY=VALUE (tps=200, find.concurrency=4)")
            admin.set_flow(args.service, settings, application=args.application or "", address=args.address or "")
            print(f"flow of {args.service} set: {', '.join(f'{k}={v}' for k, v in settings.items())}")
        else:
            admin.remove_flow(args.service, args.key or (), application=args.application or "",
                              address=args.address or "")
            print(f"flow of {args.service}: removed {', '.join(args.key) if args.key else 'every key'}")
    return 0


def _flow_parser(sub: argparse._SubParsersAction) -> None:
    flow = sub.add_parser("flow", help="flow control of a service: list, set, rm (tps, concurrency, actives...)")
    actions = flow.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the flow settings in force: configurators and published ones")
    listing.add_argument("service")
    listing.add_argument("--json", action="store_true", help="print JSON")
    setting = actions.add_parser("set", help="set flow keys (checked; refused with the key named)")
    setting.add_argument("service")
    setting.add_argument("setting", nargs="*", metavar="KEY=VALUE")
    rm = actions.add_parser("rm", help="remove flow keys (all of the scope when none is named)")
    rm.add_argument("service")
    rm.add_argument("key", nargs="*")
    for parser in (setting, rm):
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--application", help="the consumers of this application, not the providers")
        scope.add_argument("--address", help="this provider (host:port) only")
    for parser in (listing, setting, rm):
        _registry_option(parser)
        parser.set_defaults(func=_cmd_flow)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _url_record(url: Any) -> dict[str, Any]:
    # parameters nested: a provider parameter named "url" or "address" must not overwrite those fields
    return {"url": str(url), "address": url.address, "service": url.path, "params": dict(url.params)}


def _cmd_services(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        rows = [(s, len(admin.providers(s)), len(admin.consumers(s))) for s in admin.services()]
    if args.json:
        print(json.dumps([{"service": s, "providers": p, "consumers": c} for s, p, c in rows], indent=2))
    elif not rows:
        print(f"no service in {args.registry}")
    else:
        print(_table([(s, str(p), str(c)) for s, p, c in rows], ("SERVICE", "PROVIDERS", "CONSUMERS")))
    return 0


def _cmd_instances(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        urls = admin.providers(args.service) if args.command == "providers" else admin.consumers(args.service)
    if args.json:
        print(json.dumps([_url_record(u) for u in urls], indent=2))
        return 0
    if not urls:
        print(f"{args.service} has no {args.command} in {args.registry}")
        return 0
    if args.command == "providers":
        header = ("ADDRESS", "VERSION", "GROUP", "APPLICATION", "WEIGHT", "PID", "METHODS")
        rows = [(u.address, u.get("version", ""), u.get("group", ""), u.get("application", ""),
                 u.get("weight", ""), u.get("pid", ""), u.get("methods", "")) for u in urls]
    else:
        header = ("HOST", "APPLICATION", "VERSION", "GROUP", "PID", "CLUSTER", "LOADBALANCE")
        rows = [(u.host, u.get("application", ""), u.get("version", ""), u.get("group", ""), u.get("pid", ""),
                 u.get("cluster", ""), u.get("loadbalance", "")) for u in urls]
    print(_table(rows, header))
    return 0


def _listing_parsers(sub: argparse._SubParsersAction) -> None:
    services = sub.add_parser("services", help="every service in the registry, with provider and consumer counts")
    services.set_defaults(func=_cmd_services)
    providers = sub.add_parser("providers", help="the live providers of a service")
    consumers = sub.add_parser("consumers", help="the live consumers of a service")
    for parser in (providers, consumers):
        parser.add_argument("service")
        parser.set_defaults(func=_cmd_instances)
    for parser in (services, providers, consumers):
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        _registry_option(parser)


def _cmd_top(args: argparse.Namespace) -> int:
    import time

    from govrpc.admin import Admin

    header = ("SERVICE", "SIDE", "ADDRESS", "APPLICATION", "ZONE", "SERVING", "QPS", "P50_MS", "P99_MS", "SUCCESS",
              "INFLIGHT", "CPU", "RSS_MB", "AGE_S")
    with Admin(args.registry) as admin:
        for round_ in range(args.count):
            if round_:
                time.sleep(args.interval)
            now = time.time()
            rows = []
            for service, summaries in sorted(admin.health(args.service, side=None).items()):
                for h in summaries:
                    rows.append((service, h.side, h.address, h.application or "-", h.zone or "-", "yes" if h.serving else "NO", f"{h.qps:.1f}",
                                 f"{h.p50_ms:.2f}", f"{h.p99_ms:.2f}", f"{h.success_rate:.1%}", str(h.inflight),
                                 "-" if h.cpu is None else f"{h.cpu:.0%}", "-" if h.rss_mb is None else f"{h.rss_mb:.0f}",
                                 f"{now - h.time:.0f}"))
            if args.count > 1:
                print(f"-- {time.strftime('%H:%M:%S')}")
            print(_table(rows, header) if rows else "no health summary (servers and clients publish them with report_interval=)")
            sys.stdout.flush()
    return 0


def _top_parser(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("top", help="the providers' and consumers' health summaries (QPS, latency, success, CPU), live")
    top.add_argument("service", nargs="?", help="one service (default: every service)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    top.add_argument("--count", type=_at_least(1), default=1, help="tables to print (default 1)")
    _registry_option(top)
    top.set_defaults(func=_cmd_top)


def _cmd_mask(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    methods = args.method or None
    with Admin(args.registry) as admin:
        if args.command == "mask":
            admin.mask(args.service, " ".join(args.action), methods=methods, force=not args.fail)
            where = ", ".join(methods) if methods else "every method"
            print(f"{args.service} ({where}) masked: {'fail' if args.fail else 'force'}:{' '.join(args.action)}")
        else:
            admin.unmask(args.service, methods=methods)
            print(f"{args.service}: " + (f"masks of {', '.join(methods)} removed" if methods else "every mask removed"))
        for key, text in sorted(admin.masks(args.service).items()):
            print(f"    {key} = {text}")
    return 0


def _cmd_switch(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        if args.delete:
            if not args.name:
                raise ConfigurationError("switch --delete needs the switch name")
            admin.delete_switch(args.name)
            print(f"switch {args.name} removed")
        elif args.name and args.value is not None:
            admin.set_switch(args.name, _switch_value(args.value))
            print(f"switch {args.name} = {args.value}")
        else:
            values = admin.switches()
            if args.name:
                values = {k: v for k, v in values.items() if k == args.name}
            if args.json:
                print(json.dumps(values, indent=2, sort_keys=True))
            elif not values:
                print("no switch is set" if not args.name else f"switch {args.name} is not set")
            else:
                print(_table([(k, json.dumps(v)) for k, v in sorted(values.items())], ("SWITCH", "VALUE")))
    return 0


def _switch_value(text: str) -> Any:
    """on/off/true/false, else JSON, else the text itself."""
    lowered = text.lower()
    if lowered in ("on", "true"):
        return True
    if lowered in ("off", "false"):
        return False
    return _argument(text)


def _cmd_breakers(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    with Admin(args.registry) as admin:
        documents = admin.breakers(args.service)
    if args.json:
        print(json.dumps(documents, indent=2, sort_keys=True))
        return 0
    rows = [(d.get("consumer", ""), b.get("method", ""), b.get("address", ""), b.get("state", ""),
             f"{b.get('for', 0):.1f}s", str(b.get("rejected", 0)))
            for d in documents for b in d.get("breakers", ())]
    if not rows:
        print(f"no consumer of {args.service} reports an open or half-open breaker")
    else:
        print(_table(rows, ("CONSUMER", "METHOD", "PROVIDER", "STATE", "FOR", "REJECTED")))
    return 0


def _degrade_parsers(sub: argparse._SubParsersAction) -> None:
    mask = sub.add_parser("mask", help="mask a service or methods: return null/JSON, throw an error, call the mock")
    mask.add_argument("service")
    mask.add_argument("action", nargs="+", help="return null | return JSON | throw ErrorName | mock")
    mask.add_argument("--fail", action="store_true", help="only when the call fails (default: force, never call)")
    unmask = sub.add_parser("unmask", help="remove masks of a service (or of --method ones)")
    unmask.add_argument("service")
    for parser in (mask, unmask):
        parser.add_argument("--method", action="append", help="only this method (repeat for more)")
        parser.set_defaults(func=_cmd_mask)
    switch = sub.add_parser("switch", help="business switches: list, show NAME, set NAME VALUE, --delete NAME")
    switch.add_argument("name", nargs="?")
    switch.add_argument("value", nargs="?", help="on, off, or a JSON value")
    switch.add_argument("--delete", action="store_true", help="remove the switch")
    switch.add_argument("--json", action="store_true", help="print JSON instead of a table")
    switch.set_defaults(func=_cmd_switch)
    breakers = sub.add_parser("breakers", help="open and half-open circuit breakers consumers of a service report")
    breakers.add_argument("service")
    breakers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    breakers.set_defaults(func=_cmd_breakers)
    for parser in (mask, unmask, switch, breakers):
        _registry_option(parser)


def _cmd_console(args: argparse.Namespace) -> int:
    from govrpc.console import ConsoleServer, Login, hash_password

    if args.hash_password:
        import getpass

        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
        print(hash_password(password))
        return 0
    login = Login.from_environment(password_file=args.password_file, user=args.user)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"govrpc: warning: the console listens on {args.host}, not only this host", file=sys.stderr)
    try:
        server = ConsoleServer(args.registry, login, host=args.host, port=args.port, spans=tuple(args.spans or ()))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    print(f"govrpc console on {server.url} (registry {args.registry})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _console_parser(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser("console", help="the governance web console (login: $GOVRPC_CONSOLE_PASSWORD)")
    console.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    console.add_argument("--port", type=_at_least(0), default=8080, help="port (default 8080, 0: any free one)")
    console.add_argument("--user", default=None, help="login user (default $GOVRPC_CONSOLE_USER or admin)")
    console.add_argument("--password-file", default=None,
                         help="file holding the password hash (default $GOVRPC_CONSOLE_PASSWORD_FILE)")
    console.add_argument("--hash-password", action="store_true",
                         help="read a password (stdin or prompt), print its hash for --password-file, exit")
    console.add_argument("--spans", action="append", metavar="FILE",
                         help="span file for the dependency page, as `govrpc trace report` reads (repeat)")
    _registry_option(console)
    console.set_defaults(func=_cmd_console)


def _cmd_trace_report(args: argparse.Namespace) -> int:
    from govrpc.trace.report import analyse, render_text, write_graph

    report = analyse(args.files, window=args.window)
    for path, number, reason in report.corrupt:  # stdout stays the report: the places go to stderr
        print(f"govrpc: warning: {path} line {number} skipped: {reason}", file=sys.stderr)
    if report.skipped > len(report.corrupt):
        print(f"govrpc: warning: {report.skipped - len(report.corrupt)} more corrupt line(s) skipped",
              file=sys.stderr)
    data = report.as_dict(top=args.top)
    if args.graph:
        write_graph(data, args.graph)
    print(json.dumps(data, indent=2) if args.json else render_text(data), end="\n" if args.json else "")
    return 0


def _trace_parser(sub: Any) -> None:
    trace = sub.add_parser("trace", help="analyse collected spans")
    actions = trace.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="dependency graph, top consumers and slowest call paths of span files")
    report.add_argument("files", nargs="+", metavar="FILE",
                        help="span files: govrpc JSON lines or the OpenTelemetry Collector's OTLP JSON (gzip too)")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.add_argument("--graph", metavar="PATH", help="draw the dependency graph: .dot, or .svg/.png with Graphviz")
    report.add_argument("--top", type=_at_least(1), default=10, help="rows per table (default 10)")
    report.add_argument("--window", type=_at_least(1), default=200_000,
                        help="spans held while assembling traces (bounds memory; default 200000)")
    report.set_defaults(func=_cmd_trace_report)


def _cmd_tokens(args: argparse.Namespace) -> int:
    from govrpc.admin import Admin

    # tokens come on stdin, one a line: never on the command line, where other users' `ps` shows them
    tokens = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not tokens:
        raise ConfigurationError("tokens accept reads the accepted tokens from stdin, one a line: none came")
    with Admin(args.registry) as admin:
        admin.accept_tokens(args.service, tokens, addresses=args.address or ())
    scope = f" at {', '.join(args.address)}" if args.address else ""
    print(f"providers of {args.service}{scope} accept {len(tokens)} token(s) (their SHA-256 digests are stored)")
    return 0


def _tokens_parser(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="the tokens providers accept (a rotation: old and new, then new)")
    actions = tokens.add_subparsers(dest="action", required=True)
    accept = actions.add_parser("accept", help="providers of SERVICE accept the tokens read from stdin, one a line")
    accept.add_argument("service")
    accept.add_argument("--address", action="append", metavar="HOST:PORT", help="only this provider (repeat)")
    _registry_option(accept)
    accept.set_defaults(func=_cmd_tokens)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govrpc", description="Governed RPC on gRPC.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="three providers, one consumer, one provider stopped mid-traffic")
    demo.add_argument("--calls", type=_at_least(3), default=3000, help="calls to make (default 3000, at least 3)")
    demo.add_argument("--threads", type=_at_least(1), default=4, help="consumer threads (default 4)")
    demo.set_defaults(func=_cmd_demo)
    _route_parser(sub)
    _flow_parser(sub)
    _listing_parsers(sub)
    _top_parser(sub)
    _degrade_parsers(sub)
    _console_parser(sub)
    _trace_parser(sub)
    _tokens_parser(sub)
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
