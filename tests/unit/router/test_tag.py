"""Tag routes: tagged calls, fallback to untagged providers, force, rules assigning addresses."""

from __future__ import annotations

import pytest

from govrpc.exceptions import RuleError
from govrpc.invocation import Invocation, Invoker
from govrpc.router import TagPassOnFilter, TagRouter, compile_rule, parse_rule
from govrpc.context import current_attachments

from tests.unit.router.helpers import consumer, invocation, provider, run

GRAY = provider("10.0.0.1:1001", tag="gray")
BLUE = provider("10.0.0.2:1002", tag="blue")
PLAIN1 = provider("10.0.0.3:1003")
PLAIN2 = provider("10.0.0.4:1004")
P = [GRAY, BLUE, PLAIN1, PLAIN2]


def tag(call: Invocation | None = None, rules: list[str] = (), **consumer_params: str) -> list[str]:
    router = TagRouter([parse_rule(r, f"r{i}") for i, r in enumerate(rules)])
    return run([router], P, call or invocation(), consumer(**consumer_params))


def test_a_tagged_call_goes_to_its_tag() -> None:
    assert tag(invocation(attachments={"tag": "gray"})) == ["10.0.0.1:1001"]
    assert tag(invocation(attachments={"tag": "blue"})) == ["10.0.0.2:1002"]


def test_the_consumer_option_tags_every_call_and_the_attachment_wins() -> None:
    assert tag(tag="blue") == ["10.0.0.2:1002"]
    assert tag(invocation(attachments={"tag": "gray"}), tag="blue") == ["10.0.0.1:1001"]


def test_an_untagged_call_only_reaches_untagged_providers() -> None:
    assert tag() == ["10.0.0.3:1003", "10.0.0.4:1004"]


def test_an_unknown_tag_falls_back_to_untagged_providers() -> None:
    assert tag(invocation(attachments={"tag": "red"})) == ["10.0.0.3:1003", "10.0.0.4:1004"]


def test_a_forced_call_does_not_fall_back() -> None:
    assert tag(invocation(attachments={"tag": "red", "tag-force": "true"})) == []
    assert tag(invocation(attachments={"tag": "red"}), tag_force="True") == []


RULE = """kind: tag
tags:
  - name: canary
    addresses: [10.0.0.3:1003]
  - name: gray
    addresses: 10.0.0.4
"""


def test_a_rule_assigns_addresses_to_tags() -> None:
    assert tag(invocation(attachments={"tag": "canary"}), [RULE]) == ["10.0.0.3:1003"]
    # the rule's gray group (a bare host: every port) wins over the static tag, as in Dubbo
    assert tag(invocation(attachments={"tag": "gray"}), [RULE]) == ["10.0.0.4:1004"]


def test_with_a_rule_untagged_calls_avoid_every_tag_group() -> None:
    # blue is static and not one of the rule's tags, so Dubbo keeps it for untagged calls
    assert tag(invocation(), [RULE]) == ["10.0.0.2:1002"]


def test_a_rule_tag_with_no_live_address_falls_back_unless_the_rule_forces() -> None:
    rule = "kind: tag\ntags:\n  - name: canary\n    addresses: [10.9.9.9:1]\n"
    assert tag(invocation(attachments={"tag": "canary"}), [rule]) == ["10.0.0.3:1003", "10.0.0.4:1004"]
    forced = "kind: tag\nforce: true\ntags:\n  - name: canary\n    addresses: [10.9.9.9:1]\n"
    assert tag(invocation(attachments={"tag": "canary"}), [forced]) == []


@pytest.mark.parametrize("text,needle", [
    ("kind: tag\ntags:\n  - name: gray\n    addresses: [10.0.0.1:x]\n", "is not host:port"),
    ("kind: tag\ntags:\n  - addresses: [10.0.0.1:1]\n", "needs 'name: TAG'"),
    ("kind: tag\ntags:\n  - name: gray\n    hosts: [10.0.0.1:1]\n", "unknown key 'hosts'"),
    ("kind: tag\ntags: gray\n", "needs 'tags:'"),
])
def test_bad_tag_rules_are_refused(text: str, needle: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "t")
    assert needle in str(caught.value)


class _Recorder(Invoker):
    url = GRAY.url

    def __init__(self) -> None:
        self.seen: object = None

    def invoke(self, invocation: Invocation) -> object:
        self.seen = dict(current_attachments() or {})
        return "ok"


def test_the_filter_puts_the_tag_in_the_serving_context() -> None:
    recorder = _Recorder()
    TagPassOnFilter().invoke(recorder, invocation(attachments={"tag": "gray", "tag-force": "true"}))
    assert recorder.seen == {"tag": "gray", "tag-force": "true"}
