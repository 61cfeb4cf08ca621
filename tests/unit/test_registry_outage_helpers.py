"""EmptyPushGuard (pure, explicit clock) and SnapshotStore (atomic files) on their own."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from govrpc.exceptions import ConfigurationError
from govrpc.registry.protection import EmptyPushGuard
from govrpc.registry.snapshot import SnapshotStore
from govrpc.url import URL

A = URL.parse("grpc://10.0.0.1:5000/demo.Greeter")
B = URL.parse("grpc://10.0.0.2:5000/demo.Greeter")


def test_guard_holds_an_empty_push_then_applies_it_after_the_hold() -> None:
    guard = EmptyPushGuard(10)
    first = guard.review([A, B], [], now=100.0)
    assert not first.apply and first.recheck_in == 10 and guard.holding
    again = guard.review([A, B], [], now=104.0)
    assert not again.apply and again.recheck_in == pytest.approx(6)
    done = guard.review([A, B], [], now=110.0)
    assert done.apply and done.released and not guard.holding


def test_guard_lets_providers_that_come_back_replace_the_held_list() -> None:
    guard = EmptyPushGuard(10)
    assert not guard.review([A, B], [], now=0).apply
    decision = guard.review([A, B], [B], now=1)
    assert decision.apply and not decision.released and not guard.holding


@pytest.mark.parametrize("last", [None, []])
def test_guard_has_nothing_to_protect_without_providers(last: Any) -> None:
    assert EmptyPushGuard(10).review(last, [], now=0).apply


def test_guard_with_zero_hold_is_off_and_partial_removals_pass() -> None:
    assert EmptyPushGuard(0).review([A], [], now=0).apply
    assert EmptyPushGuard(10).review([A, B], [A], now=0).apply


def test_snapshot_round_trip_is_atomic_and_reports_its_age(tmp_path: Any) -> None:
    store = SnapshotStore(str(tmp_path / "snaps"))
    assert store.load("demo.Greeter") is None and store.services() == []
    store.save("demo.Greeter", [A, B])
    store.save("demo.Greeter", [B])
    snapshot = store.load("demo.Greeter")
    assert snapshot is not None and snapshot.urls == (B,) and 0 <= snapshot.age < 60
    assert store.services() == ["demo.Greeter"]
    assert [n for n in os.listdir(tmp_path / "snaps") if n.startswith(".tmp")] == []


def test_snapshot_garbage_is_skipped_with_a_warning(tmp_path: Any, caplog: Any) -> None:
    store = SnapshotStore(str(tmp_path))
    (tmp_path / "demo.Greeter.json").write_text("{not json")
    assert store.load("demo.Greeter") is None
    assert "unreadable provider snapshot" in caplog.text
    (tmp_path / "demo.Greeter.json").write_text(json.dumps(
        {"service": "demo.Greeter", "saved_at": 1.0, "providers": ["nonsense", str(A), "grpc://h:1/other.Svc"]}))
    snapshot = store.load("demo.Greeter")
    assert snapshot is not None and snapshot.urls == (A,)
    assert "skipping bad entry 'nonsense'" in caplog.text


def test_snapshot_store_needs_a_directory() -> None:
    with pytest.raises(ConfigurationError):
        SnapshotStore("")
