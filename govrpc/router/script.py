"""Script routes: a CEL expression decides, per provider, whether it is kept.

    kind: script
    script: provider.tag == "gray" || !invocation.method.startsWith("write")

The expression sees three maps: ``invocation`` (``method``, ``arguments``, ``kwargs``,
``attachments``), ``consumer`` and ``provider`` (``host``, ``port``, ``address`` and
every URL parameter). Two engines run it, neither executes Python from the rule:

- ``cel-expr-python`` (Google's C++ CEL runtime, preferred): the expression is
  parsed and type-checked when the rule is written (an unknown name or a result
  that cannot be a bool is refused there), and an evaluation stops after 10,000
  comprehension iterations. A call's unseen providers are evaluated in one
  evaluation over their list (``providers.map(provider, <script>)``); one whose
  list runs out of iterations is evaluated provider by provider, each with its own
  budget.
- ``cel-python``'s interpreter (the fallback where the first has no wheel: Python
  3.10, musl): a tree walk with a budget of 20,000 steps per provider.

Both: no imports, no attributes, no loops beyond CEL's bounded macros; ``matches()``
(regular expressions) is refused; an evaluation that takes more than 50 ms of the
routing thread's CPU time fails (the interpreter stops there, native code is checked
when it returns). An expression that fails or runs out of budget for any provider
keeps every provider for that call and is logged.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import time
from typing import Any, Callable, Hashable, Mapping, Protocol, Sequence

from govrpc.exceptions import ConfigurationError, RuleError
from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import Reads, RouteFailed, Router, arguments_key
from govrpc.router.rule import RouteRule, Scalar
from govrpc.url import URL

__all__ = ["ENGINES", "MAX_ITERATIONS", "MAX_SCRIPT_LENGTH", "MAX_SECONDS", "MAX_STEPS", "ScriptBudgetExceeded",
           "ScriptRouter", "default_engine", "fields_read", "installed_engines"]

log = logging.getLogger("govrpc.router")

ENGINES = ("cel-expr-python", "cel-python")  # in the order of preference
MAX_SCRIPT_LENGTH = 4096
MAX_ITERATIONS = 10_000   # comprehension iterations per evaluation (cel-expr-python's fixed budget)
MAX_STEPS = 20_000        # AST nodes visited per evaluation (cel-python)
MAX_SECONDS = 0.05        # CPU time of the routing thread per evaluation
VERDICT_LIMIT = 65_536
MAX_DEPTH = 8             # nesting of argument values handed to CEL; deeper ones become their str
_UNCACHED = object()
_FORBIDDEN_FUNCTIONS = {"matches": "regular expressions can run without bound"}
_MODULES = {"cel-expr-python": "cel_expr_python.cel", "cel-python": "celpy"}


class ScriptBudgetExceeded(Exception):
    """An evaluation ran too many iterations or steps, or too long."""


def installed_engines() -> tuple[str, ...]:
    """The script engines importable here, preferred first."""
    found = []
    for name in ENGINES:
        try:
            __import__(_MODULES[name])
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


@functools.cache
def default_engine() -> str:
    """The engine a ``ScriptRouter`` uses unless told: the first of ``ENGINES`` installed."""
    engines = installed_engines()
    if not engines:
        raise ConfigurationError("script route rules need a CEL engine: pip install govrpc[script] "
                                 "(cel-expr-python, or cel-python where it has no wheel)")
    return engines[0]


def _plain(value: Any, depth: int = 0) -> Any:
    """A Python value as CEL sees it (None, bool, int, float, str, bytes, lists and string-keyed
    maps); anything else, or anything nested deeper than ``MAX_DEPTH``, becomes its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if depth < MAX_DEPTH and isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return str(value)


_SELECT = re.compile(r"""\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()|\[\s*(?:"([^"\\\n]*)"|'([^'\\\n]*)')\s*\])""")


def fields_read(expression: str, name: str) -> frozenset[str] | None:
    """The fields of the map ``name`` that ``expression`` selects (``name.field``, ``name["field"]``),
    or None when it may use the map some other way (as a whole, with a computed key, as a
    comprehension variable...). Conservative: a string literal can only make it read more."""
    fields = set()
    for found in re.finditer(rf"(?<![\w.]){name}(?!\w)", expression):
        select = _SELECT.match(expression, found.end())
        if select is None:
            return None
        fields.add(next(g for g in select.groups() if g is not None))
    return frozenset(fields)


def _only(fields: dict[str, Any], read: frozenset[str] | None) -> dict[str, Any]:
    return fields if read is None else {k: fields[k] for k in read if k in fields}


