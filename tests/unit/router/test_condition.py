"""Condition routes: Dubbo's grammar, construct by construct, and Dubbo's documented examples."""

from __future__ import annotations

import pytest

from govrpc.exceptions import RuleError
from govrpc.router import ConditionRouter, compile_rule, parse_condition
from govrpc.router.condition import glob_match

from tests.unit.router.helpers import consumer, invocation, provider, route

P = [provider(f"172.22.3.{n}:20880") for n in (91, 92, 93, 94, 95, 96, 97, 98)]
HOSTS = [p.url.host for p in P]


# -- Dubbo's documented examples ---------------------------------------------------------

def test_exclude_one_provider() -> None:
    assert route("=> host != 172.22.3.91", P) == HOSTS[1:]


def test_blacklist_gives_the_listed_consumers_no_provider() -> None:
    rule = "host = 10.20.153.10,10.20.153.11 =>"
    assert route(rule, P, who=consumer("10.20.153.10")) == []
    assert route(rule, P, who=consumer("10.20.153.11")) == []
    assert route(rule, P, who=consumer("10.20.153.12")) == HOSTS


def test_whitelist_gives_other_consumers_no_provider() -> None:
    rule = "host != 10.20.153.10,10.20.153.11 =>"
    assert route(rule, P, who=consumer("10.20.153.10")) == HOSTS
    assert route(rule, P, who=consumer("10.20.153.99")) == []


def test_false_then_is_a_blacklist_too() -> None:
    assert route("host = 10.20.153.10 => false", P, who=consumer("10.20.153.10")) == []
    assert route("host = 10.20.153.10 => false", P, who=consumer("10.20.153.9")) == HOSTS


def test_expose_part_of_the_machines_with_wildcards() -> None:
    hosts = [provider(f"172.22.3.{n}:20880") for n in (1, 15, 2, 25, 3)]
    assert route("=> host = 172.22.3.1*,172.22.3.2*", hosts) == ["172.22.3.1", "172.22.3.15", "172.22.3.2",
                                                                 "172.22.3.25"]


def test_extra_machines_for_an_important_application() -> None:
    rule = "application != kylin => host != 172.22.3.95,172.22.3.96"
    assert route(rule, P, who=consumer(application="kylin")) == HOSTS
    assert route(rule, P, who=consumer(application="other")) == [h for h in HOSTS if h not in (
        "172.22.3.95", "172.22.3.96")]


def test_read_write_split_by_method() -> None:
    reads = "method = find*,list*,get*,is* => host = 172.22.3.94,172.22.3.95,172.22.3.96"
    writes = "method != find*,list*,get*,is* => host = 172.22.3.97,172.22.3.98"
    for method in ("findUser", "listAll", "getX", "isOk"):
        assert route(reads, P, invocation(method)) == ["172.22.3.94", "172.22.3.95", "172.22.3.96"]
        assert route(writes, P, invocation(method)) == HOSTS
    assert route(reads, P, invocation("save")) == HOSTS
    assert route(writes, P, invocation("save")) == ["172.22.3.97", "172.22.3.98"]


def test_front_and_back_office_split_by_application() -> None:
    front = "application = bops => host = 172.22.3.91,172.22.3.92,172.22.3.93"
    assert route(front, P, who=consumer(application="bops")) == HOSTS[:3]
    assert route(front, P, who=consumer(application="shop")) == HOSTS


def test_isolate_network_segments() -> None:
    mixed = P[:2] + [provider("10.0.0.1:20880")]
    rule = "host != 172.22.3.* => host != 172.22.3.*"
    assert route(rule, mixed, who=consumer("10.1.1.1")) == ["10.0.0.1"]
    assert route(rule, mixed, who=consumer("172.22.3.50")) == HOSTS[:2] + ["10.0.0.1"]


def test_same_host_only_with_a_dollar_reference() -> None:
    assert route("=> host = $host", P, who=consumer("172.22.3.93")) == ["172.22.3.93"]


