"""What routing costs per call: 100 providers, 5 active rules, cached and after a change.

Routing is pure, so it is measured in this process with no network: a
``StaticDirectory`` over 100 providers known by URL, with a ``RouterChain``.
Measured, each as the median of several rounds:

- ``Directory.list`` with no rule at all (the chain returns the provider tuple);
- ``Directory.list`` with 5 rules (3 condition, 1 script, 1 tag) and tagged
  providers, cached (calls over a few methods and tags);
- the first call after a change (a rule rewritten, or the provider list
  swapped): the chain rebuilds and routes every router over 100 providers;
- a script rule's evaluation on each engine side by side (cel-expr-python,
  the default, and cel-python's interpreter, the fallback): one evaluation (a call
  that meets one new provider) and a whole call meeting 100 new providers (one
  evaluation over the list on cel-expr-python, one per provider on cel-python);
  the Rust bindings (``common-expression-language``) too when installed, as the
  candidate not taken (it has no evaluation budget);
- a whole call through a ``Client`` in-process (``local_first=True``) against the
  same call over gRPC on 127.0.0.1 (the only part that opens a socket).

    python benchmarks/routing.py [--rounds 5] [--calls 20000]

Targets: cached under 5 us per call; no rule essentially free (the whole
consumer path budget is 25 us per call); a script evaluation under 10 us.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from govrpc.cluster.directory import StaticDirectory
from govrpc.invocation import Invocation
from govrpc.router import DryRunInvoker, RouterChain, ScriptRouter
from govrpc.router.script import default_engine, installed_engines
from govrpc.url import URL, ServiceKey

KEY = ServiceKey("bench.Routed")
RULES = {
    "reads": "method = get*,find*,list* => zone = a,b",
    "writes": "method = save*,update* => zone = c",
    "no-canary": "application = shop & arguments[0] = vip* => weight != 0",
    "script": "kind: script\nscript: 'provider.port % 7 != 0 || invocation.method.startsWith(\"get\")'",
    "gray": "kind: tag\ntags:\n  - name: gray\n    addresses: [10.0.1.1:20880, 10.0.1.2:20880]\n",
}


def providers(count: int = 100, version: int = 0) -> tuple[DryRunInvoker, ...]:
    zones = "abc"
    return tuple(
        DryRunInvoker(URL("grpc", f"10.0.{n // 50}.{n % 50 + 1}", 20880, "bench.Routed",
                          {"zone": zones[n % 3], "weight": 100, "application": "stock", "v": version,
                           **({"tag": "blue"} if n % 25 == 0 else {})}))
        for n in range(count))


def per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean microseconds per call of ``fn``."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(results)


def local_first_call(rounds: int, calls: int = 2000) -> tuple[float, float]:
    """One small call through a full Client, in-process (local_first) and over gRPC on 127.0.0.1."""
    import govrpc

    @govrpc.service("bench.Local")
    class Local:
        def echo(self, value: str) -> str:
            return value

    registry = "memory://bench-routing"
    server = govrpc.Server(registry).add(Local()).start()
    try:
        with govrpc.Client(registry, local_first=True) as near, govrpc.Client(registry, local_first=False) as far:
            local, remote = near.proxy("bench.Local"), far.proxy("bench.Local")
            local.echo("x"), remote.echo("x")
            results = [per_call(lambda: local.echo("x"), calls, rounds),
                       per_call(lambda: remote.echo("x"), calls, rounds)]
    finally:
        server.stop(grace=0.5)
    return results[0], results[1]


SCRIPT = 'provider.port % 7 != 0 || invocation.method.startsWith("get")'


def script_engines(invokers: tuple[DryRunInvoker, ...], call: Invocation, consumer: URL,
                   rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per engine: us for one evaluation (one new provider) and for a call meeting every provider anew."""
    per_evaluation: dict[str, float] = {}
    whole_call: dict[str, float] = {}
    urls = [i.url for i in invokers]
    for engine in installed_engines():
        script = ScriptRouter(SCRIPT, engine=engine)
        assert script.route(invokers, call, consumer)[0]
        slow = engine == "cel-python"
        per_evaluation[engine] = per_call(lambda: script._evaluate_batch(call, consumer, urls[:1]),
                                          200 if slow else 5000, rounds)

        def route_all() -> object:
            script._verdicts.clear()  # every provider unseen: what a new call key or script version costs
            return script.route(invokers, call, consumer)
        whole_call[engine] = routed = per_call(route_all, 3 if slow else 200, rounds)
        print(f"  script evaluation, {engine:16s}     {per_evaluation[engine]:8.1f} us/evaluation, "
              f"{routed:8.1f} us/call at {len(invokers)} new providers ({routed / len(invokers):.1f} us/provider)")
    try:
        import cel  # the Rust bindings (common-expression-language): measured, not used
    except ImportError:
        return per_evaluation, whole_call
    if not callable(getattr(cel, "compile", None)):  # some other module named cel
        return per_evaluation, whole_call
    program = cel.compile(SCRIPT)
    provider = dict(urls[0].params, host=urls[0].host, port=urls[0].port, address=urls[0].address)
    data = {"invocation": {"method": call.method, "arguments": list(call.args), "kwargs": {}, "attachments": {}},
            "consumer": dict(consumer.params), "provider": provider}
    rust = per_call(lambda: program.execute(data), 5000, rounds)
    print(f"  script evaluation, common-expression-language {rust:5.1f} us/evaluation "
          f"(candidate not used: no evaluation budget)")
    return per_evaluation, whole_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    consumer = URL("consumer", "10.9.9.9", 0, "bench.Routed", {"application": "shop"})
    invokers = providers()
    calls = [Invocation(KEY, m, ("vip-1",), {}, a) for m in ("getUser", "saveUser", "findAll", "ping")
             for a in ({}, {"tag": "gray"})]

    bare = StaticDirectory(KEY, consumer, invokers)
    empty = StaticDirectory(KEY, consumer, invokers)
    empty.router_chain = RouterChain(consumer)
    routed = StaticDirectory(KEY, consumer, invokers)
    chain = RouterChain(consumer)
    chain.set_registry_rules(RULES)
    routed.router_chain = chain
    for call in calls:
        assert routed.list(call), call

    def cycle(directory: StaticDirectory) -> Callable[[], object]:
        it = [0]
        n = len(calls)

        def one() -> object:
            it[0] += 1
            return directory.list(calls[it[0] % n])
        return one

    print(f"routing, {len(invokers)} providers, {len(RULES)} rules "
          f"({', '.join(sorted(RULES))}), {args.rounds} rounds")
    base = per_call(cycle(bare), args.calls, args.rounds)
    none = per_call(cycle(empty), args.calls, args.rounds)
    cached = per_call(cycle(routed), args.calls, args.rounds)
    print(f"  Directory.list, no chain                 {base:8.2f} us/call")
    print(f"  Directory.list, chain with no rule       {none:8.2f} us/call   (+{none - base:.2f} us)")
    print(f"  Directory.list, 5 rules, cached          {cached:8.2f} us/call   (target < 5 us)")

    # after a change: every call is the first after a rule rewrite (cache and routers rebuilt)
    texts = [dict(RULES, writes=f"method = save*,update* => zone = c & port != {p}") for p in (1, 2)]
    flip = [0]

    def after_rule_change() -> object:
        flip[0] ^= 1
        chain.set_registry_rules(texts[flip[0]])
        return routed.list(calls[0])
    changed = per_call(after_rule_change, max(args.calls // 100, 20), args.rounds)
    print(f"  first call after a condition rule change {changed:8.1f} us/call   (rebuild + route 100 providers)")

    fresh = [0]

    def after_provider_change() -> object:
        fresh[0] += 1  # one provider replaced by a new one, as when an instance restarts
        extra = DryRunInvoker(URL("grpc", "10.0.9.9", 30000 + fresh[0] % 30000, "bench.Routed", {"zone": "a"}))
        routed.invokers = invokers[1:] + (extra,)
        return routed.list(calls[0])
    swapped = per_call(after_provider_change, max(args.calls // 100, 20), args.rounds)
    print(f"  first call after one provider changed    {swapped:8.1f} us/call   (incl. one script evaluation)")

    def after_script_change() -> object:
        fresh[0] += 1  # a new version of the script: compiled, then evaluated for every provider
        chain.set_registry_rules(dict(RULES, script=RULES["script"].replace("% 7", f"% {7 + fresh[0]}")))
        return routed.list(calls[0])
    rescripted = per_call(after_script_change, 4, args.rounds)
    print(f"  first call after the script rule changed {rescripted:8.1f} us/call   (compile + script over 100 providers)")

    evaluation, whole = script_engines(invokers, calls[1], consumer, args.rounds)
    inprocess, network = local_first_call(args.rounds)
    print(f"  call through local-first (in-process)    {inprocess:8.1f} us/call   "
          f"(gRPC on loopback: {network:.1f} us/call, x{network / inprocess:.1f})")
    print(f"ratios: cached/no-chain x{cached / base:.1f}; no-rule chain adds {none - base:.2f} us; "
          f"cached is {'under' if cached < 5 else 'OVER'} the 5 us target")
    engine = default_engine()
    if "cel-python" in evaluation and engine != "cel-python":
        print(f"script: {engine} x{evaluation['cel-python'] / evaluation[engine]:.0f} faster per evaluation, "
              f"x{whole['cel-python'] / whole[engine]:.0f} per call at {len(invokers)} providers than cel-python; "
              f"{evaluation[engine]:.1f} us per evaluation is {'under' if evaluation[engine] < 10 else 'OVER'} "
              f"the 10 us target")


if __name__ == "__main__":
    main()
