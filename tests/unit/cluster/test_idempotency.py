"""Which methods failover may retry: decorator marks and protobuf's idempotency_level."""

# no `from __future__ import annotations`: the service's annotations must be real classes

import importlib
import sys

import pytest

import govrpc
from govrpc.service import describe

PROTO = """
syntax = "proto3";
package govrpctest.idem;

service Store {
  rpc Get (Key) returns (Value) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Put (Value) returns (Key) { option idempotency_level = IDEMPOTENT; }
  rpc Append (Value) returns (Key) {}
}
message Key { string key = 1; }
message Value { string key = 1; string value = 2; }
"""


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("idem")
    (out / "govrpctest_idem.proto").write_text(PROTO)
    assert protoc.main(["protoc", f"-I{out}", f"--python_out={out}", str(out / "govrpctest_idem.proto")]) == 0
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("govrpctest_idem_pb2")
    finally:
        sys.path.remove(str(out))


def test_protobuf_idempotency_level_marks_methods(pb2) -> None:
    @govrpc.service("govrpctest.idem.Store")
    class Store:
        def Get(self, key: pb2.Key) -> pb2.Value:
            return pb2.Value(key=key.key)

        def Put(self, value: pb2.Value) -> pb2.Key:
            return pb2.Key(key=value.key)

        def Append(self, value: pb2.Value) -> pb2.Key:
            return pb2.Key(key=value.key)

    marks = {m.name: m.idempotent for m in describe(Store).methods}
    assert marks == {"Get": True, "Put": True, "Append": False}


def test_the_decorator_wins_over_the_proto(pb2) -> None:
    @govrpc.service("govrpctest.idem.Store", version="2")
    class Store:
        @govrpc.method(idempotent=False)
        def Put(self, value: pb2.Value) -> pb2.Key:
            return pb2.Key(key=value.key)

        @govrpc.method(idempotent=True)
        def Append(self, value: pb2.Value) -> pb2.Key:
            return pb2.Key(key=value.key)

    marks = {m.name: m.idempotent for m in describe(Store).methods}
    assert marks == {"Put": False, "Append": True}


def test_plain_python_methods_follow_the_decorators() -> None:
    @govrpc.service("plain.Store", idempotent=True)
    class Everything:
        def a(self) -> int:
            return 1

    @govrpc.service("plain.Store2")
    class Some:
        def a(self) -> int:
            return 1

        @govrpc.method(idempotent=True)
        def b(self) -> int:
            return 2

    assert {m.name: m.idempotent for m in describe(Everything).methods} == {"a": True}
    assert {m.name: m.idempotent for m in describe(Some).methods} == {"a": False, "b": True}