def _url_fields(url: URL, read: frozenset[str] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = dict(url.params)
    fields.update(host=url.host, port=url.port, address=url.address, protocol=url.scheme, service=url.path)
    return {k: _plain(v) for k, v in _only(fields, read).items()}


_INVOCATION_FIELDS: dict[str, Callable[[Invocation], Any]] = {
    "method": lambda i: i.method,
    "arguments": lambda i: _plain(list(i.args)),
    "kwargs": lambda i: _plain(dict(i.kwargs)),
    "attachments": lambda i: _plain(dict(i.attachments)),
}


def _invocation_fields(invocation: Invocation, read: frozenset[str] | None = None) -> dict[str, Any]:
    return {k: field(invocation) for k, field in _INVOCATION_FIELDS.items() if read is None or k in read}


def _check_length(expression: str, document: str, offset: int) -> None:
    if not expression.strip():
        raise RuleError("script is empty", rule=document, position=offset)
    if len(expression) > MAX_SCRIPT_LENGTH:
        raise RuleError(f"script is {len(expression)} characters long; the limit is {MAX_SCRIPT_LENGTH}",
                        rule=expression[:80], position=offset)


def _forbidden(name: str, expression: str, position: int) -> RuleError | None:
    reason = _FORBIDDEN_FUNCTIONS.get(name)
    return None if reason is None else RuleError(f"{name}() is not allowed in a script rule: {reason}",
                                                 rule=expression, position=position)


def _on_time(started: float, what: str) -> None:
    if time.thread_time() - started > MAX_SECONDS:
        raise ScriptBudgetExceeded(f"{what} took longer than {MAX_SECONDS * 1000:.0f} ms")


# -- cel-expr-python: Google's C++ runtime -----------------------------------------------------

_NATIVE_LOCK = threading.Lock()
_NATIVE_ERROR = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_BUDGET_MESSAGE = "Iteration budget exceeded"


@functools.cache
def _native_environments() -> tuple[Any, Any, Any]:
    """The cel module, the environment a script is checked in, and the one evaluating it over a list."""
    from cel_expr_python import cel

    fields = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
    names = {"invocation": fields, "consumer": fields}
    config = cel.NewEnvConfigFromYaml(
        "stdlib:\n  exclude_functions:\n" + "".join(f"    - name: {n}\n" for n in _FORBIDDEN_FUNCTIONS))
    single = cel.NewEnv(config=config, variables={**names, "provider": fields})
    listed = cel.NewEnv(config=config, variables={**names, "providers": cel.Type.List(fields)})
    return cel, single, listed


class _NativeProgram:
    """One script compiled by cel-expr-python: checked when built, evaluated over a list of providers."""

    engine = "cel-expr-python"

    def __init__(self, expression: str, offset: int) -> None:
        cel, single, listed = _native_environments()
        self._cel = cel
        with _NATIVE_LOCK:
            self._single = self._compile(single, expression, expression, offset)
            try:  # the newlines keep a trailing // comment from swallowing the closing parenthesis
                self._listed = self._compile(listed, f"providers.map(provider,\n{expression}\n)", expression, None)
            except RuleError:  # one level too deep once wrapped: evaluate provider by provider
                self._listed = None
        returns = self._single.return_type()
        if not (returns == cel.Type.BOOL or returns == cel.Type.DYN):
            raise RuleError(f"the script gives {returns.name().lower()}, not a bool", rule=expression,
                            position=offset)

    @staticmethod
    def _compile(env: Any, source: str, expression: str, offset: int | None) -> Any:
        """The checked program; raises ``RuleError`` (parse errors first, then type errors)."""
        try:
            return env.compile(source)
        except RuntimeError as exc:
            text = str(exc)
        stage = "does not type-check"
        try:
            env.compile(source, disable_check=True)
        except RuntimeError as exc:
            stage, text = "does not parse", str(exc)
        found = _NATIVE_ERROR.search(text)
        if found is None:
            message = text.split(": ", 1)[-1].split(" [", 1)[0]
            if "recursion limit" in message:
                raise RuleError(f"script is nested too deeply ({message.rsplit('limit: ', 1)[-1]} levels at most)",
                                rule=expression, position=offset)
            raise RuleError(f"script {stage}: {message}", rule=expression, position=offset)
        line, column, message = int(found.group(1)), int(found.group(2)), found.group(3).strip()
        lines = expression.split("\n")
        at = sum(len(l) + 1 for l in lines[:line - 1]) + max(column - 1, 0)
        name = re.match(r"undeclared reference to '([^']+)'", message)
        if name is not None and expression[:at].endswith(name.group(1)):
            at -= len(name.group(1))  # a call is reported at its parenthesis: point at the name
        position = None if offset is None else offset + at
        if name is not None:
            forbidden = _forbidden(name.group(1), expression, position if position is not None else 0)
            if forbidden is not None:
                raise forbidden
            message = f"unknown name {name.group(1)!r} (a script sees invocation, consumer and provider)"
        raise RuleError(f"script {stage}: {message}", rule=expression, position=position)

    def convert(self, fields: Any) -> Any:
        return fields  # cel-expr-python converts plain values itself, on each evaluation

    def evaluate(self, invocation: Any, consumer: Any, providers: Sequence[Any],
                 remaining: Callable[[], float]) -> list[bool]:
        data = {"invocation": invocation, "consumer": consumer}
        started = time.thread_time()
        if len(providers) == 1 or self._listed is None:
            verdicts = [self._one(data, providers[0])] if len(providers) == 1 else \
                self._one_by_one(data, providers, remaining)
        else:
            try:
                value = self._listed.eval(data={**data, "providers": list(providers)})
            except RuntimeError as exc:
                if _BUDGET_MESSAGE not in str(exc):
                    raise ValueError(str(exc)) from None
                # the list ran out of iterations: each provider gets its own budget
                verdicts = self._one_by_one(data, providers, remaining)
            else:
                verdicts = self._check(value)
        _on_time(started, "the script")
        return verdicts

    def _one_by_one(self, data: dict[str, Any], providers: Sequence[Any], remaining: Callable[[], float]) -> list[bool]:
        verdicts = []
        for provider in providers:
            if remaining() <= 0:  # the whole route, not only one evaluation, is bounded
                raise ScriptBudgetExceeded("the call's deadline passed while routing")
            verdicts.append(self._one(data, provider))
        return verdicts

    def _one(self, data: dict[str, Any], provider: Any) -> bool:
        try:
            value = self._single.eval(data={**data, "provider": provider})
        except RuntimeError as exc:
            if _BUDGET_MESSAGE in str(exc):
                raise ScriptBudgetExceeded(f"more than {MAX_ITERATIONS} iterations") from None
            raise ValueError(str(exc)) from None
        result = value.value()
        if type(result) is bool:
            return result
        if value.type() == self._cel.Type.ERROR:
            raise ValueError(result)
        raise ValueError(f"the expression gave {type(result).__name__} {value.plain_value()!r}, not a bool")

    def _check(self, value: Any) -> list[bool]:
        if value.type() == self._cel.Type.ERROR:
            raise ValueError(value.value())
        results = value.plain_value()
        for result in results:
            if type(result) is not bool:
                raise ValueError(f"the expression gave {type(result).__name__} {result!r}, not a bool")
        return results


# -- cel-python: the pure-Python interpreter (fallback) ----------------------------------------

@functools.cache
def _interpreter() -> tuple[Any, Any]:
    """celpy and cel-python's tree-walking evaluator with a step and time budget shared by macro
    sub-evaluations."""
    import celpy
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

    return celpy, BudgetEvaluator


def _to_cel(value: Any) -> Any:
    """A plain value (see ``_plain``) as cel-python's types."""
    types = _interpreter()[0].celtypes
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
    if isinstance(value, list):
        return types.ListType([_to_cel(v) for v in value])
    return types.MapType({types.StringType(k): _to_cel(v) for k, v in value.items()})


class _InterpretedProgram:
    """One script for cel-python's interpreter, evaluated provider by provider."""

    engine = "cel-python"

    def __init__(self, expression: str, offset: int) -> None:
        celpy, self._evaluator = _interpreter()
        self._celpy = celpy
        limit = sys.getrecursionlimit()
        environment = celpy.Environment()  # sets the recursion limit to 2500
        sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))
        try:
            self._ast = environment.compile(expression)
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
            forbidden = _forbidden(str(token), expression, offset + (token.start_pos or 0))
            if forbidden is not None:
                raise forbidden
        self._runner = environment.program(self._ast)

    def convert(self, fields: Any) -> Any:
        return _to_cel(fields)

    def evaluate(self, invocation: Any, consumer: Any, providers: Sequence[Any],
                 remaining: Callable[[], float]) -> list[bool]:
        verdicts = []
        for provider in providers:
            if remaining() <= 0:  # the whole route, not only one evaluation, is bounded
                raise ScriptBudgetExceeded("the call's deadline passed while routing")
            verdicts.append(self._one({"invocation": invocation, "consumer": consumer, "provider": provider}))
        return verdicts

    def _one(self, activation: dict[str, Any]) -> bool:
        celpy = self._celpy
        # CPU time, not the wall clock: other threads holding the GIL must not fail a script
        budget = [float(MAX_STEPS), time.thread_time() + MAX_SECONDS]
        evaluator = self._evaluator(self._ast, self._runner.new_activation(), budget)
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


