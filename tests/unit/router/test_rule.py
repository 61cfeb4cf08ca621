"""Rule documents: the YAML subset, defaults, kinds, and errors at the right position."""

from __future__ import annotations

import pytest

from govrpc.exceptions import RuleError
from govrpc.router import compile_rule, parse_rule
from govrpc.router.rule import Scalar


def test_header_lists_quotes_and_comments() -> None:
    text = ("# a read/write split\nkind: condition\npriority: -3\nenabled: TRUE\n"
            "conditions:\n  - 'method = get* => zone = a'   # reads\n  - \"=> zone != c\"\n")
    rule = parse_rule(text, "split")
    assert (rule.name, rule.kind, rule.priority, rule.enabled, rule.force, rule.runtime) == \
        ("split", "condition", -3, True, False, False)
    items = rule.fields["conditions"]
    assert [i.text for i in items] == ["method = get* => zone = a", "=> zone != c"]
    assert all(text[i.offset:i.offset + len(i.text)] == i.text for i in items)


def test_dash_items_may_start_at_column_zero_and_crlf_is_fine() -> None:
    rule = parse_rule("conditions:\r\n- => zone = a\r\n- => zone = b\r\n")
    assert [i.text for i in rule.fields["conditions"]] == ["=> zone = a", "=> zone = b"]


def test_kind_is_inferred_from_the_body() -> None:
    assert parse_rule("script: 'true'").kind == "script"
    assert parse_rule("tags:\n  - name: a\n    addresses: [1.1.1.1:1]").kind == "tag"
    assert parse_rule("conditions:\n  - => false").kind == "condition"
    assert parse_rule("=> host != 10.0.0.1").kind == "condition"


def test_inline_lists() -> None:
    rule = parse_rule("tags:\n  - name: a\n    addresses: [1.1.1.1:1, 2.2.2.2:2]\n")
    (entry,) = rule.fields["tags"]
    assert [a.text for a in entry["addresses"]] == ["1.1.1.1:1", "2.2.2.2:2"]
    assert isinstance(entry["name"], Scalar)


@pytest.mark.parametrize("text,needle,position", [
    ("kind: condition\nkind: script\n", "appears twice", 16),
    ("kind: condition\n\tconditions:\n", "tabs", 16),
    ("script: 'true\n", "unterminated", 8),
    ("priority: high\nconditions:\n  - => false", "priority must be an integer", 10),
    ("force: yes\nconditions:\n  - => false", "force must be true or false", 7),
    ("kind: condition\nconditions:\n  oops\n", "expected '- item'", 30),
    ("kind: 'a b'\n", "kind must be a name", 7),
    ("kind: condition\njunk\n", "expected 'key: value'", 16),
])
def test_document_errors_name_the_position(text: str, needle: str, position: int) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(text, "r")
    assert needle in str(caught.value) and f"at position {position}" in str(caught.value)


@pytest.mark.parametrize("text", ["", "   \n# only a comment\n", 42])
def test_empty_or_non_text_rules_are_refused(text: object) -> None:
    with pytest.raises(RuleError):
        parse_rule(text)  # type: ignore[arg-type]


def test_oversized_rules_are_refused() -> None:
    with pytest.raises(RuleError, match="limit"):
        parse_rule("=> host != 1\n" + "#" * 70_000)


def test_condition_rules_need_conditions_and_refuse_mappings() -> None:
    with pytest.raises(RuleError, match="needs 'conditions:'"):
        compile_rule("kind: condition\npriority: 1\n")
    with pytest.raises(RuleError, match="not a mapping"):
        compile_rule("kind: condition\nconditions:\n  - when: x\n")


def test_the_one_line_form_is_one_line() -> None:
    rule = parse_rule("  # blacklist\n  host = 10.0.0.1 => false\n")
    (condition,) = rule.fields["conditions"]
    assert condition.text == "host = 10.0.0.1 => false" and condition.offset == 16
    with pytest.raises(RuleError, match="one condition on one line"):
        parse_rule("host = 1 => false\nhost = 2 => false")


@pytest.mark.parametrize("text, position", [("addresses: [[a], b]", 12), ("priority: [[1]]", 11)])
def test_a_list_inside_a_list_is_a_rule_error(text: str, position: int) -> None:
    with pytest.raises(RuleError, match="a list inside a list") as info:
        compile_rule(text, "nested")
    assert info.value.position == position
