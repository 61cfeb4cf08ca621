"""Script routes: a CEL expression decides, per provider, whether it is kept.

    kind: script
    script: provider.tag == "gray" || !invocation.method.startsWith("write")

The expression sees three maps: ``invocation`` (``method``, ``arguments``, ``kwargs``,
``attachments``), ``consumer`` and ``provider`` (``host``, ``port``, ``address`` and
every URL parameter). It runs in cel-python's interpreter: no Python is executed,
there are no imports, attributes or loops beyond CEL's bounded macros, and every
evaluation has a step budget and a time limit. ``matches()`` (regular expressions,
which can backtrack without bound) is refused. An expression that fails or runs
out of budget for any provider keeps every provider for that call and is logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Hashable, Mapping, Sequence

from govrpc.exceptions import ConfigurationError, RuleError
from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import Reads, RouteFailed, Router, arguments_key
from govrpc.router.rule import RouteRule, Scalar
from govrpc.url import URL

__all__ = ["MAX_SCRIPT_LENGTH", "MAX_SECONDS", "MAX_STEPS", "ScriptBudgetExceeded", "ScriptRouter"]

log = logging.getLogger("govrpc.router")

MAX_SCRIPT_LENGTH = 4096
MAX_STEPS = 20_000        # AST nodes visited per evaluation
MAX_SECONDS = 0.05        # CPU time of the routing thread per evaluation
VERDICT_LIMIT = 65_536
_UNCACHED = object()
_FORBIDDEN_FUNCTIONS = {"matches": "regular expressions can run without bound"}


class ScriptBudgetExceeded(Exception):
    """An evaluation visited too many nodes or ran too long."""


def _celpy() -> Any:
    try:
        import celpy
    except ImportError:  # pragma: no cover - an extra
        raise ConfigurationError("script route rules need cel-python: pip install govrpc[script]") from None
    return celpy


_EVALUATOR: Any = None


def _evaluator_class() -> Any:
    """cel-python's tree-walking evaluator with a step and time budget shared by macro sub-evaluations."""
    global _EVALUATOR
    if _EVALUATOR is None:
        from celpy.evaluation import Evaluator

        class BudgetEvaluator(Evaluator):
            def __init__(self, ast: Any, activation: Any, budget: list[float]) -> None:
                super().__init__(ast, activation)
                self.budget = budget

            def visit(self, tree: Any) -> Any:
                budget = self.budget
                budget[0] -= 1
                if budget[0] < 0:
                    raise ScriptBudgetExceeded(f"more than {MAX_STEPS} evaluation steps")
                if not int(budget[0]) & 255 and time.thread_time() > budget[1]:
                    raise ScriptBudgetExceeded(f"longer than {MAX_SECONDS * 1000:.0f} ms")
                return super().visit(tree)

            def sub_evaluator(self, ast: Any) -> Any:
                return BudgetEvaluator(ast, self.activation, self.budget)

        _EVALUATOR = BudgetEvaluator
    return _EVALUATOR


def _to_cel(value: Any, depth: int = 0) -> Any:
    """A Python value as CEL sees it; what CEL has no type for becomes its ``str``."""
    celpy = _celpy()
    types = celpy.celtypes
    if value is None:
        return None
    if isinstance(value, bool):
        return types.BoolType(value)
    if isinstance(value, int):
        return types.IntType(value)
    if isinstance(value, float):
        return types.DoubleType(value)
    if isinstance(value, str):
        return types.StringType(value)
    if isinstance(value, bytes):
        return types.BytesType(value)
    if depth < 8 and isinstance(value, (list, tuple)):
        return types.ListType([_to_cel(v, depth + 1) for v in value])
    if depth < 8 and isinstance(value, Mapping):
        return types.MapType({types.StringType(str(k)): _to_cel(v, depth + 1) for k, v in value.items()})
    return types.StringType(str(value))


def _url_map(url: URL) -> Any:
    fields: dict[str, Any] = dict(url.params)
    fields.update(host=url.host, port=url.port, address=url.address, protocol=url.scheme, service=url.path)
    return _to_cel(fields)