def test_host_based_route() -> None:
    rule = "host = 10.20.153.10 => host = 172.22.3.92"
    assert route(rule, P, who=consumer("10.20.153.10")) == ["172.22.3.92"]
    assert route(rule, P, who=consumer("10.20.153.11")) == HOSTS


def test_dubbo_example_from_the_design() -> None:
    hosts = [provider(f"10.20.3.{n}:20880") for n in (3, 4, 5)]
    rule = "host = 10.20.* & method = find* => host = 10.20.3.3,10.20.3.4"
    assert route(rule, hosts, invocation("findX"), consumer("10.20.1.1")) == ["10.20.3.3", "10.20.3.4"]
    assert route(rule, hosts, invocation("save"), consumer("10.20.1.1")) == ["10.20.3.3", "10.20.3.4", "10.20.3.5"]
    assert route(rule, hosts, invocation("findX"), consumer("10.30.1.1")) == ["10.20.3.3", "10.20.3.4", "10.20.3.5"]


# -- force -----------------------------------------------------------------------------

def test_not_forced_an_empty_result_is_ignored() -> None:
    assert route("=> host = 1.1.1.1", P) == HOSTS


def test_forced_an_empty_result_stands() -> None:
    assert route("force: true\nconditions:\n  - => host = 1.1.1.1", P) == []


def test_force_does_not_matter_when_some_provider_matches() -> None:
    assert route("force: true\nconditions:\n  - => host = 172.22.3.91", P) == ["172.22.3.91"]


# -- every construct ---------------------------------------------------------------------

def test_empty_and_true_when_match_every_call() -> None:
    assert route("=> host = 172.22.3.91", P, invocation("anything")) == ["172.22.3.91"]
    assert route("true => host = 172.22.3.91", P, invocation("anything")) == ["172.22.3.91"]
    assert route("host = 172.22.3.91", P) == ["172.22.3.91"]  # no '=>': the whole text is 'then'


def test_methods_is_the_same_key_as_method() -> None:
    assert route("methods = find* => host = 172.22.3.91", P, invocation("findA")) == ["172.22.3.91"]
    assert route("methods = find* => host = 172.22.3.91", P, invocation("save")) == HOSTS


def test_ampersand_needs_every_condition() -> None:
    rule = "application = web & method = get => host = 172.22.3.91"
    assert route(rule, P, invocation("get")) == ["172.22.3.91"]
    assert route(rule, P, invocation("put")) == HOSTS
    assert route(rule, P, invocation("get"), consumer(application="app")) == HOSTS


def test_port_address_and_any_provider_parameter() -> None:
    hosts = [provider("10.0.0.1:1001", zone="a"), provider("10.0.0.1:1002", zone="b"),
             provider("10.0.0.2:1001", zone="a")]
    assert route("=> port = 1001", hosts) == ["10.0.0.1:1001", "10.0.0.2:1001"]
    assert route("=> address = 10.0.0.1:1002", hosts) == ["10.0.0.1:1002"]
    assert route("=> zone = b", hosts) == ["10.0.0.1:1002"]
    assert route("=> zone != a & port = 1001,1002", hosts) == ["10.0.0.1:1002"]


def test_a_missing_parameter_fails_a_match_but_passes_a_mismatch() -> None:
    hosts = [provider("10.0.0.1:1", zone="a"), provider("10.0.0.2:1")]
    assert route("=> zone = a", hosts) == ["10.0.0.1:1"]
    assert route("=> zone != a", hosts) == ["10.0.0.2:1"]


def test_match_and_mismatch_on_one_key_mismatch_wins() -> None:
    assert route("=> host = 172.22.3.9* & host != 172.22.3.93", P) == [
        "172.22.3.91", "172.22.3.92", "172.22.3.94", "172.22.3.95", "172.22.3.96", "172.22.3.97", "172.22.3.98"]


