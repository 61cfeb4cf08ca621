"""Route rule documents: the readable text stored at ``{service}/routers/{name}``.

A rule is a few ``key: value`` header lines and a kind-specific body, the shape
of Dubbo 2.7's YAML route rules (a small YAML subset, parsed here without a
YAML dependency)::

    kind: condition          # condition (default) | script | tag | a third party's kind
    enabled: true
    force: false
    priority: 2
    runtime: false
    conditions:
      - method = find* => host = 10.20.3.3,10.20.3.4
      - => host != 10.20.3.5

A text with no header line at all is a single condition (``host = 10.0.0.1 => false``),
as Dubbo 2.6 stored them. Every value keeps the offset where it starts in the
text, so a ``RuleError`` names the position of a mistake in the whole document.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from govrpc.exceptions import RuleError

__all__ = ["MAX_RULE_LENGTH", "RouteRule", "Scalar", "parse_rule"]

MAX_RULE_LENGTH = 64 * 1024
_HEADER = re.compile(r"([A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]+|$)")
_COMMON = ("kind", "enabled", "force", "priority", "runtime", "key", "scope", "name", "description")


@dataclasses.dataclass(frozen=True, slots=True)
class Scalar:
    """A value of the document and the offset where it starts."""

    text: str
    offset: int


@dataclasses.dataclass(frozen=True)
class RouteRule:
    """One parsed rule document; ``fields`` holds every key (``Scalar``, list, or list of dicts)."""

    name: str
    kind: str
    text: str
    enabled: bool = True
    force: bool = False
    priority: int = 0
    runtime: bool = False
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def error(self, message: str, position: int | None = None) -> RuleError:
        """A ``RuleError`` about this rule at ``position`` (an offset in ``text``)."""
        label = f"route rule {self.name!r}: " if self.name else "route rule: "
        return RuleError(label + message, rule=_excerpt(self.text, position), position=position)

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        """Refuse keys this kind does not know (a typo such as ``foce`` must not pass silently)."""
        for key, value in self.fields.items():
            if key not in allowed and key not in _COMMON:
                raise self.error(f"unknown key {key!r} for a {self.kind} rule; known: "
                                 f"{', '.join(sorted(set(allowed) | set(_COMMON[:5])))}", _offset_of(value))


def _excerpt(text: str, position: int | None) -> str:
    if position is None:
        return text if len(text) <= 120 else text[:117] + "..."
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text[start:end if end >= 0 else len(text)]


def _offset_of(value: Any) -> int | None:
    if isinstance(value, Scalar):
        return value.offset
    if isinstance(value, list) and value:
        return _offset_of(value[0])
    if isinstance(value, dict) and value:
        return _offset_of(next(iter(value.values())))
    return None


def _scalar(raw: str, offset: int, text: str) -> Scalar | list[Scalar]:
    """A value after ``key:`` or ``-``: quoted, an inline ``[a, b]`` list, or plain (``#`` starts a comment)."""
    stripped = raw.strip()
    offset += len(raw) - len(raw.lstrip())
    if stripped[:1] in ("'", '"'):
        quote = stripped[0]
        end = stripped.find(quote, 1)
        if end < 0:
            raise RuleError(f"unterminated {quote} quote", rule=_excerpt(text, offset), position=offset)
        rest = stripped[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise RuleError(f"unexpected {rest!r} after a quoted value", rule=_excerpt(text, offset),
                            position=offset + end + 1)
        return Scalar(stripped[1:end], offset + 1)
    comment = re.search(r"\s#", stripped)
    if comment:
        stripped = stripped[:comment.start()].rstrip()
    if stripped.startswith("["):
        if not stripped.endswith("]"):
            raise RuleError("unterminated [ list", rule=_excerpt(text, offset), position=offset)
        items, pos = [], offset + 1
        for part in stripped[1:-1].split(","):
            if part.strip():
                item = _scalar(part, pos, text)
                if not isinstance(item, Scalar):
                    raise RuleError("a list inside a list is not supported", rule=_excerpt(text, pos),
                                    position=pos)
                items.append(item)
            pos += len(part) + 1
        return items
    return Scalar(stripped, offset)


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(offset of the content, indent, content) of every significant line."""
    out, offset = [], 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        content = body.lstrip(" ")
        indent = len(body) - len(content)
        if content.startswith("\t"):
            raise RuleError("tabs cannot indent a rule; use spaces", rule=body, position=offset + indent)
        if content and not content.startswith("#"):
            out.append((offset + indent, indent, content.rstrip()))
        offset += len(line)
    return out


def _document(text: str) -> dict[str, Any]:
    """The mapping of the YAML subset: ``key: value``, ``key:`` + ``- item`` lists, items of ``k: v``."""
    lines = _lines(text)
    fields: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        offset, indent, content = lines[i]
        match = _HEADER.match(content)
        if indent or match is None:
            raise RuleError(f"expected 'key: value', found {content.split()[0]!r}",
                            rule=_excerpt(text, offset), position=offset)
        key = match.group(1)
        if key in fields:
            raise RuleError(f"key {key!r} appears twice", rule=_excerpt(text, offset), position=offset)
        value = content[match.end():]
        i += 1
        if value.strip():
            fields[key] = _scalar(value, offset + match.end(), text)
            continue
        items: list[Any] = []
        while i < len(lines) and (lines[i][1] > 0 or lines[i][2].startswith("- ") or lines[i][2] == "-"):
            item_offset, item_indent, item = lines[i]
            if not (item.startswith("- ") or item == "-"):
                raise RuleError(f"expected '- item' under {key!r}", rule=_excerpt(text, item_offset),
                                position=item_offset)
            body = item[1:]
            body_offset = item_offset + 1
            i += 1
            head = _HEADER.match(body.lstrip())
            if head is None:
                items.append(_scalar(body, body_offset, text))
                continue
            entry: dict[str, Any] = {}
            entry_lines = [(body_offset + len(body) - len(body.lstrip()), body.lstrip())]
            while i < len(lines) and lines[i][1] > item_indent and not lines[i][2].startswith("- "):
                entry_lines.append((lines[i][0], lines[i][2]))
                i += 1
            for line_offset, line in entry_lines:
                pair = _HEADER.match(line)
                if pair is None:
                    raise RuleError(f"expected 'key: value' in an item of {key!r}",
                                    rule=_excerpt(text, line_offset), position=line_offset)
                entry[pair.group(1)] = _scalar(line[pair.end():], line_offset + pair.end(), text)
            items.append(entry)
        fields[key] = items
    return fields


def _flag(rule_text: str, fields: dict[str, Any], key: str, default: bool) -> bool:
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, Scalar) and value.text.lower() in ("true", "false"):
        return value.text.lower() == "true"
    offset = _offset_of(value)
    raise RuleError(f"{key} must be true or false", rule=_excerpt(rule_text, offset), position=offset)


def parse_rule(text: str, name: str = "") -> RouteRule:
    """Parse a rule document (not yet compiled by its router); raises ``RuleError`` naming the position."""
    if not isinstance(text, str):
        raise RuleError(f"a route rule is text, not {type(text).__name__}")
    if len(text) > MAX_RULE_LENGTH:
        raise RuleError(f"route rule is {len(text)} characters long; the limit is {MAX_RULE_LENGTH}")
    if not text.strip():
        raise RuleError("route rule is empty", rule=text)
    lines = _lines(text)
    if not lines:
        raise RuleError("route rule has only comments", rule=text)
    if not any(indent == 0 and _HEADER.match(content) for _, indent, content in lines):
        # Dubbo 2.6 form: one condition on one line
        if len(lines) > 1:
            raise RuleError("a rule without 'key: value' lines is one condition on one line",
                            rule=_excerpt(text, lines[1][0]), position=lines[1][0])
        offset, _, condition = lines[0]
        return RouteRule(name, "condition", text, fields={"conditions": [Scalar(condition, offset)]})
    fields = _document(text)
    kind_value = fields.get("kind")
    if kind_value is None:
        kind = "script" if "script" in fields else "tag" if "tags" in fields else "condition"
    elif isinstance(kind_value, Scalar) and re.fullmatch(r"[A-Za-z_][\w.-]*", kind_value.text):
        kind = kind_value.text
    else:
        at = _offset_of(kind_value)
        raise RuleError("kind must be a name (condition, script, tag)", rule=_excerpt(text, at), position=at)
    priority = fields.get("priority")
    priority_value = 0
    if priority is not None:
        if not (isinstance(priority, Scalar) and re.fullmatch(r"-?\d{1,9}", priority.text)):
            at = _offset_of(priority)
            raise RuleError("priority must be an integer", rule=_excerpt(text, at), position=at)
        priority_value = int(priority.text)
    return RouteRule(
        name, kind, text,
        enabled=_flag(text, fields, "enabled", True),
        force=_flag(text, fields, "force", False),
        priority=priority_value,
        runtime=_flag(text, fields, "runtime", False),
        fields=fields,
    )