class ScriptRouter(Router):
    """Keeps the providers for which a CEL expression is true (group ``govrpc.router``, kind ``script``).

    Compiled once per rule version; thread-safe (every evaluation has its own
    evaluator); an error or an exhausted budget keeps every provider and is logged.
    """

    def __init__(self, expression: str, *, name: str = "", priority: int = 0, force: bool = False,
                 runtime: bool = False, offset: int = 0, document: str | None = None) -> None:
        celpy = _celpy()
        self.name = name or "script"
        self.expression = expression
        self.priority = priority
        self.force = force
        self.runtime = runtime
        document = expression if document is None else document
        if not expression.strip():
            raise RuleError("script is empty", rule=document, position=offset)
        if len(expression) > MAX_SCRIPT_LENGTH:
            raise RuleError(f"script is {len(expression)} characters long; the limit is {MAX_SCRIPT_LENGTH}",
                            rule=expression[:80], position=offset)
        limit = sys.getrecursionlimit()
        self._environment = celpy.Environment()  # sets the recursion limit to 2500
        sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
        try:
            self._ast = self._environment.compile(expression)
        except celpy.CELParseError as exc:
            column = getattr(exc, "column", None)
            line = getattr(exc, "line", None)
            position = offset
            if isinstance(column, int) and isinstance(line, int) and line >= 1:
                lines = expression.split("\n")
                position = offset + sum(len(l) + 1 for l in lines[:line - 1]) + max(column - 1, 0)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            raise RuleError(f"script does not parse: {first}", rule=expression, position=position) from None
        for token in self._ast.scan_values(lambda t: getattr(t, "type", "") == "IDENT"):
            reason = _FORBIDDEN_FUNCTIONS.get(str(token))
            if reason is not None:
                at = offset + (token.start_pos or 0)
                raise RuleError(f"{token}() is not allowed in a script rule: {reason}", rule=expression,
                                position=at)
        self._runner = self._environment.program(self._ast)
        self._provider_maps: dict[URL, Any] = {}
        self._consumer_maps: dict[URL, Any] = {}
        self.reads = Reads(all_arguments="arguments" in expression or "kwargs" in expression,
                           all_attachments="attachments" in expression)
        self._reads_invocation = "invocation" in expression
        # (call key, consumer, provider) -> verdict: after a provider or rule change only
        # providers and calls not seen before are evaluated again
        self._verdicts: dict[Hashable, bool] = {}

    @classmethod
    def from_rule(cls, rule: RouteRule) -> Sequence[Router]:
        rule.check_keys(("script", "type"))
        language = rule.fields.get("type")
        if language is not None and not (isinstance(language, Scalar) and language.text.lower() == "cel"):
            raise rule.error("type must be cel (the only script language govrpc runs)",
                             getattr(language, "offset", None))
        script = rule.fields.get("script")
        if not isinstance(script, Scalar):
            raise rule.error("a script rule needs 'script: <CEL expression>' (one line)")
        return [cls(script.text, name=rule.name, priority=rule.priority, force=rule.force,
                    runtime=rule.runtime, offset=script.offset, document=rule.text)]

    def _map(self, cache: dict[URL, Any], url: URL) -> Any:
        value = cache.get(url)
        if value is None:
            if len(cache) > 4096:
                cache.clear()
            value = cache[url] = _url_map(url)
        return value

    def evaluate(self, invocation: Invocation, consumer: URL, provider: URL) -> bool:
        """The expression's value for one provider; raises on an error or a non-boolean value."""
        return self._evaluate(self._invocation_map(invocation), self._map(self._consumer_maps, consumer), provider)

    def _invocation_map(self, invocation: Invocation) -> Any:
        return _to_cel({"method": invocation.method, "arguments": list(invocation.args),
                        "kwargs": dict(invocation.kwargs), "attachments": dict(invocation.attachments)})

    def _evaluate(self, invocation_map: Any, consumer_map: Any, provider: URL) -> bool:
        celpy = _celpy()
        activation = {"invocation": invocation_map, "consumer": consumer_map,
                      "provider": self._map(self._provider_maps, provider)}
        # CPU time, not the wall clock: other threads holding the GIL must not fail a script
        budget = [float(MAX_STEPS), time.thread_time() + MAX_SECONDS]
        evaluator = _evaluator_class()(self._ast, self._runner.new_activation(), budget)
        try:
            value = evaluator.evaluate(activation)
        except ScriptBudgetExceeded:
            raise
        except celpy.CELEvalError as exc:
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None
        except RecursionError:
            raise ScriptBudgetExceeded("nested too deeply") from None
        if not isinstance(value, celpy.celtypes.BoolType):
            raise ValueError(f"the expression gave {type(value).__name__} {value!r}, not a bool")
        return bool(value)

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        try:
            call_key = self._call_key(invocation)
            verdicts = self._verdicts
            if len(verdicts) > VERDICT_LIMIT:
                verdicts.clear()
            invocation_map = consumer_map = None
            kept = []
            for invoker in invokers:
                key = (call_key, consumer, invoker.url)
                verdict = verdicts.get(key) if call_key is not _UNCACHED else None
                if verdict is None:
                    if invocation.remaining() <= 0:  # the whole route, not only one evaluation, is bounded
                        raise ScriptBudgetExceeded("the call's deadline passed while routing")
                    if invocation_map is None:
                        invocation_map = self._invocation_map(invocation)
                        consumer_map = self._map(self._consumer_maps, consumer)
                    verdict = self._evaluate(invocation_map, consumer_map, invoker.url)
                    if call_key is not _UNCACHED:
                        verdicts[key] = verdict
                if verdict:
                    kept.append(invoker)
        except Exception as exc:  # noqa: BLE001 - a script must never break a call
            log.warning("script route %r failed for %s (%s: %s); keeping every provider",
                        self.name, invocation, type(exc).__name__, exc)
            return invokers, RouteFailed(f"script failed ({type(exc).__name__}: {exc}): all kept")
        if kept or self.force:
            return kept, f"kept providers for which '{self.expression}' is true"
        return invokers, "script keeps no provider; not forced: rule ignored, all kept"

    def _call_key(self, invocation: Invocation) -> Hashable:
        """What of the call the verdict depends on (``_UNCACHED`` if that cannot be hashed)."""
        if not self._reads_invocation:
            return None
        reads = self.reads
        key = (invocation.method,
               arguments_key(invocation) if reads.all_arguments else None,
               tuple(sorted(invocation.attachments.items())) if reads.all_attachments else None)
        try:
            hash(key)
        except TypeError:
            return _UNCACHED
        return key

    def __repr__(self) -> str:
        return f"ScriptRouter({self.name!r}, {self.expression!r})"
