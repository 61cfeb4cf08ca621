"""The console's HTTP server: the stdlib's WSGI server, one thread per request, loopback by default."""

from __future__ import annotations

import logging
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from govrpc.admin import Admin
from govrpc.console.app import ConsoleApp
from govrpc.console.auth import Login
from govrpc.registry.base import Registry

__all__ = ["ConsoleServer"]

log = logging.getLogger("govrpc.console")


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s " + format, self.address_string(), *args)


class ConsoleServer:
    """``ConsoleServer(registry, login, port=8080).start()``; ``url`` once started; ``stop()``."""

    def __init__(self, registry: str | Registry | None, login: Login, *, host: str = "127.0.0.1",
                 port: int = 8080, spans: tuple[str, ...] = ()) -> None:
        self.admin = Admin(registry)
        self.app = ConsoleApp(self.admin, login, spans=tuple(spans))
        try:
            self._server = make_server(host, port, self.app, server_class=_ThreadingWSGIServer,
                                       handler_class=_QuietHandler)
        except BaseException:
            self.admin.close()
            raise
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="govrpc-console", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.admin.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