def test_arguments_and_attachments_on_the_when_side() -> None:
    rule = "arguments[0] = vip* & attachments[region] = eu => host = 172.22.3.91"
    assert route(rule, P, invocation(args=["vip-1"], attachments={"region": "eu"})) == ["172.22.3.91"]
    assert route(rule, P, invocation(args=["basic"], attachments={"region": "eu"})) == HOSTS
    assert route(rule, P, invocation(args=["vip-1"])) == HOSTS
    assert route(rule, P, invocation(args=[], attachments={"region": "eu"})) == HOSTS
    assert route("arguments[1] = true => host = 172.22.3.92", P, invocation(args=[1, True])) == ["172.22.3.92"]


def test_consumer_parameters_on_the_when_side() -> None:
    assert route("env = gray => host = 172.22.3.98", P, who=consumer(env="gray")) == ["172.22.3.98"]
    assert route("env = gray => host = 172.22.3.98", P, who=consumer()) == HOSTS


@pytest.mark.parametrize("pattern,value,expected", [
    ("*", "x", True), ("abc", "abc", True), ("abc", "abd", False), ("ab*", "abz", True),
    ("*yz", "xyz", True), ("*yz", "xya", False), ("a*z", "abcz", True), ("a*z", "abcy", False),
    ("", "", True), ("", "x", False), ("x", "", False),
])
def test_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value, None) is expected


def test_priority_force_runtime_enabled_are_read() -> None:
    rule, routers = compile_rule("kind: condition\npriority: 7\nforce: true\nruntime: true\nenabled: false\n"
                                 "conditions:\n  - => host = 1.1.1.1\n  - method = a => false\n", "r")
    assert (rule.priority, rule.force, rule.runtime, rule.enabled) == (7, True, True, False)
    assert [r.name for r in routers] == ["r#1", "r#2"]
    assert all(isinstance(r, ConditionRouter) and r.priority == 7 and r.force and r.runtime for r in routers)


def test_cache_reads_only_what_the_when_side_names() -> None:
    router = ConditionRouter("arguments[2] = x & attachments[tag] = y & application = a => host = b")
    assert router.reads.arguments == frozenset({2}) and router.reads.attachments == frozenset({"tag"})


# -- errors name the position and the token -------------------------------------------------

@pytest.mark.parametrize("text,position,token", [
    ("host = 1 => port ==", 17, "=="),
    ("host == 1 => false", 5, "=="),
    (", host = 1 => false", 0, ","),
    ("host => false", 0, "host"),
    ("a = 1 & & b = 2 =>", 6, "&"),
    ("= 1 => false", 0, "="),
    ("a = 1 => b = 2 => c = 3", 15, "=>"),
    ("arguments[x] = 1 =>", 0, "arguments[x]"),
    ("a = 1 => b = 2 c", 15, "c"),
])
def test_parse_errors(text: str, position: int, token: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "bad")
    message = str(caught.value)
    assert f"at position {position}" in message, message
    assert token in message


def test_error_positions_count_from_the_start_of_the_document() -> None:
    text = "kind: condition\nconditions:\n  - => host = 1\n  - method = a & => false\n"
    with pytest.raises(RuleError) as caught:
        compile_rule(text, "bad")
    assert f"at position {text.index('& =>')}" in str(caught.value)


def test_parse_condition_builds_pairs() -> None:
    condition = parse_condition("a = 1,2 & b != 3 & a = 4")
    assert condition.pairs["a"].matches == ["1", "2", "4"] and condition.pairs["b"].mismatches == ["3"]


def test_attachment_keys_are_matched_as_govrpc_attachments_names_them() -> None:
    """govrpc.attachments(user_id=...) sends "user-id"; a rule may write the key either way."""
    call = invocation(attachments={"user-id": "42"})
    for rule in ("attachments[user_id] = 42 => host = 172.22.3.91", "attachments[User-Id] = 42 => host = 172.22.3.91"):
        assert route(rule, P, call) == ["172.22.3.91"]
        assert route(rule, P, invocation(attachments={"user-id": "7"})) == [p.url.host for p in P]
