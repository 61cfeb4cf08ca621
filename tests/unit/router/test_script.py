"""Script routes: CEL over the call, the consumer and each provider; escapes fail safely.

Every test runs on each script engine (cel-expr-python and cel-python's interpreter);
an engine that is not installed is skipped here and fails the run under ``CI=true``.
"""

from __future__ import annotations

import builtins
import logging
import os
import sys

import pytest

from govrpc.exceptions import RuleError
from govrpc.router import RouterChain, ScriptRouter, compile_rule
from govrpc.router import script as script_module

from tests.unit.router.helpers import consumer, invocation, provider, route

P = [provider("10.0.0.1:1001", tag="gray", weight="50"), provider("10.0.0.2:1002"), provider("10.0.0.3:1003")]
ALL = ["10.0.0.1:1001", "10.0.0.2:1002", "10.0.0.3:1003"]
UNTAGGED = tuple(P[1:])


@pytest.fixture(autouse=True, params=script_module.ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = request.param
    if name not in script_module.installed_engines():
        message = f"script engine {name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI") == "true" and (name == "cel-python" or sys.version_info >= (3, 11)):
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setattr(script_module, "default_engine", lambda: name)
    return name


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
    "provider.missing == 1",
    "1 / 0 == 1",
    "provider.port",
    "invocation.arguments[0] == 1",
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
    assert caught.value.position == text.index(")")
    text = 'kind: script\nscript: provider.port == 1 || invocation.method.matches("a")'
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "s")
    assert caught.value.position == text.index("matches")


@pytest.mark.parametrize("expression,needle", [
    ('__import__("os").system("true") == 0', "unknown name '__import__'"),
    ("providers.size() > 0", "unknown name 'providers'"),
    ('"text"', "gives string, not a bool"),
    ("provider.port + 1", "gives int, not a bool"),
])
def test_the_compiled_engine_checks_names_and_types_where_written(expression: str, needle: str, engine: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """cel-expr-python type-checks a script when it is written; cel-python finds the same
    mistakes only when it evaluates, and keeps every provider."""
    text = script(expression)
    if engine == "cel-expr-python":
        with pytest.raises(RuleError) as caught:
            compile_rule(text, "s")
        assert needle in str(caught.value)
        assert caught.value.position == text.index(expression)
    else:
        with caplog.at_level(logging.WARNING, logger="govrpc.router"):
            assert route(text, P) == ALL
        assert any("keeping every provider" in r.getMessage() for r in caplog.records)


def test_compiled_once_and_reads_declared() -> None:
    router = ScriptRouter('invocation.attachments["a"] == "b"')
    assert router.reads.all_attachments and not router.reads.all_arguments
    assert ScriptRouter("invocation.arguments[0] == 1").reads.all_arguments
    assert router.evaluate(invocation(attachments={"a": "b"}), consumer(), P[0].url) is True


def _chain_with(rule: str) -> RouterChain:
    return RouterChain(consumer(), routes={"s": rule}, local_first=False)


def test_a_failed_evaluation_is_not_cached(monkeypatch) -> None:
    """One failure keeps every provider for that call only: the next call evaluates again."""
    chain = _chain_with(script("provider.port == 1002"))
    (router,) = chain._swap(UNTAGGED).routers
    real = router._evaluate_batch
    failures = [1]

    def flaky(*args):
        if failures:
            failures.pop()
            raise ValueError("injected failure")
        return real(*args)

    monkeypatch.setattr(router, "_evaluate_batch", flaky)
    call = invocation("getUser")
    assert [i.url.address for i in chain.route(UNTAGGED, call)] == ALL[1:]  # failed: all kept, this time
    assert [i.url.address for i in chain.route(UNTAGGED, call)] == ["10.0.0.2:1002"]


def test_equal_but_differently_typed_arguments_are_routed_apart() -> None:
    chain = _chain_with(script("type(invocation.arguments[0]) == bool ? provider.port == 1002 : provider.port == 1003"))
    chain._swap(UNTAGGED)
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[1]))] == ["10.0.0.3:1003"]
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[True]))] == ["10.0.0.2:1002"]
    assert [i.url.address for i in chain.route(UNTAGGED, invocation(args=[1.0]))] == ["10.0.0.3:1003"]


