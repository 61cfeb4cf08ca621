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
