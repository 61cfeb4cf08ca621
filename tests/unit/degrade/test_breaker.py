"""The breaker state machine alone, on a clock the test moves: exact counts at every transition."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from govrpc.degrade.breaker import BreakerSettings, BreakerTable, CircuitBreaker, add_listener, remove_listener
from govrpc.degrade.filters import breaker_outcome
from govrpc.exceptions import (
    CallTimeoutError,
    CancelledError,
    CircuitOpenError,
    ConfigurationError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteError,
)
from govrpc.url import URL


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**settings: Any) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker("test.S.m@h:1", BreakerSettings(**settings), clock=clock), clock


def call(breaker: CircuitBreaker, failed: bool | None, elapsed: float = 0.001) -> bool:
    """One call through the breaker; False when it was refused."""
    state = breaker.acquire()
    if state is None:
        return False
    breaker.record(state, failed, elapsed)
    return True


def test_consecutive_failures_trip_at_the_threshold_and_a_success_resets_the_count() -> None:
    breaker, _ = make(failures=3)
    for _ in range(2):
        assert call(breaker, True)
    assert call(breaker, False)  # resets
    for _ in range(2):
        assert call(breaker, True)
    assert breaker.current_state == "closed"
    assert call(breaker, True)
    assert breaker.current_state == "open" and breaker.transitions["open"] == 1


def test_open_refuses_every_call_for_the_open_time_then_lets_exactly_the_probes_through() -> None:
    breaker, clock = make(failures=1, open=5.0, probes=3)
    call(breaker, True)
    refused = sum(not call(breaker, False) for _ in range(10))
    assert refused == 10 and breaker.rejected == 10
    clock.now += 4.99
    assert not call(breaker, False)
    clock.now += 0.02
    admitted = [breaker.acquire() for _ in range(5)]
    assert sum(a is not None for a in admitted) == 3  # three probes at once, the rest refused
    assert breaker.current_state == "half-open"
    for state in admitted[:2]:
        breaker.record(state, False, 0.001)  # type: ignore[arg-type]
    assert breaker.current_state == "half-open"  # two of three probes succeeded: not yet
    breaker.record(admitted[2], False, 0.001)  # type: ignore[arg-type]
    assert breaker.current_state == "closed"
    assert breaker.transitions == {"open": 1, "half-open": 1, "closed": 1}


def test_a_failed_probe_opens_again_for_the_full_time() -> None:
    breaker, clock = make(failures=1, open=2.0, probes=2)
    call(breaker, True)
    clock.now += 2.0
    assert call(breaker, False)
    assert call(breaker, True)  # the second probe fails
    assert breaker.current_state == "open" and breaker.transitions["open"] == 2
    clock.now += 1.9
    assert not call(breaker, False)
    clock.now += 0.1
    assert call(breaker, False) and call(breaker, False)
    assert breaker.current_state == "closed"


def test_a_probe_refused_by_a_limiter_gives_its_permit_back() -> None:
    breaker, clock = make(failures=1, open=1.0, probes=1)
    call(breaker, True)
    clock.now += 1.0
    assert call(breaker, None)  # neither success nor failure
    assert breaker.current_state == "half-open"
    assert call(breaker, False)
    assert breaker.current_state == "closed"


def test_error_ratio_needs_the_minimum_number_of_calls() -> None:
    breaker, _ = make(ratio=0.5, min_calls=10, window=10.0)
    for _ in range(5):
        call(breaker, True)
    for _ in range(4):
        call(breaker, False)
    assert breaker.current_state == "closed"  # 5 of 9: under the minimum
    call(breaker, True)  # 6 of 10
    assert breaker.current_state == "open"


def test_error_ratio_below_the_threshold_stays_closed_and_old_calls_leave_the_window() -> None:
    breaker, clock = make(ratio=0.5, min_calls=4, window=10.0)
    for _ in range(3):
        call(breaker, True)
    clock.now += 11.0  # those failures left the window
    for _ in range(3):
        call(breaker, False)
    call(breaker, True)  # 1 of 4
    assert breaker.current_state == "closed"


def test_slow_calls_trip_on_their_ratio() -> None:
    breaker, _ = make(slow=0.1, slow_ratio=0.5, min_calls=4)
    call(breaker, False, 0.5)
    call(breaker, False, 0.01)
    call(breaker, False, 0.5)
    assert breaker.current_state == "closed"
    call(breaker, False, 0.01)  # 2 of 4 slow, checked on the next slow one
    call(breaker, False, 0.5)  # 3 of 5
    assert breaker.current_state == "open"


def test_listeners_hear_every_change_in_order_and_pybreaker_listeners_work() -> None:
    pybreaker = pytest.importorskip("pybreaker")
    heard: list[tuple[str, str]] = []

    class Listener(pybreaker.CircuitBreakerListener):  # type: ignore[misc]
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            heard.append((old.name, new.name))

    clock = Clock()
    breaker = CircuitBreaker("x", BreakerSettings(failures=1, open=1.0, probes=1), clock=clock,
                             listeners=[Listener()])
    process: list[str] = []
    listener = lambda b, old, new: process.append(new)  # noqa: E731
    add_listener(listener)
    try:
        call(breaker, True)
        clock.now += 1.0
        call(breaker, False)
    finally:
        remove_listener(listener)
    assert heard == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    assert process == ["open", "half-open", "closed"]


def test_pybreaker_storage_mirrors_the_state_and_an_open_written_elsewhere_is_adopted() -> None:
    pybreaker = pytest.importorskip("pybreaker")
    shared = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    one = CircuitBreaker("a", BreakerSettings(failures=1), storage=shared)
    call(one, True)
    assert shared.state == "open"
    other = CircuitBreaker("a", BreakerSettings(failures=1), storage=shared)  # another process's
    assert other.current_state == "open"


def test_the_closed_success_path_counts_right_under_threads() -> None:
    breaker = CircuitBreaker("x", BreakerSettings(failures=3))

    def run() -> None:
        for _ in range(2000):
            call(breaker, False)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert breaker.current_state == "closed"


@pytest.mark.parametrize("settings, key", [
    ({"ratio": 1.5}, "breaker.ratio"), ({"ratio": 0}, "breaker.ratio"), ({"open": -1}, "breaker.open"),
    ({"probes": 0}, "breaker.probes"), ({"slow": -0.1}, "breaker.slow"), ({"slow_ratio": 2}, "breaker.slow.ratio"),
    ({"failures": 0}, "breaker.failures"), ({"window": 0}, "breaker.window"),
])
def test_settings_out_of_range_are_refused_naming_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        BreakerSettings(**settings)


def test_settings_from_a_url_per_method_and_off() -> None:
    url = URL("consumer", "h", 0, "S", {"breaker.failures": "4", "find.breaker.open": "3",
                                        "bye.breaker": "off"})
    assert BreakerSettings.from_url(url) == BreakerSettings(failures=4)
    assert BreakerSettings.from_url(url, "find") == BreakerSettings(failures=4, open=3.0)
    assert BreakerSettings.from_url(url, "bye") is None
    assert BreakerSettings.from_url(URL("consumer", "h", 0, "S", {"breaker": "off", "breaker.failures": "2"})) is None
    assert BreakerSettings.from_url(URL("consumer", "h", 0, "S", {"retries": "1"})) is None
    assert BreakerSettings.from_mapping({"failures": 5, "open": 10}) == {"breaker.failures": "5", "breaker.open": "10"}
    with pytest.raises(ConfigurationError, match="unknown key 'fails'"):
        BreakerSettings.from_mapping({"fails": 5})


def test_table_blocks_only_the_open_method() -> None:
    table = BreakerTable("S", "h:1", BreakerSettings(failures=1, open=10.0), {})
    breaker = table.get("find")
    assert breaker is not None
    call(breaker, True)
    now = breaker.clock()
    assert table.blocks("find", now) and not table.blocks("bye", now)


def test_what_counts_as_a_failure() -> None:
    assert breaker_outcome(ProviderUnavailableError("x"), False) is True
    assert breaker_outcome(CallTimeoutError("x"), False) is True
    assert breaker_outcome(RateLimitedError("x"), False) is None
    assert breaker_outcome(RateLimitedError("x"), True) is None  # a limit refusal never counts
    assert breaker_outcome(CircuitOpenError("x"), False) is None
    assert breaker_outcome(CancelledError("x"), False) is None
    assert breaker_outcome(RemoteError("E", "m"), False) is False
    assert breaker_outcome(ValueError("business"), False) is False
    assert breaker_outcome(ValueError("business"), True) is True


def test_the_process_count_of_breakers_not_closed_follows_every_transition() -> None:
    from govrpc.degrade.breaker import NOT_CLOSED

    before = NOT_CLOSED[0]
    breaker, clock = make(failures=1, open=1.0, probes=1)
    call(breaker, True)
    assert NOT_CLOSED[0] == before + 1
    clock.now += 1.0
    assert breaker.acquire() is not None  # half-open: still not closed
    assert NOT_CLOSED[0] == before + 1
    breaker, clock = make(failures=1, open=1.0, probes=1)
    call(breaker, True)
    clock.now += 1.0
    call(breaker, False)
    assert NOT_CLOSED[0] == before + 1  # the second one opened and closed again


def test_service_scope_shares_one_breaker_between_methods() -> None:
    table = BreakerTable("S", "h:1", BreakerSettings(failures=1, open=10.0, scope="service"), {})
    find = table.get("find")
    assert find is not None and table.get("bye") is find
    call(find, True)
    now = find.clock()
    assert table.blocks("find", now) and table.blocks("bye", now)
