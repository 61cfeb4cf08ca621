"""Mask text: every spelling, and what is refused."""

from __future__ import annotations

import pytest

from govrpc.degrade.mask import FAIL, FORCE, MASK, MOCK, RETURN, THROW, is_failure, parse_mask
from govrpc.exceptions import (
    CircuitOpenError,
    ConfigurationError,
    NoProviderError,
    RateLimitedError,
    RemoteError,
)


@pytest.mark.parametrize("text, mode, action, value", [
    ("force:return null", FORCE, RETURN, None),
    ("force:return", FORCE, RETURN, None),
    ('fail:return {"items": []}', FAIL, RETURN, {"items": []}),
    ("return 5", FAIL, RETURN, 5),
    ("FORCE:mock", FORCE, MOCK, None),
    ("fail: mock", FAIL, MOCK, None),
])
def test_spellings(text: str, mode: str, action: str, value: object) -> None:
    spec = parse_mask(text)
    assert (spec.mode, spec.action, spec.value) == (mode, action, value)


def test_throw_names_govrpc_errors_builtins_and_registered_safe_exceptions() -> None:
    assert parse_mask("force:throw RateLimitedError").error is RateLimitedError
    assert parse_mask("fail:throw ValueError").error is ValueError
    assert parse_mask(f"force:throw {__name__}.Safe").error is Safe
    for bad in ("force:throw RemoteError", "force:throw GovRpcError", "force:throw os.Nope", "force:throw Nope"):
        with pytest.raises(ValueError, match="not a govrpc error name"):
            parse_mask(bad)


@pytest.mark.parametrize("text", ["force:return {x", "force:explode", "force:mock now", "throw", ""])
def test_refusals_name_the_key(text: str) -> None:
    with pytest.raises(ConfigurationError, match="^find.mock"):
        MASK.check(text, "find.mock")


def test_what_a_fail_mask_answers() -> None:
    assert is_failure(NoProviderError("x")) and is_failure(CircuitOpenError("x")) and is_failure(RateLimitedError("x"))
    assert not is_failure(RemoteError("E", "m")) and not is_failure(ValueError("business"))
    assert not is_failure(ConfigurationError("client closed"))


from govrpc.exceptions import safe_exception  # noqa: E402


@safe_exception
class Safe(Exception):
    pass
