"""Fuzzing with hypothesis: every parser of outside input succeeds or raises its documented error.

Each example has a bound (``deadline``): a parser that hangs on some input fails here. Inputs
mix arbitrary text with the grammar's own tokens, so the parsers' deeper paths are reached.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from govrpc.configurator import parse_configurator
from govrpc.exceptions import ConfigurationError, RuleError, SerializationError
from govrpc.router.chain import compile_rule
from govrpc.router.script import ScriptRouter, installed_engines
from govrpc.rpc.serialization import JsonSerializer, MsgpackSerializer
from govrpc.rpc.wire import decode_envelope, split_metadata
from govrpc.trace import w3c
from govrpc.url import URL

# derandomized: the suite runs the same examples every time (a found input is added with @example)
FUZZ = settings(max_examples=200, deadline=datetime.timedelta(seconds=2), database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _mixed(tokens: list[str]) -> st.SearchStrategy[str]:
    """Text made of the grammar's tokens and arbitrary characters."""
    return st.lists(st.one_of(st.sampled_from(tokens), st.text(max_size=8)), max_size=30).map("".join)


URL_TOKENS = ["grpc://", "://", "127.0.0.1", ":", "[", "]", "::1", "/", "?", "&", "=", "%", "%zz", "%2F",
              "#", "@", "65536", "99999999999", "-1", "methods", "a.b.Service", "weight", "+", " "]


@FUZZ
@given(st.one_of(st.text(max_size=200), _mixed(URL_TOKENS)))
@example("A://[")  # found by this test: urllib's ValueError escaped instead of ConfigurationError
@example("grpc://[::1/x")
def test_provider_url_parser(text: str) -> None:
    for parse in (URL.parse, URL.decode):
        try:
            url = parse(text)
        except ConfigurationError:
            continue
        assert isinstance(url, URL)
        str(url), url.address, url.encoded()  # a parsed URL can be used


RULE_TOKENS = ["kind: condition\n", "kind: script\n", "kind: tag\n", "enabled: ", "true", "false", "force: ",
               "priority: ", "-5", "999999999999999999999", "conditions:\n", "  - ", "=>", " => ", "method",
               "host", "address", "arguments[", "attachments[", "]", "0", "=", "!=", "&", ",", "*", "$", "\n",
               "script: ", "'", '"', "tags:\n", "  - name: ", "    addresses: ", "[", "{", "}", "#", ":", "\t"]


@FUZZ
@given(st.one_of(st.text(max_size=300), _mixed(RULE_TOKENS)))
def test_condition_and_route_rule_parser(text: str) -> None:
    try:
        compile_rule(text, "fuzz")
    except RuleError:
        pass


CEL_TOKENS = ["provider", "consumer", "invocation", ".", "zone", "method", "arguments", "[", "]", "(", ")",
              "==", "!=", "&&", "||", "!", "\"a\"", "'", "1", "0", "size", "startsWith", "matches", "in",
              "{", "}", ":", ",", "?", "true", "false", "null", "\\", "x" * 50, "+", "*", "-", "/", "%"]


@pytest.fixture(scope="module", autouse=True)
def _engines_loaded() -> None:
    # cel-python raises the recursion limit when it first compiles: let that happen before hypothesis
    # watches the limit, so what is fuzzed is the compiler, not an engine's one-time set-up
    for engine in installed_engines():
        ScriptRouter("true", engine=engine)


@pytest.mark.parametrize("engine", installed_engines())
@FUZZ
@given(text=st.one_of(st.text(max_size=200), _mixed(CEL_TOKENS)))
def test_script_rule_compiler(engine: str, text: str) -> None:
    try:
        ScriptRouter(text, engine=engine)
    except (RuleError, ConfigurationError):
        pass
    try:  # and through the rule document, as the registry delivers it
        compile_rule(f"kind: script\nscript: {text}", "fuzz")
    except RuleError:
        pass


CONFIG_TOKENS = ["address", "application", "enabled", "weight", "disabled", "timeout", "retries", "cluster",
                 "loadbalance", "find.timeout", "hash.arguments", " = ", "=", "\n", "#", "true", "false",
                 "-1", "1e309", "nan", "inf", "0.5", "86401", "127.0.0.1:1", ",", " ", "failover", "x.y.z"]


@FUZZ
@given(st.one_of(st.text(max_size=300), _mixed(CONFIG_TOKENS)))
def test_configurator_parser(text: str) -> None:
    try:
        parse_configurator(text, "fuzz")
    except RuleError:
        pass


metadata_value = st.one_of(st.text(max_size=60), st.binary(max_size=60), st.integers(), st.none())
metadata_key = st.one_of(st.text(max_size=30), st.sampled_from(
    ["govrpc-app", "govrpc-key", "govrpc-token", "traceparent", "tracestate", "baggage", "x-bin", "grpc-timeout",
     "user-agent"]))


@FUZZ
@given(st.lists(st.tuples(metadata_key, metadata_value), max_size=20))
def test_metadata_parser(items: list[tuple[str, Any]]) -> None:
    attachments, binary, application = split_metadata(items)
    assert all(isinstance(v, str) for v in attachments.values())
    assert all(isinstance(v, bytes) for v in binary.values())
    assert isinstance(application, str)


HEX = "0123456789abcdef"
traceparent = st.one_of(
    st.text(max_size=80),
    st.builds(lambda v, t, s, f, sep: f"{v}{sep}{t}{sep}{s}{sep}{f}",
              st.text(HEX + "xz", min_size=2, max_size=2), st.text(HEX + "G", min_size=32, max_size=32),
              st.text(HEX + "-", min_size=16, max_size=16), st.text(HEX, min_size=2, max_size=2),
              st.sampled_from(["-", "_", ""])))