def test_unseen_providers_of_a_call_are_evaluated_in_one_batch(monkeypatch) -> None:
    router = ScriptRouter("provider.port != 1002")
    real = router._evaluate_batch
    batches: list[int] = []

    def counted(invocation, consumer, providers):
        batches.append(len(providers))
        return real(invocation, consumer, providers)

    monkeypatch.setattr(router, "_evaluate_batch", counted)
    kept, _ = router.route(P, invocation(), consumer())
    assert [i.url.port for i in kept] == [1001, 1003] and batches == [3]
    router.route(P, invocation(), consumer())
    assert batches == [3]  # every verdict cached
    extra = provider("10.0.0.4:1004")
    kept, _ = router.route([*P, extra], invocation(), consumer())
    assert [i.url.port for i in kept] == [1001, 1003, 1004] and batches == [3, 1]


def test_a_provider_list_that_runs_out_of_iterations_together_is_judged_one_by_one() -> None:
    """90 iterations per provider fit one evaluation's budget; 200 providers' 18,000 do not."""
    many = [provider(f"10.0.{n // 200}.{n % 200 + 1}:{2000 + n}") for n in range(200)]
    loop = "[" + ",".join(str(i) for i in range(90)) + "]"
    router = ScriptRouter(f"{loop}.exists(i, provider.port == 2000 + i * 3)")
    kept, why = router.route(many, invocation(), consumer())
    assert [i.url.port for i in kept] == [2000 + i * 3 for i in range(67)], why


def test_a_trailing_comment_is_part_of_the_script() -> None:
    assert route(script("provider.port == 1002 // pinned"), P) == ["10.0.0.2:1002"]


def test_an_evaluation_over_its_cpu_time_limit_keeps_every_provider(monkeypatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(script_module, "MAX_SECONDS", -1.0)  # every evaluation is over the limit
    loop = "[" + ",".join(str(i) for i in range(100)) + "]"
    router = ScriptRouter(f"{loop}.all(i, i >= 0) && provider.port == 1002")
    with caplog.at_level(logging.WARNING, logger="govrpc.router"):
        kept, why = router.route(P, invocation(), consumer())
    assert list(kept) == P and "ScriptBudgetExceeded" in why


def test_no_python_is_evaluated_or_executed(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    router = ScriptRouter('invocation.method.startsWith("find") && provider.port > 1001 '
                          '&& [1, 2].all(x, x > 0) && has(provider.host)')
    kept, why = router.route(P, invocation("findUser"), consumer())
    assert [i.url.port for i in kept] == [1002, 1003], why


def test_the_compiled_engine_is_preferred_and_cel_python_is_the_fallback(monkeypatch) -> None:
    assert script_module.ENGINES == ("cel-expr-python", "cel-python")
    monkeypatch.setitem(script_module._MODULES, "cel-expr-python", "govrpc_no_such_module")
    assert script_module.installed_engines() == ("cel-python",)
    monkeypatch.setitem(script_module._MODULES, "cel-python", "govrpc_no_such_module_either")
    assert script_module.installed_engines() == ()


def test_an_unknown_engine_is_refused_with_the_known_ones() -> None:
    with pytest.raises(Exception) as caught:
        ScriptRouter("true", engine="v8")
    assert "unknown script engine 'v8'" in str(caught.value) and "cel-expr-python" in str(caught.value)


def test_a_script_nested_to_the_limit_still_routes_and_deeper_is_refused(engine: str) -> None:
    deep = "(" * 32 + "provider.port == 1002" + ")" * 32  # the list form is one level deeper
    assert route(script(deep), P) == ["10.0.0.2:1002"]
    if engine == "cel-expr-python":
        with pytest.raises(RuleError) as caught:
            compile_rule(script("(" * 40 + "true" + ")" * 40), "s")
        assert "nested too deeply" in str(caught.value)


@pytest.mark.parametrize("expression,fields", [
    ('provider.port % 7 != 0 || invocation.method.startsWith("get")', {"port"}),
    ('has(provider.tag) && provider["zone"] == "a" && provider . host == "x"', {"tag", "zone", "host"}),
    ("provider.size() > 1", None),
    ('"tag" in provider', None),
    ("provider[invocation.method] == 1", None),
    ("[1].exists(provider, provider == 1)", None),
    ('"provider" == "x"', None),
    ("myprovider.x == 1 && x.provider == 1", set()),
])
def test_fields_read_is_what_a_script_selects_or_none(expression: str, fields: set[str] | None) -> None:
    found = script_module.fields_read(expression, "provider")
    assert (None if found is None else set(found)) == fields


def test_a_script_that_uses_the_whole_map_sees_every_field() -> None:
    assert route(script('"tag" in provider'), P) == ["10.0.0.1:1001"]
    assert route(script("provider.size() > 5"), P) == ["10.0.0.1:1001"]  # tag and weight on top of 5
    either = script('has(provider.weight) && provider.weight == "50" || provider.port == 1003')
    assert route(either, P) == ["10.0.0.1:1001", "10.0.0.3:1003"]
