"""URL, ServiceKey, Invocation, Result and the exception tree."""

from __future__ import annotations

import dataclasses
import time

import pytest

import govrpc
from govrpc import exceptions
from govrpc.invocation import Invocation, Result
from govrpc.url import URL, ServiceKey


def test_url_round_trips_through_text_and_node_name() -> None:
    text = "grpc://10.0.0.5:50051/demo.Greeter?version=1.0&group=g&methods=hello,bye&weight=100&tag=gray"
    url = URL.parse(text)
    assert (url.scheme, url.host, url.port, url.path) == ("grpc", "10.0.0.5", 50051, "demo.Greeter")
    assert url.params["methods"] == "hello,bye" and url.methods == ("hello", "bye")
    assert url.address == "10.0.0.5:50051"
    assert str(url) == text
    node = url.encoded()
    assert "/" not in node and ":" not in node and "?" not in node
    assert URL.decode(node) == url
    assert hash(URL.decode(node)) == hash(url)


def test_url_accessors_and_copy() -> None:
    url = URL.parse("grpc://h:1/s?weight=7&timeout=0.5&find.timeout=2")
    assert url.get_int("weight", 100) == 7 and url.get_int("missing", 3) == 3
    assert url.get_float("timeout", 1.0) == 0.5
    assert url.method_param("find", "timeout") == "2" and url.method_param("get", "timeout") == "0.5"
    other = url.with_params(weight=9, timeout=None)
    assert other.get_int("weight", 0) == 9 and other.get("timeout") is None
    assert url.get_int("weight", 0) == 7  # the original is unchanged
    with pytest.raises(govrpc.ConfigurationError, match="weight"):
        URL.parse("grpc://h:1/s?weight=heavy").get_int("weight", 1)


@pytest.mark.parametrize("text", ["", "no-scheme", "grpc://h:99999/s", "grpc://h:port/s"])
def test_bad_urls_name_the_problem(text: str) -> None:
    with pytest.raises(govrpc.ConfigurationError) as info:
        URL.parse(text)
    assert text in str(info.value) or "port" in str(info.value)


def test_service_key_text_and_matching() -> None:
    key = ServiceKey("demo.Greeter", "1.0", "g")
    assert str(key) == "g/demo.Greeter:1.0"
    assert key.matches(URL.parse("grpc://h:1/demo.Greeter?version=1.0&group=g"))
    assert not key.matches(URL.parse("grpc://h:1/demo.Greeter?version=2.0&group=g"))
    assert not key.matches(URL.parse("grpc://h:1/demo.Greeter?version=1.0"))
    assert ServiceKey("demo.Greeter", "*").matches(URL.parse("grpc://h:1/demo.Greeter?version=9"))
    with pytest.raises(govrpc.ConfigurationError, match="service name"):
        ServiceKey("bad/name")


def test_invocation_is_frozen_and_knows_its_deadline() -> None:
    inv = Invocation(ServiceKey("s"), "m", (1,), {}, {}, time.monotonic() + 5)
    assert 4 < inv.remaining() <= 5
    assert str(inv) == "s.m"
    with pytest.raises(dataclasses.FrozenInstanceError):
        inv.method = "other"  # type: ignore[misc]


def test_result_keeps_value_or_exception() -> None:
    assert Result.capture(lambda: 3).unwrap() == 3
    failed = Result.capture(lambda: 1 / 0)
    assert not failed.ok
    with pytest.raises(ZeroDivisionError):
        failed.unwrap()


def test_every_error_has_a_grpc_status_code() -> None:
    import grpc

    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and issubclass(obj, exceptions.GovRpcError):
            assert hasattr(grpc.StatusCode, obj.code), name
    assert govrpc.RateLimitedError.code == "RESOURCE_EXHAUSTED"
    assert govrpc.CircuitOpenError.code == "UNAVAILABLE"
    assert govrpc.CallTimeoutError.code == "DEADLINE_EXCEEDED"
    assert govrpc.UnauthenticatedError.code == "UNAUTHENTICATED"
    assert govrpc.NoProviderError.code == "UNAVAILABLE"
    assert govrpc.RuleError("x").code == "INVALID_ARGUMENT"
    assert "position 4" in str(govrpc.RuleError("unexpected '='", rule="a == b", position=4))


def test_safe_exceptions_must_be_exception_subclasses() -> None:
    class Mine(Exception):
        pass

    assert govrpc.safe_exception(Mine) is Mine
    assert exceptions.safe_exception_class(f"{Mine.__module__}.{Mine.__qualname__}") is Mine
    with pytest.raises(govrpc.ConfigurationError):
        govrpc.safe_exception(KeyboardInterrupt)
    with pytest.raises(govrpc.ConfigurationError):
        govrpc.safe_exception("ValueError")  # type: ignore[arg-type]


def test_public_names_are_complete_and_sorted() -> None:
    import inspect

    import govrpc.cluster
    import govrpc.registry
    import govrpc.router
    import govrpc.rpc

    for module in (govrpc, govrpc.cluster, govrpc.registry, govrpc.router, govrpc.rpc, exceptions):
        assert list(module.__all__) == sorted(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    public = {n for n, v in vars(govrpc).items()
              if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))}
    assert public <= set(govrpc.__all__)