@FUZZ
@given(traceparent, st.text(max_size=600), st.text(max_size=600))
def test_trace_header_parser(parent: str, state: str, baggage: str) -> None:
    ref = w3c.extract({w3c.TRACEPARENT: parent, w3c.TRACESTATE: state, w3c.BAGGAGE: baggage})
    assert ref is None or (len(ref.trace_id) == 32 and len(ref.span_id) == 16)


def _crafted_msgpack() -> st.SearchStrategy[bytes]:
    ext = st.builds(lambda code, data: msgpack.packb(msgpack.ExtType(code, data)),
                    st.integers(0, 127), st.binary(max_size=40))
    nested_ext = st.builds(lambda code, inner: msgpack.packb(msgpack.ExtType(code, msgpack.packb(inner))),
                           st.integers(0, 127), st.recursive(
                               st.one_of(st.none(), st.integers(-2**63, 2**64 - 1), st.text(max_size=20), st.binary(max_size=20)),
                               lambda children: st.lists(children, max_size=4)
                               | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=10))
    return st.one_of(st.binary(max_size=200), ext, nested_ext)


def _crafted_json() -> st.SearchStrategy[bytes]:
    tagged = st.builds(lambda t, v: json.dumps({"$type": t, "v": v}).encode(),
                       st.one_of(st.sampled_from(["bytes", "tuple", "set", "frozenset", "datetime", "date", "time",
                                                  "timedelta", "decimal", "uuid", "dataclass", "enum", "int",
                                                  "dict", "os.system", "subprocess.Popen", "builtins.eval"]),
                                 st.text(max_size=20)),
                       st.recursive(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=30)),
                                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                        max_size=4), max_leaves=12))
    return st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode), tagged)


@FUZZ
@given(_crafted_msgpack())
def test_msgpack_serializer_and_generic_envelope(data: bytes) -> None:
    _decode_or_refuse(MsgpackSerializer(), data)


@FUZZ
@given(_crafted_json())
def test_json_serializer_and_generic_envelope(data: bytes) -> None:
    _decode_or_refuse(JsonSerializer(), data)


def _decode_or_refuse(serializer: Any, data: bytes) -> None:
    try:
        value = serializer.loads(data)
    except (SerializationError, ValueError):
        return
    try:
        decode_envelope(value, "fuzz.Service.method")  # what the generic path does with a request
    except SerializationError:
        pass


@pytest.mark.parametrize("serializer", [MsgpackSerializer(), JsonSerializer()], ids=["msgpack", "json"])
@pytest.mark.parametrize("name", ["antigravity", "os.system", "subprocess.Popen", "builtins.eval",
                                  "this", "tests.security.certs.CertAuthority"])
def test_no_class_is_looked_up_or_imported_from_a_wire_name(serializer: Any, name: str) -> None:
    """A dataclass or enum name on the wire is a key into registered classes only, never an import."""
    module = name.rpartition(".")[0] or name
    was_loaded = module in sys.modules
    for kind in ("dataclass", "enum"):
        if isinstance(serializer, JsonSerializer):
            payload = json.dumps({"$type": kind, "name": name, "v": {"args": ["id"]}}).encode()
        else:
            payload = _msgpack_registered(kind, name)
        with pytest.raises(SerializationError, match="registered"):
            serializer.loads(payload)
    assert (module in sys.modules) == was_loaded


def _msgpack_registered(kind: str, name: str) -> bytes:
    from govrpc.rpc import serialization

    code = serialization._DATACLASS if kind == "dataclass" else serialization._ENUM
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb([name, {"args": ["id"]}])))


def test_nothing_in_govrpc_unpickles_or_evaluates_code() -> None:
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[2] / "govrpc"
    forbidden = re.compile(r"import pickle|from pickle|import marshal|import shelve|import dill|yaml\.load\("
                           r"|(?<![.\w])eval\(|(?<![.\w])exec\(|__import__\(|import_module\(")
    found = {f"{path.relative_to(package)}: {match.group(0)}" for path in package.rglob("*.py")
             for match in forbidden.finditer(path.read_text())}
    # imports by names from fixed tables or installed entry points, never from the wire: the lazy public
    # names, the extension loader, the script engines' module names; and one from the registry: a
    # "throw module.Class" mask imports that module (an installed module's top level runs, with no
    # argument from the rule) to find the safe exception class it registers (degrade's design)
    allowed = {"__init__.py: import_module(", "extension.py: import_module(", "router/script.py: __import__(",
               "degrade/mask.py: import_module("}
    assert found <= allowed, sorted(found)


@pytest.mark.parametrize("serialization", ["msgpack", "json"])
def test_crafted_requests_over_the_wire_are_refused_and_run_nothing(
        serialization: str, memory_registry: str, start_server: Any) -> None:
    import grpc

    from tests.integration.services import Echo

    echo = Echo()
    server = start_server(memory_registry, echo, serializer=serialization)
    crafted = [b"", b"\xc1", b"\x92\x90", b"\xd4\x7f\x00", b"[1,2,3]", b'{"$type":"dataclass","name":"os.system","v":{}}',
               msgpack.packb([[msgpack.ExtType(14, msgpack.packb(["subprocess.Popen", {"args": "id"}]))], {}]),
               msgpack.packb([[1], {"value": 1, "__class__": "os.system"}]), b"\x00" * 1000]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary("/test.Echo/echo", _registered_method=True)
        for payload in crafted:
            with pytest.raises(grpc.RpcError) as caught:
                call(payload, timeout=5)
            assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN), payload
    assert echo.calls == 0
