"""Script routes: CEL over the call, the consumer and each provider; escapes fail safely."""

from __future__ import annotations

import logging

import pytest

from govrpc.exceptions import RuleError
from govrpc.router import ScriptRouter, compile_rule

from tests.unit.router.helpers import consumer, invocation, provider, route

P = [provider("10.0.0.1:1001", tag="gray", weight="50"), provider("10.0.0.2:1002"), provider("10.0.0.3:1003")]
ALL = ["10.0.0.1:1001", "10.0.0.2:1002", "10.0.0.3:1003"]
UNTAGGED = tuple(P[1:])


def script(expression: str, **header: str) -> str:
    lines = [f"{k}: {v}" for k, v in header.items()]
    return "\n".join(["kind: script", *lines, f"script: '{expression}'"]) if "'" not in expression else \
        "\n".join(["kind: script", *lines, f'script: "{expression}"'])


def test_provider_parameters_and_address() -> None:
    assert route(script('has(provider.tag) && provider.tag == "gray"'), P) == ["10.0.0.1:1001"]
    assert route(script("provider.port > 1001"), P) == ALL[1:]
    assert route(script('provider.host.startsWith("10.0.0.3")'), P) == ["10.0.0.3:1003"]


def test_invocation_method_arguments_kwargs_and_attachments() -> None:
    rule = script('invocation.method.startsWith("get") && invocation.arguments[0] > 10 '
                  '&& invocation.attachments["region"] == "eu" && invocation.kwargs["x"] == "y" '
                  '? provider.port == 1002 : true')
    call = invocation("getUser", args=[11], attachments={"region": "eu"}, kwargs={"x": "y"})
    assert route(rule, P, call) == ["10.0.0.2:1002"]
    assert route(rule, P, invocation("getUser", args=[5], attachments={"region": "eu"}, kwargs={"x": "y"})) == ALL
    assert route(rule, P, invocation("setUser", args=[11], attachments={"region": "eu"}, kwargs={"x": "y"})) == ALL


def test_consumer_is_visible() -> None:
    rule = script('consumer.application == "web" ? provider.port == 1003 : true')
    assert route(rule, P, who=consumer(application="web")) == ["10.0.0.3:1003"]
    assert route(rule, P, who=consumer(application="batch")) == ALL


def test_empty_result_is_ignored_unless_forced() -> None:
    assert route(script("provider.port == 1"), P) == ALL
    assert route(script("provider.port == 1", force="true"), P) == []


@pytest.mark.parametrize("expression", [
    "provider.__class__ == provider",
    'provider["__class__"] == "x"',
    "invocation.method.__class__.__mro__ == 1",
    '__import__("os").system("true") == 0',
    "provider.missing == 1",
    "1 / 0 == 1",
    '"text"',
    "provider.port",
])
def test_an_expression_that_fails_keeps_every_provider_and_is_logged(expression: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="govrpc.router"):
        assert route(script(expression), P) == ALL
    assert any("keeping every provider" in r.getMessage() for r in caplog.records)


def test_huge_loops_run_out_of_budget_and_keep_every_provider(caplog: pytest.LogCaptureFixture) -> None:
    big = "[" + ",".join(str(i) for i in range(60)) + "]"
    expression = f"{big}.all(a, {big}.all(b, {big}.all(c, a + b + c >= 0)))"  # 216,000 steps
    router = ScriptRouter(expression)
    with caplog.at_level(logging.WARNING, logger="govrpc.router"):
        kept, why = router.route(P, invocation(), consumer())
    assert list(kept) == P and "ScriptBudgetExceeded" in why
    assert any("ScriptBudgetExceeded" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text,needle", [
    ("kind: script\nscript: provider.port ==", "does not parse"),
    ("kind: script\nscript: import os", "does not parse"),
    ('kind: script\nscript: invocation.method.matches("(a+)+$")', "matches() is not allowed"),
    ("kind: script\nscript: ''", "script is empty"),
    ("kind: script\ntype: javascript\nscript: 'true'", "type must be cel"),
    ("kind: script\nscript: " + "1 + " * 1100 + "1 == 1", "characters long"),
])
def test_bad_scripts_are_refused_where_written(text: str, needle: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "s")
    assert needle in str(caught.value)


def test_a_parse_error_names_its_position_in_the_document() -> None:
    text = "kind: script\nscript: provider.port == )"
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "s")
    assert f"at position {text.index(')')}" in str(caught.value)


def test_compiled_once_and_reads_declared() -> None:
    router = ScriptRouter('invocation.attachments["a"] == "b"')
    assert router.reads.all_attachments and not router.reads.all_arguments
    assert ScriptRouter("invocation.arguments[0] == 1").reads.all_arguments
    assert router.evaluate(invocation(attachments={"a": "b"}), consumer(), P[0].url) is True


def _chain_with(rule: str):
    from govrpc.router.chain import RouterChain

    return RouterChain(consumer(), routes={"s": rule}, local_first=False)


def test_a_failed_evaluation_is_not_cached(monkeypatch) -> None:
    """One failure keeps every provider for that call only: the next call evaluates again."""
    chain = _chain_with(script("provider.port == 1002"))
    (router,) = chain._swap(UNTAGGED).routers
    real = router._evaluate
    failures = [1]

    def flaky(*args):
        if failures:
            failures.pop()
            raise ValueError("injected failure")
        return real(*args)

    monkeypatch.setattr(router, "_evaluate", flaky)
    call = invocation("getUser")
    assert [i.url.address for i in chain.route(UNTAGGED, call)] == ALL[1:]  # failed: all kept, this time
    assert [i.url.address for i in chain.route(UNTAGGED, call)] == ["10.0.0.2:1002"]


def test_equal_but_differently_typed_arguments_are_routed_apart() -> None:
    chain = _chain_with(script("type(invocation.arguments[0]) == bool ? provider.port == 1002 : provider.port == 1003"))
    chain._swap(UNTAGGED)
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[1]))] == ["10.0.0.3:1003"]
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[True]))] == ["10.0.0.2:1002"]
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[1.0]))] == ["10.0.0.3:1003"]
