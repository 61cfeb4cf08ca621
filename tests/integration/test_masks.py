"""Mask degradation, mocks and fallbacks over real gRPC; masks pushed through the registry."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import govrpc
from govrpc.cli import main
from tests.helpers import wait_until
from tests.integration.degrade_services import Flaky
from tests.integration.services import OutOfStock

SAFE = f"{OutOfStock.__module__}.OutOfStock"


def _answer(proxy: Any, method: str = "get", *args: Any) -> Any:
    """The call's value, or the type of what it raised."""
    try:
        return getattr(proxy, method)(*args)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


@pytest.mark.parametrize("mask, expected", [
    ("force:return null", None),
    ('force:return {"items": []}', {"items": []}),
    ("force:throw RateLimitedError", govrpc.RateLimitedError),
    (f"force:throw {SAFE}", OutOfStock),
    ("force:mock", "mock:7"),
])
def test_force_masks_never_reach_the_provider(memory_registry, start_server, client_factory,
                                              mask: str, expected: Any) -> None:
    flaky = Flaky("a")
    start_server(memory_registry, flaky)
    proxy = client_factory(memory_registry).proxy("test.Flaky", mock=mask)
    assert [_answer(proxy, "get", 7) for _ in range(3)] == [expected] * 3
    assert flaky.hits == 0


@pytest.mark.parametrize("mask, expected", [
    ("fail:return null", None),
    ('fail:return {"items": []}', {"items": []}),
    ("fail:throw RateLimitedError", govrpc.RateLimitedError),
    (f"fail:throw {SAFE}", OutOfStock),
    ("fail:mock", "mock:7"),
    ("return 5", 5),  # no mode: fail, as Dubbo
])
def test_fail_masks_answer_only_failed_calls_after_the_retries(memory_registry, start_server, client_factory,
                                                               mask: str, expected: Any) -> None:
    one, two = Flaky("one"), Flaky("two")
    start_server(memory_registry, one)
    start_server(memory_registry, two)
    client = client_factory(memory_registry)
    proxy = client.proxy("test.Flaky", mock=mask, retries=1)
    wait_until(lambda: len(client.reference("test.Flaky", mock=mask, retries=1).directory.invokers) == 2, timeout=5)
    assert _answer(proxy, "get", 7) in ("one", "two")  # healthy: the provider answers
    one.mode = two.mode = "down"
    assert _answer(proxy, "get", 7) == expected
    assert one.hits + two.hits == 3  # the cluster retried before the mask answered
    one.mode = two.mode = "business"  # a business error is an answer, not a failure
    assert _answer(proxy, "get", 7) is OutOfStock


