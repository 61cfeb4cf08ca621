"""Condition routes, in Dubbo's grammar: ``when => then``.

    host = 10.20.* & method = find* => host = 10.20.3.3,10.20.3.4

The ``when`` side is matched against the call: ``method``/``methods`` (the called
method), ``arguments[i]``, ``attachments[key]``, ``host``/``port``/``address`` and any
parameter of the consumer URL (``application``...). The ``then`` side is matched
against each provider URL: ``host``, ``port``, ``address`` or any parameter, and a
value ``$key`` stands for the consumer's ``key``. ``=`` and ``!=``; ``&`` joins
conditions; ``,`` lists alternatives; one ``*`` matches any run of characters
(Dubbo's glob: at the start, the end or in between). An empty or ``true`` ``when``
matches every call; a ``then`` that is ``false`` or empty means no provider.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from govrpc.exceptions import RuleError
from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import Reads, Router, argument_text
from govrpc.router.rule import RouteRule, Scalar
from govrpc.url import URL

__all__ = ["Condition", "ConditionRouter", "MatchPair", "glob_match", "parse_condition"]

_ROUTE = re.compile(r"([&!=,]*)\s*([^&!=,\s]+)")
_INDEXED = re.compile(r"(arguments|attachments)\[([^\]]*)\]$")


def glob_match(pattern: str, value: str, consumer: URL | None) -> bool:
    """Dubbo's ``UrlUtils.isMatchGlobPattern``: ``$key`` from the consumer, then one ``*``."""
    if consumer is not None and pattern.startswith("$"):
        pattern = _sample(consumer, pattern[1:]) or ""
    if pattern == "*":
        return True
    if not pattern and not value:
        return True
    if not pattern or not value:
        return False
    star = pattern.rfind("*")
    if star < 0:
        return value == pattern
    if star == len(pattern) - 1:
        return value.startswith(pattern[:-1])
    if star == 0:
        return value.endswith(pattern[1:])
    prefix, suffix = pattern[:star], pattern[star + 1:]
    return value.startswith(prefix) and value.endswith(suffix)


def _sample(url: URL, key: str) -> str | None:
    if key == "host":
        return url.host
    if key == "port":
        return str(url.port)
    if key == "address":
        return url.address
    if key == "protocol":
        return url.scheme
    return url.params.get(key)


@dataclasses.dataclass
class MatchPair:
    """The values a key must match (``=``) and must not match (``!=``)."""

    matches: list[str] = dataclasses.field(default_factory=list)
    mismatches: list[str] = dataclasses.field(default_factory=list)

    def is_match(self, value: str, consumer: URL | None) -> bool:
        """Dubbo's ``MatchPair.isMatch``: with both lists, a mismatch wins."""
        if self.matches and not self.mismatches:
            return any(glob_match(m, value, consumer) for m in self.matches)
        if self.mismatches and not self.matches:
            return not any(glob_match(m, value, consumer) for m in self.mismatches)
        if self.matches and self.mismatches:
            if any(glob_match(m, value, consumer) for m in self.mismatches):
                return False
            return any(glob_match(m, value, consumer) for m in self.matches)
        return False


@dataclasses.dataclass
class Condition:
    """One side of a rule: key -> ``MatchPair``, all of which must hold."""

    pairs: dict[str, MatchPair]

    def __str__(self) -> str:
        parts = []
        for key, pair in self.pairs.items():
            if pair.matches:
                parts.append(f"{key} = {','.join(pair.matches)}")
            if pair.mismatches:
                parts.append(f"{key} != {','.join(pair.mismatches)}")
        return " & ".join(parts)


def parse_condition(text: str, offset: int = 0, document: str | None = None) -> Condition:
    """Parse one side of a rule (Dubbo's ``parseRule``); ``offset`` places ``text`` in ``document``."""
    document = text if document is None else document
    pairs: dict[str, MatchPair] = {}
    pair: MatchPair | None = None
    values: list[str] | None = None
    key_at = 0
    end = 0

    def fail(message: str, at: int) -> RuleError:
        line_start = document.rfind("\n", 0, offset + at) + 1
        line_end = document.find("\n", offset + at)
        return RuleError(message, rule=document[line_start:line_end if line_end >= 0 else None],
                         position=offset + at)

    for match in _ROUTE.finditer(text):
        gap = text[end:match.start()]
        if gap.strip():
            bad = end + len(gap) - len(gap.lstrip())
            raise fail(f"unexpected {text[bad]!r}", bad)
        end = match.end()
        separator, content = match.group(1), match.group(2)
        where = match.start() + (len(match.group(0)) - len(match.group(0).lstrip()))
        if not separator or separator == "&":  # a key: the first one, or one after '&'
            complete = pair is not None and bool(pair.matches or pair.mismatches)
            if not separator and pair is not None and not complete:
                raise fail(f"key {_last_key(pairs)!r} has no '=' or '!=' before {content!r}", key_at)
            if separator and not complete:
                raise fail(f"'&' before {content!r} does not follow a complete condition", where)
            pair = pairs.setdefault(_check_key(content, fail, match.start(2)), MatchPair())
            key_at = match.start(2)
            values = None
        elif separator == "=":
            if pair is None:
                raise fail(f"'=' before {content!r} has no key", where)
            values = pair.matches
            values.append(content)
        elif separator == "!=":
            if pair is None:
                raise fail(f"'!=' before {content!r} has no key", where)
            values = pair.mismatches
            values.append(content)
        elif separator == ",":
            if not values:
                raise fail(f"',' before {content!r} does not follow a value", where)
            values.append(content)
        else:
            raise fail(f"unexpected {separator!r} before {content!r} (use '=', '!=', '&' or ',')", where)
    rest = text[end:]
    if rest.strip():
        bad = end + len(rest) - len(rest.lstrip())
        raise fail(f"{rest.strip()!r} needs a value after it", bad)
    if pair is not None and not (pair.matches or pair.mismatches):
        raise fail(f"key {_last_key(pairs)!r} has no '=' or '!=' value", key_at)
    return Condition(pairs)


