"""Filter chains: order, continuation, refusal (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

import govrpc
from govrpc.invocation import Filter, Invocation, Invoker, build_filter_chain
from govrpc.url import URL, ServiceKey


class Recorder(Invoker):
    def __init__(self) -> None:
        self.url = URL.parse("grpc://127.0.0.1:1/s")
        self.seen: list[Invocation] = []

    def invoke(self, invocation: Invocation) -> Any:
        self.seen.append(invocation)
        return "done"


class Tracing(Filter):
    def __init__(self, name: str, order: int, log: list[str]) -> None:
        self.name, self.order, self.log = name, order, log  # type: ignore[misc]

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return invoker.invoke(invocation)
        finally:
            self.log.append(f"<{self.name}")


class Refuse(Filter):
    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        raise govrpc.RateLimitedError(f"{invocation}: refused", invocation=invocation)


def test_filters_run_in_order_around_the_invoker() -> None:
    log: list[str] = []
    end = Recorder()
    chain = build_filter_chain([Tracing("b", 20, log), Tracing("a", 10, log)], end)
    assert chain.invoke(Invocation(ServiceKey("s"), "m")) == "done"
    assert log == ["a>", "b>", "<b", "<a"]
    assert chain.url == end.url


def test_no_filters_means_the_invoker_itself() -> None:
    end = Recorder()
    assert build_filter_chain([], end) is end


def test_a_filter_can_refuse_a_call() -> None:
    end = Recorder()
    chain = build_filter_chain([Refuse()], end)
    with pytest.raises(govrpc.RateLimitedError):
        chain.invoke(Invocation(ServiceKey("s"), "m"))
    assert end.seen == []


class OnlyFor(Filter):
    """Binds to the services it was told about and to nothing else."""

    def __init__(self, service: str, log: list[str]) -> None:
        self.service, self.log = service, log

    def bind(self, url: URL) -> Filter | None:
        return self if url.path == self.service else None

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        self.log.append(self.service)
        return invoker.invoke(invocation)


def test_a_filter_bound_to_none_is_no_link() -> None:
    log: list[str] = []
    end = Recorder()  # serves path "s"
    assert build_filter_chain([OnlyFor("other", log)], end) is end
    chain = build_filter_chain([OnlyFor("s", log), OnlyFor("other", log)], end)
    assert chain.invoke(Invocation(ServiceKey("s"), "m")) == "done"
    assert log == ["s"]


def test_bind_sees_the_url_it_is_given() -> None:
    log: list[str] = []
    end = Recorder()
    chain = build_filter_chain([OnlyFor("t", log)], end, URL.parse("grpc://127.0.0.1:1/t"))
    chain.invoke(Invocation(ServiceKey("t"), "m"))
    assert log == ["t"]


def test_load_filters_checks_side_and_level() -> None:
    from govrpc.invocation import load_filters

    class Provider(Filter):
        side = "provider"

        def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
            return invoker.invoke(invocation)

    class Nowhere(Filter):
        level = "somewhere"

        def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
            return invoker.invoke(invocation)

    with pytest.raises(govrpc.ConfigurationError, match="provider side"):
        load_filters([Provider()], "consumer")
    with pytest.raises(govrpc.ConfigurationError, match="level must be one of reference, invoker"):
        load_filters([Nowhere()], "consumer")
    with pytest.raises(govrpc.ConfigurationError, match="not a govrpc Filter"):
        load_filters([object()], "provider")  # type: ignore[list-item]


def test_provider_context_trailing_metadata_is_checked() -> None:
    from govrpc.invocation import ProviderContext

    context = ProviderContext(peer="ipv4:127.0.0.1:1", application="web")
    context.set_trailing("x-load", "0.5")
    context.set_trailing("orca-bin", b"\x01")
    assert context.trailing == [("x-load", "0.5"), ("orca-bin", b"\x01")]
    with pytest.raises(govrpc.ConfigurationError, match="lower-case"):
        context.set_trailing("X-Load", "1")
    with pytest.raises(govrpc.ConfigurationError, match="-bin"):
        context.set_trailing("x-load", b"1")


def test_auto_filters_of_the_side_come_first_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from govrpc import invocation as module

    class Stage(Filter):
        side = "consumer"
        auto = True

        def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
            return invoker.invoke(invocation)

    class ProviderStage(Stage):
        side = "provider"

    class Manual(Stage):
        auto = False

    installed = {"stage": Stage, "provider-stage": ProviderStage, "manual": Manual}
    monkeypatch.setattr(module, "extension_names", lambda group: sorted(installed))
    monkeypatch.setattr(module, "get_extension", lambda group, name: installed[name])
    log: list[str] = []
    mine = Tracing("mine", 0, log)
    loaded = module.load_filters([mine], "consumer")
    assert [type(f) for f in loaded] == [Stage, Tracing]
    assert [type(f) for f in module.load_filters([], "provider")] == [ProviderStage]
    given = Stage()
    assert module.load_filters([given], "consumer") == [given]  # given by hand: not twice
    assert module.load_filters([], "consumer", auto=False) == []
