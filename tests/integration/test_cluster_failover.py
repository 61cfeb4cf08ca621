"""End to end on real gRPC: providers in their own processes, one killed under load."""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import govrpc

PROVIDER = textwrap.dedent("""
    import sys, time
    import govrpc

    @govrpc.service("e2e.Ledger")
    class Ledger:
        def __init__(self, name):
            self.name = name

        @govrpc.method(idempotent=True)
        def balance(self, account: str, n: int) -> list:
            return [self.name, account, n]

        def deposit(self, account: str, n: int, slow: float = 0.0) -> list:  # not idempotent
            if slow:
                print("busy", flush=True)  # tells the test the request has arrived
                time.sleep(slow)
            return [self.name, account, n]

    server = govrpc.Server({registry!r}, application="ledger").add(Ledger(sys.argv[1])).start()
    print(server.port, flush=True)
    time.sleep(60)
""")

THREADS = 8
CALLS = 150


def spawn(registry: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """Start a provider process; its first line is the port, later lines report arrivals."""
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", PROVIDER.format(registry=registry), name],
                            stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_failover_loses_no_idempotent_call_when_a_provider_is_killed(file_registry, client_factory) -> None:
    procs = []
    try:
        for name in ("p0", "p1", "p2"):
            procs.append(spawn(file_registry, name)[0])
        client = client_factory(file_registry, timeout=5.0)
        ledger = client.proxy("e2e.Ledger", cluster="failover", retries=2, loadbalance="roundrobin")
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while seen != {"p0", "p1", "p2"} and time.monotonic() < deadline:
            seen.add(ledger.balance("warm", 0)[0])
        assert seen == {"p0", "p1", "p2"}

        answers: collections.Counter[str] = collections.Counter()
        wrong: list[object] = []
        errors: list[BaseException] = []
        done = [0]
        lock = threading.Lock()

        def load(worker: int) -> None:
            for n in range(CALLS):
                account = f"acct-{worker}"
                try:
                    name, got_account, got_n = ledger.balance(account, n)
                except Exception as exc:  # noqa: BLE001 - counted: the test wants none
                    errors.append(exc)
                    continue
                with lock:
                    answers[name] += 1
                    done[0] += 1
                    if (got_account, got_n) != (account, n):
                        wrong.append((account, n, got_account, got_n))

        threads = [threading.Thread(target=load, args=(w,)) for w in range(THREADS)]
        for t in threads:
            t.start()
        while done[0] < THREADS * CALLS // 4 and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        killed_at = done[0]
        procs[0].kill()  # SIGKILL: no deregistration, no drain
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert errors == [], errors[:3]
        assert wrong == []
        assert sum(answers.values()) == THREADS * CALLS  # every call answered exactly once
        assert answers["p0"] > 0 and answers["p0"] <= killed_at + THREADS  # p0 served until it was killed
        assert answers["p1"] + answers["p2"] >= THREADS * CALLS - killed_at - THREADS
    finally:
        stop(procs)


def test_a_non_idempotent_call_in_flight_on_a_killed_provider_is_not_sent_again(file_registry,
                                                                               client_factory) -> None:
    procs = []
    try:
        for name in ("p0", "p1"):
            procs.append(spawn(file_registry, name)[0])
        client = client_factory(file_registry, timeout=5.0)
        ledger = client.proxy("e2e.Ledger", retries=2, loadbalance="roundrobin")
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while seen != {"p0", "p1"} and time.monotonic() < deadline:
            seen.add(ledger.deposit("warm", 0)[0])
        calls = [ledger.deposit.future("a", n, slow=2.0) for n in range(2)]  # one on each provider
        assert procs[0].stdout is not None
        assert procs[0].stdout.readline() == "busy\n"  # p0 is running the call now
        procs[0].kill()
        outcomes = []
        for call in calls:
            try:
                outcomes.append(call.result(timeout=10)[0])
            except govrpc.RpcError as exc:
                outcomes.append(str(exc))
        assert "p1" in outcomes
        failed = [o for o in outcomes if o != "p1"]
        assert len(failed) == 1 and "not idempotent" in failed[0], outcomes  # not re-sent to p1
    finally:
        stop(procs)