def _last_key(pairs: dict[str, MatchPair]) -> str:
    return next(reversed(pairs)) if pairs else ""


def _check_key(key: str, fail: object, at: int) -> str:
    """The key as matched; ``attachments[User_Id]`` becomes ``attachments[user-id]``, the form
    ``govrpc.attachments(...)`` and gRPC metadata give attachment names."""
    if "[" in key or "]" in key:
        indexed = _INDEXED.match(key)
        if indexed is None or (indexed.group(1) == "arguments" and not indexed.group(2).isdigit()) \
                or not indexed.group(2):
            raise fail(f"bad key {key!r}: use arguments[N] or attachments[name]", at)  # type: ignore[operator]
        if indexed.group(1) == "attachments":
            return f"attachments[{indexed.group(2).lower().replace('_', '-')}]"
    return key


class ConditionRouter(Router):
    """One ``when => then`` condition of a rule (group ``govrpc.router``, kind ``condition``).

    As Dubbo: a call that does not match ``when`` keeps every provider; a ``then``
    of ``false`` (or empty) keeps none; otherwise the providers matching ``then``,
    and if none match, all of them unless the rule is ``force``.
    """

    def __init__(self, text: str, *, name: str = "", priority: int = 0, force: bool = False,
                 runtime: bool = False, offset: int = 0, document: str | None = None) -> None:
        self.name = name or "condition"
        self.text = text
        self.priority = priority
        self.force = force
        self.runtime = runtime
        document = text if document is None else document
        arrow = text.find("=>")
        when_text = "" if arrow < 0 else text[:arrow]
        then_start = 0 if arrow < 0 else arrow + 2
        then_text = text[then_start:]
        second = then_text.find("=>")
        if second >= 0:
            raise RuleError("a condition has one '=>'", rule=document, position=offset + then_start + second)
        when_stripped = when_text.strip()
        self.when = (None if not when_stripped or when_stripped == "true"
                     else parse_condition(when_text, offset, document))
        then_stripped = then_text.strip()
        self.then = (None if not then_stripped or then_stripped == "false"
                     else parse_condition(then_text, offset + then_start, document))
        self.reads = self._reads()

    def _reads(self) -> Reads:
        attachments: set[str] = set()
        arguments: set[int] = set()
        for key in (self.when.pairs if self.when else ()):
            indexed = _INDEXED.match(key)
            if indexed and indexed.group(1) == "arguments":
                arguments.add(int(indexed.group(2)))
            elif indexed:
                attachments.add(indexed.group(2))
        return Reads(frozenset(attachments), frozenset(arguments))

    @classmethod
    def from_rule(cls, rule: RouteRule) -> Sequence[Router]:
        rule.check_keys(("conditions",))
        conditions = rule.fields.get("conditions")
        if conditions is None:
            raise rule.error("a condition rule needs 'conditions:' (a list of 'when => then')")
        if isinstance(conditions, Scalar):
            conditions = [conditions]
        if not conditions:
            raise rule.error("'conditions:' is empty")
        routers: list[Router] = []
        for i, item in enumerate(conditions):
            if not isinstance(item, Scalar):
                raise rule.error("each condition is text 'when => then', not a mapping")
            label = rule.name or "condition"
            routers.append(cls(item.text, name=label if len(conditions) == 1 else f"{label}#{i + 1}",
                               priority=rule.priority, force=rule.force, runtime=rule.runtime,
                               offset=item.offset, document=rule.text))
        return routers

    # -- matching ------------------------------------------------------------------
    def matches_when(self, invocation: Invocation, consumer: URL) -> bool:
        return self.when is None or _match(self.when, consumer, None, invocation)

    def matches_then(self, provider: URL, consumer: URL) -> bool:
        return self.then is not None and _match(self.then, provider, consumer, None)

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        if not self.matches_when(invocation, consumer):
            return invokers, f"call does not match '{self.when}': all kept"
        if self.then is None:
            return (), f"call matches '{self.when or 'every call'}' and then is false: no provider"
        kept = [i for i in invokers if self.matches_then(i.url, consumer)]
        if kept:
            return kept, f"kept providers matching '{self.then}'"
        if self.force:
            return (), f"no provider matches '{self.then}'; force: no provider"
        return invokers, f"no provider matches '{self.then}'; not forced: rule ignored, all kept"

    def __repr__(self) -> str:
        return f"ConditionRouter({self.name!r}, {self.text!r})"


def _match(condition: Condition, url: URL, consumer: URL | None, invocation: Invocation | None) -> bool:
    """Dubbo's ``matchCondition``: every key must hold; a missing value fails only a positive match."""
    result = False
    for key, pair in condition.pairs.items():
        value: str | None
        if invocation is not None and key in ("method", "methods"):
            value = invocation.method
        elif invocation is not None and key.endswith("]"):
            indexed = _INDEXED.match(key)
            assert indexed is not None
            if indexed.group(1) == "arguments":
                value = argument_text(invocation.args, int(indexed.group(2)))
            else:
                value = invocation.attachments.get(indexed.group(2))
        else:
            value = _sample(url, key)
        if value is not None:
            if not pair.is_match(value, consumer):
                return False
            result = True
        else:
            if pair.matches:
                return False
            result = True
    return result
