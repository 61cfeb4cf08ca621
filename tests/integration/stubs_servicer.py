"""The generated servicer the channel tests host (importable by provider subprocesses too).

``load(out)`` generates ``stubs_pb2`` / ``stubs_pb2_grpc`` from ``stubs.proto`` into ``out``."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

PROTO = Path(__file__).with_name("stubs.proto")


def load(out: Path) -> tuple[Any, Any]:
    from grpc_tools import protoc

    target = out / "stubs.proto"
    if not target.exists():
        shutil.copy(PROTO, target)
        code = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", str(target)])
        assert code == 0, "protoc failed"
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("stubs_pb2"), importlib.import_module("stubs_pb2_grpc")


def servicer(pb2: Any, pb2_grpc: Any, name: str) -> Any:
    import grpc

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.calls = 0

        def SayHello(self, request: Any, context: Any) -> Any:
            self.calls += 1
            if request.name == "missing":
                context.abort(grpc.StatusCode.NOT_FOUND, "nobody called missing")
            return pb2.HelloReply(message=f"hello {request.name}", server=name)

        def ListHellos(self, request: Any, context: Any) -> Any:
            for i in range(request.count):
                yield pb2.HelloReply(message=f"hello {request.name} #{i}", server=name)

        def CollectHellos(self, requests: Any, context: Any) -> Any:
            return pb2.HelloReply(message=",".join(r.name for r in requests), server=name)

        def ChatHellos(self, requests: Any, context: Any) -> Any:
            for r in requests:
                yield pb2.HelloReply(message=f"hi {r.name}", server=name)

    return Greeter()


if __name__ == "__main__":  # a provider process: python stubs_servicer.py OUT REGISTRY NAME
    import time

    import govrpc

    pb2, pb2_grpc = load(Path(sys.argv[1]))
    server = govrpc.Server(sys.argv[2]).add_servicer(pb2_grpc.add_GreeterServicer_to_server,
                                                     servicer(pb2, pb2_grpc, sys.argv[3])).start()
    print(server.port, flush=True)
    time.sleep(60)
