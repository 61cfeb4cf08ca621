"""Server and Client constructors refuse bad options at once, naming the option (issue 9, defect 9)."""

from __future__ import annotations

from typing import Any

import pytest

import govrpc

BAD_SERVER_OPTIONS = [
    ("port", 70000), ("port", -1), ("port", True), ("port", "50051"), ("port", 1.5),
    ("max_workers", "4"), ("max_workers", 0), ("max_workers", True), ("max_workers", 2.0),
    ("weight", True), ("weight", 0), ("weight", "100"), ("weight", 1.5),
    ("warmup", -5), ("warmup", "abc"), ("warmup", float("nan")), ("warmup", True),
    ("max_message_size", -1), ("max_message_size", 0), ("max_message_size", 2**31), ("max_message_size", False),
    ("host", ""), ("host", None), ("application", 5), ("serializer", None),
]


@pytest.mark.parametrize(("option", "value"), BAD_SERVER_OPTIONS)
def test_server_refuses_a_bad_option_by_name(option: str, value: Any) -> None:
    with pytest.raises(govrpc.ConfigurationError, match=f"^{option} must") as caught:
        govrpc.Server("memory://options", **{option: value})
    assert repr(value) in str(caught.value)


def test_server_accepts_the_edges_of_each_range() -> None:
    server = govrpc.Server("memory://options", port=65535, max_workers=1, weight=1, warmup=0,
                           max_message_size=2**31 - 1)
    assert (server.weight, server.warmup, server.max_message_size) == (1, 0, 2**31 - 1)
    server.stop()  # never started: nothing to do


BAD_CLIENT_OPTIONS = [
    ("timeout", True), ("timeout", float("nan")), ("timeout", -1), ("timeout", 0),
    ("max_message_size", -1), ("max_message_size", True), ("max_message_size", "4"),
    ("max_workers", "4"), ("max_workers", 0), ("max_workers", False),
    ("application", ""), ("application", 3), ("local_first", "no"), ("prefer_same_host", 1),
]


@pytest.mark.parametrize(("option", "value"), BAD_CLIENT_OPTIONS)
def test_client_refuses_a_bad_option_by_name(option: str, value: Any) -> None:
    with pytest.raises(govrpc.ConfigurationError, match=f"^{option} must"):
        govrpc.Client("memory://options", **{option: value})


def test_a_bool_is_no_timeout_anywhere_on_the_client() -> None:
    with govrpc.Client("memory://options") as client:
        with pytest.raises(govrpc.ConfigurationError, match="timeout must"):
            client.proxy("unit.Nothing", timeout=True)
