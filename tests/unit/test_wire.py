"""The wire pieces both transports share: envelope, metadata, exception encoding (no sockets)."""

from __future__ import annotations

import pytest

import govrpc
from govrpc.rpc.wire import (
    ARGS_LIMIT,
    MESSAGE_LIMIT,
    caller_of,
    decode_envelope,
    encode_exception,
    rebuild_exception,
    split_metadata,
    truncate,
)


def _wire(text: str) -> int:
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())


@pytest.mark.parametrize("text", ["a" * 10_000, "я" * 3_000, "%" * 5_000, "mixed я% " * 900])
def test_truncate_fits_the_limit_and_says_so(text: str) -> None:
    cut = truncate(text)
    assert _wire(cut) <= MESSAGE_LIMIT
    assert cut.endswith(f"[truncated, {len(text)} characters in all]") and text.startswith(cut.split(" ... [")[0])
    assert truncate("short") == "short"
    assert truncate("bad \udc80 surrogate") == "bad ? surrogate"


def test_long_args_are_cut_to_fit_and_unencodable_ones_are_left_out() -> None:
    _, message, args = encode_exception(ValueError("я" * 5_000, "second"))
    assert args is not None and len(args) * 4 // 3 <= ARGS_LIMIT and "truncated" in message
    rebuilt = rebuild_exception("builtins.ValueError", message, args)
    assert type(rebuilt) is ValueError and rebuilt.args[1] == "second" and rebuilt.args[0].startswith("я" * 100)
    _, _, none = encode_exception(ValueError(object()))
    assert none is None
    assert encode_exception(type("Ошибка", (Exception,), {})("x"))[0].isascii()


def test_only_registered_safe_classes_are_rebuilt() -> None:
    exit_ = rebuild_exception("builtins.SystemExit", "3", b"[3]")
    assert isinstance(exit_, govrpc.RemoteError) and exit_.remote_type == "builtins.SystemExit"
    assert rebuild_exception("builtins.KeyError", "'k'", b'["k"]').args == ("k",)
    assert rebuild_exception("builtins.KeyError", "'k'", b"not json").args == ("'k'",)  # falls back on the message


@pytest.mark.parametrize("value", [{"a": 1, "b": 2}, [1, 2, 3], "text", None, [{"a": 1}, {}], [[1], {1: 2}],
                                   [[1], [2]]])
def test_a_malformed_envelope_names_what_came(value: object) -> None:
    with pytest.raises(govrpc.SerializationError, match="s.m: the request"):
        decode_envelope(value, "s.m")
    assert decode_envelope(((1,), {"b": 2}), "s.m") == ((1,), {"b": 2})


def test_transport_noise_and_govrpc_keys_are_no_attachments() -> None:
    attachments, binary, application = split_metadata([
        ("user-agent", "grpc-python/1"), ("grpc-accept-encoding", "gzip"), ("govrpc-key", "s:1"),
        ("govrpc-app", "web"), ("trace-bin", b"\x01"), ("tenant", "acme")])
    assert attachments == {"tenant": "acme"} and binary == {"trace-bin": b"\x01"} and application == "web"


def test_the_callers_application_is_read_from_its_user_agent() -> None:
    from govrpc.rpc.wire import user_agent

    agent = f"{user_agent('web shop/eu é')} grpc-python/1.85.3 grpc-c/50.0.0 (linux; chttp2)"
    assert split_metadata([("user-agent", agent)])[2] == "web shop/eu é"
    assert split_metadata([("user-agent", "grpc-python/1.85.3")])[2] == ""  # not a govrpc consumer
    # an explicit govrpc-app entry (a caller dialling by hand) is read too, and wins
    assert split_metadata([("govrpc-app", "api"), ("user-agent", agent)])[2] == "api"
    assert split_metadata([("user-agent", agent), ("govrpc-app", "api")])[2] == "api"
    # the server's direct path reads the caller from the same metadata made a dict: the same answer
    for metadata in ([("user-agent", agent)], [("user-agent", "grpc-python/1.85.3")], [("govrpc-app", "api")],
                     [("user-agent", agent), ("govrpc-app", "api")], [("govrpc-app", ""), ("user-agent", agent)], []):
        assert caller_of(dict(metadata)) == split_metadata(metadata)[2]