class _Program(Protocol):
    """A script compiled by one engine."""

    def convert(self, fields: Any) -> Any:
        """A plain value (see ``_plain``) as this engine takes it; cached per URL."""

    def evaluate(self, invocation: Any, consumer: Any, providers: Sequence[Any],
                 remaining: Callable[[], float]) -> list[bool]:
        """One verdict per provider; raises ``ScriptBudgetExceeded``, or ``ValueError`` on an
        error or a non-boolean value."""


_PROGRAMS: dict[str, Callable[[str, int], _Program]] = {"cel-expr-python": _NativeProgram,
                                                        "cel-python": _InterpretedProgram}


class ScriptRouter(Router):
    """Keeps the providers for which a CEL expression is true (group ``govrpc.router``, kind ``script``).

    Compiled once per rule version; thread-safe (evaluations share nothing but the
    compiled program); an error or an exhausted budget keeps every provider and is
    logged. ``engine`` is one of ``ENGINES`` (default: ``default_engine()``).
    """

    def __init__(self, expression: str, *, name: str = "", priority: int = 0, force: bool = False,
                 runtime: bool = False, offset: int = 0, document: str | None = None,
                 engine: str | None = None) -> None:
        self.name = name or "script"
        self.expression = expression
        self.priority = priority
        self.force = force
        self.runtime = runtime
        _check_length(expression, expression if document is None else document, offset)
        engine = engine or default_engine()
        program = _PROGRAMS.get(engine)
        if program is None:
            raise ConfigurationError(f"unknown script engine {engine!r}; engines: {', '.join(ENGINES)}")
        self.engine = engine
        self._program = program(expression, offset)
        self._convert = self._program.convert
        self._provider_maps: dict[URL, Any] = {}
        self._consumer_maps: dict[URL, Any] = {}
        self.reads = Reads(all_arguments="arguments" in expression or "kwargs" in expression,
                           all_attachments="attachments" in expression)
        self._reads_invocation = "invocation" in expression
        # only what the script selects is handed to CEL: converting unused fields is most of the cost
        self._reads = {n: fields_read(expression, n) for n in ("invocation", "consumer", "provider")}
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

    def _map(self, cache: dict[URL, Any], url: URL, name: str) -> Any:
        value = cache.get(url)
        if value is None:
            if len(cache) > 4096:
                cache.clear()
            value = cache[url] = self._convert(_url_fields(url, self._reads[name]))
        return value

    def _invocation_map(self, invocation: Invocation) -> Any:
        return self._convert(_invocation_fields(invocation, self._reads["invocation"]))

    def evaluate(self, invocation: Invocation, consumer: URL, provider: URL) -> bool:
        """The expression's value for one provider; raises on an error or a non-boolean value."""
        return self._evaluate_batch(invocation, consumer, [provider])[0]

    def _evaluate_batch(self, invocation: Invocation, consumer: URL, providers: Sequence[URL]) -> list[bool]:
        """The verdicts for ``providers`` (raises on an error, a non-boolean or an exhausted budget)."""
        if invocation.remaining() <= 0:
            raise ScriptBudgetExceeded("the call's deadline passed while routing")
        return self._program.evaluate(self._invocation_map(invocation),
                                      self._map(self._consumer_maps, consumer, "consumer"),
                                      [self._map(self._provider_maps, url, "provider") for url in providers],
                                      invocation.remaining)

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        try:
            call_key = self._call_key(invocation)
            verdicts = self._verdicts
            if len(verdicts) > VERDICT_LIMIT:
                verdicts.clear()
            known: dict[URL, bool] = {}
            if call_key is not _UNCACHED:
                for invoker in invokers:
                    verdict = verdicts.get((call_key, consumer, invoker.url))
                    if verdict is not None:
                        known[invoker.url] = verdict
            unseen = list(dict.fromkeys(i.url for i in invokers if i.url not in known))
            if unseen:
                fresh = self._evaluate_batch(invocation, consumer, unseen)
                known.update(zip(unseen, fresh))
                if call_key is not _UNCACHED:
                    for url, verdict in zip(unseen, fresh):
                        verdicts[(call_key, consumer, url)] = verdict
            kept = [invoker for invoker in invokers if known[invoker.url]]
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
        return f"ScriptRouter({self.name!r}, {self.expression!r}, engine={self.engine!r})"