def test_a_fail_mask_is_the_fallback_of_an_open_breaker(memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    flaky.mode = "down"
    start_server(memory_registry, flaky)
    proxy = client_factory(memory_registry).proxy("test.Flaky", cluster="failfast", mock="fail:mock",
                                                  breaker={"failures": 2, "open": 30})
    assert [proxy.get(i) for i in range(5)] == [f"mock:{i}" for i in range(5)]
    assert flaky.hits == 2  # open after two: the mock answered without a network call


def test_per_method_masks_leave_other_methods_alone(memory_registry, start_server, client_factory) -> None:
    flaky = Flaky("a")
    start_server(memory_registry, flaky)
    proxy = client_factory(memory_registry).proxy("test.Flaky", methods={"items": {"mock": "force:return []"}})
    assert proxy.items() == [] and proxy.get() == "a"
    assert flaky.hits == 1


def test_mock_problems_are_clear_errors(memory_registry, client_factory) -> None:
    client = client_factory(memory_registry)
    with pytest.raises(govrpc.ConfigurationError, match="no local mock class for test.Nothing"):
        client.proxy("test.Nothing", mock="force:mock")
    with pytest.raises(govrpc.ConfigurationError, match="items.mock: the mock FlakyMock .* no method 'items'"):
        client.proxy("test.Flaky", methods={"items": {"mock": "fail:mock"}})


@pytest.mark.parametrize("text, problem", [
    ("force:return {bad", "not JSON"), ("force:throw NoSuchError", "NoSuchError"), ("force:explode", "is not"),
    ("force:throw", "needs an error name")])
def test_bad_masks_are_refused_where_written_naming_the_key(memory_registry, client_factory, text: str,
                                                            problem: str) -> None:
    with pytest.raises(govrpc.ConfigurationError, match=f"mock.*{problem}"):
        client_factory(memory_registry).proxy("test.Flaky", mock=text)
    with govrpc.Admin(memory_registry) as admin:
        action = text.split(":", 1)[1]
        with pytest.raises(govrpc.ConfigurationError, match=f"find.mock.*{problem}"):
            admin.mask("test.Flaky", action, methods=["find"])
        with pytest.raises(govrpc.RuleError, match=problem):
            admin.set_override("test.Flaky", "m", f"mock = {text}")
        assert admin.rules("test.Flaky", "configurators") == {}


def test_admin_mask_refuses_a_method_the_local_mock_lacks(memory_registry) -> None:
    with govrpc.Admin(memory_registry) as admin:
        with pytest.raises(govrpc.ConfigurationError, match="items.mock: the mock FlakyMock"):
            admin.mask("test.Flaky", "mock", methods=["items"])


def _pushed_mask_reaches_a_running_consumer(registry: str, start_server: Any, client_factory: Any,
                                            caplog: Any) -> None:
    flaky = Flaky("a")
    start_server(registry, flaky)
    client = client_factory(registry)
    proxy = client.proxy("test.Flaky")
    assert proxy.get() == "a" and proxy.items() == {"items": ["real"]}
    with govrpc.Admin(registry) as admin:
        admin.mask("test.Flaky", 'return {"items": []}', methods=["items"])
        wait_until(lambda: proxy.items() == {"items": []}, timeout=1.0, what="the mask to apply")
        hits = flaky.hits
        assert proxy.items() == {"items": []} and flaky.hits == hits  # force: not called
        assert proxy.get() == "a"
        admin.mask("test.Flaky", "throw RateLimitedError", methods=["get"], force=False)
        assert admin.masks("test.Flaky") == {"items.mock": 'force:return {"items": []}',
                                             "get.mock": "fail:throw RateLimitedError"}
        # a broken mask arriving from the registry: the consumer keeps the last good one and says why
        with caplog.at_level(logging.ERROR, logger="govrpc.configurator"):
            admin.registry.put_rule("test.Flaky", "configurators", "mask", "items.mock = force:return {broken")
            wait_until(lambda: "broken" in caplog.text, timeout=2.0, what="the refusal to be logged")
        assert proxy.items() == {"items": []}
        admin.mask("test.Flaky", 'return {"items": []}', methods=["items"])  # overwrite the broken node
        admin.unmask("test.Flaky", methods=["items"])
        wait_until(lambda: proxy.items() == {"items": ["real"]}, timeout=1.0, what="the unmask to apply")
        admin.mask("test.Flaky", "return null")
        wait_until(lambda: proxy.get() is None, timeout=1.0)
        admin.unmask("test.Flaky")
        wait_until(lambda: proxy.get() == "a", timeout=1.0)
        assert admin.masks("test.Flaky") == {}


def test_a_mask_written_through_admin_on_zookeeper(zk_url, start_server, client_factory, caplog) -> None:
    _pushed_mask_reaches_a_running_consumer(zk_url(), start_server, client_factory, caplog)


def test_a_mask_written_through_admin_on_the_file_registry(file_registry, start_server, client_factory,
                                                           caplog) -> None:
    _pushed_mask_reaches_a_running_consumer(file_registry, start_server, client_factory, caplog)


def test_cli_mask_and_unmask(file_registry, start_server, client_factory, capsys) -> None:
    flaky = Flaky("a")
    start_server(file_registry, flaky)
    proxy = client_factory(file_registry).proxy("test.Flaky")
    assert main(["mask", "test.Flaky", "return", '"cli"', "--method", "get", "--registry", file_registry]) == 0
    assert "get.mock = force:return \"cli\"" in capsys.readouterr().out
    wait_until(lambda: proxy.get() == "cli", timeout=1.0)
    assert main(["mask", "test.Flaky", "return", "{oops", "--registry", file_registry]) == 2
    assert "mock" in capsys.readouterr().err
    assert main(["unmask", "test.Flaky", "--registry", file_registry]) == 0
    wait_until(lambda: proxy.get() == "a", timeout=1.0)
