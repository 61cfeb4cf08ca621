"""@govrpc.service marks; describe() collects and validates."""

from __future__ import annotations

import pytest

import govrpc
from govrpc.service import describe


def test_the_decorator_only_marks() -> None:
    @govrpc.service("unit.Calc", version="2", group="g")
    class Calc:
        def add(self, a: int, b: int) -> int:
            return a + b

        @govrpc.method(idempotent=True)
        def get(self) -> int:
            return 1

        def _private(self) -> None:
            pass

    spec = describe(Calc())
    assert str(spec.key) == "g/unit.Calc:2"
    assert {m.name: m.idempotent for m in spec.methods} == {"add": False, "get": True}
    assert Calc().add(1, 2) == 3


def test_marking_a_class_twice_is_an_error() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="already marked"):
        @govrpc.service("unit.B")
        @govrpc.service("unit.A")
        class Twice:
            def x(self) -> None:
                pass


def test_unmarked_and_empty_classes_are_refused() -> None:
    class Plain:
        def x(self) -> None:
            pass

    with pytest.raises(govrpc.ConfigurationError, match="not marked"):
        describe(Plain())

    @govrpc.service("unit.Empty")
    class Empty:
        pass

    with pytest.raises(govrpc.ConfigurationError, match="no public method"):
        describe(Empty())


def test_the_decorator_refuses_bad_names_and_non_classes() -> None:
    with pytest.raises(govrpc.ConfigurationError, match="invalid service name"):
        govrpc.service("bad name")
    with pytest.raises(govrpc.ConfigurationError, match="decorates classes"):
        govrpc.service("unit.F")(lambda: None)  # type: ignore[arg-type]


def test_async_methods_are_refused_pointing_at_the_async_server() -> None:
    @govrpc.service("unit.Coroutines")
    class Coroutines:
        def fine(self) -> int:
            return 1

        async def later(self) -> int:
            return 2

    @govrpc.service("unit.Stream")
    class Stream:
        async def ticks(self):  # type: ignore[no-untyped-def]
            yield 1

    with pytest.raises(govrpc.ConfigurationError, match=r"Coroutines\.later is an async def method.*AsyncServer"):
        describe(Coroutines())
    with pytest.raises(govrpc.ConfigurationError, match=r"Stream\.ticks is an async generator.*AsyncServer"):
        describe(Stream)
    server = govrpc.Server("memory://unit-async")
    with pytest.raises(govrpc.ConfigurationError, match="AsyncServer"):
        server.add(Coroutines())  # refused where it is added, not when a call fails to encode a coroutine
    assert server._services == {}  # nothing half-added
    assert {m.name for m in describe(Coroutines(), allow_async=True).methods} == {"fine", "later"}


def test_a_decorated_async_method_is_refused_too() -> None:
    import functools
    from typing import Any, Callable

    def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            return fn(*args)

        return wrapper

    @govrpc.service("unit.Wrapped")
    class Wrapped:
        @logged
        async def later(self) -> int:
            return 2

    with pytest.raises(govrpc.ConfigurationError, match="async def"):
        describe(Wrapped())
