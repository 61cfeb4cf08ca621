"""The console's WSGI application: pages rendered on the server, a few JSON endpoints for the page's JS.

Every page and every write needs a login session (``auth.Login``); every write
(POST) also needs the session's CSRF token (a form field ``csrf`` or the
``X-CSRF-Token`` header) and, when the browser sends one, an ``Origin`` equal
to the console's own. Reads and writes go through ``govrpc.Admin`` only, so a
ZooKeeper registry sees the console's own identity (``user:password@`` in the
registry URL) and its ACLs apply.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
import time
from importlib import resources
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, quote, urlencode

from govrpc.admin import Admin
from govrpc.configurator import Configurator, configure_provider, parse_configurator
from govrpc.console.auth import Login, Session
from govrpc.console.graph import dependency_svg
from govrpc.console.history import RuleHistory
from govrpc.console.traffic import TrafficRing, traffic_svg
from govrpc.degrade.switches import SWITCH_SERVICE, SWITCHES
from govrpc.exceptions import GovRpcError, RuleError
from govrpc.registry.base import CONFIGURATORS, ROUTERS
from govrpc.url import URL

__all__ = ["ConsoleApp"]

log = logging.getLogger("govrpc.console")

PAGE_SIZE = 50
MAX_BODY = 1 << 20
CACHE_SECONDS = 2.0
COOKIE = "govrpc_console"
EDITABLE = (ROUTERS, CONFIGURATORS)
_STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]

StartResponse = Callable[..., Any]


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


class HttpError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """What a handler needs of one request."""

    def __init__(self, environ: Mapping[str, Any], session: Session | None) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "/") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        self.session = session
        self.form: dict[str, Any] = {}
        self.json = False

    def read_body(self) -> None:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HttpError("400 Bad Request", "bad Content-Length") from None
        if length > MAX_BODY:
            raise HttpError("413 Content Too Large", f"the request body is over {MAX_BODY} bytes")
        raw = self.environ["wsgi.input"].read(length) if length else b""
        kind = self.environ.get("CONTENT_TYPE", "")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError("400 Bad Request", "the request body is not UTF-8") from None
        if kind.startswith("application/json"):
            self.json = True
            try:
                data = json.loads(text or "{}")
            except ValueError as exc:
                raise HttpError("400 Bad Request", f"the request body is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise HttpError("400 Bad Request", "the request body must be a JSON object")
            self.form = data
        else:
            self.form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def field(self, name: str, default: str | None = None) -> str:
        value = self.form.get(name, self.query.get(name, default))
        if value is None:
            raise HttpError("400 Bad Request", f"missing field {name!r}")
        return str(value)


class Response:
    def __init__(self, body: str | bytes, status: str = "200 OK", kind: str = "text/html; charset=utf-8",
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.headers = [("Content-Type", kind), *headers]

    @classmethod
    def json(cls, data: Any, status: str = "200 OK") -> Response:
        return cls(json.dumps(data), status, "application/json")

    @classmethod
    def redirect(cls, where: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls("", "303 See Other", headers=[("Location", where), *headers])


class _Cache:
    """Registry reads kept ``CACHE_SECONDS``: many open pages cost the registry what one does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._values: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, read: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            return hit[1]
        value = read()
        with self._lock:
            if len(self._values) > 50_000:
                self._values.clear()
            self._values[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def _configurators(rules: Mapping[str, str]) -> list[Configurator]:
    parsed = []
    for name, text in sorted(rules.items()):
        try:
            parsed.append(parse_configurator(text, name))
        except RuleError:
            continue  # processes keep the last good version; the rules page shows the error
    return parsed


def provider_rule_name(address: str) -> str:
    """The configurator the console writes to disable or re-weight the provider at ``address``."""
    return "provider-" + address.replace(":", "-").replace("[", "").replace("]", "")


def _uptime(url: URL, now: float) -> str:
    raw = url.get("timestamp")
    try:
        started = float(raw) / (1000.0 if raw and float(raw) > 1e11 else 1.0) if raw else None
    except ValueError:
        started = None
    if started is None:
        return ""
    seconds = max(0, int(now - started))
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h" if seconds >= 86400 else \
        f"{seconds // 3600}h {seconds % 3600 // 60}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60}s"


class ConsoleApp:
    """The WSGI application over one ``Admin``."""

    def __init__(self, admin: Admin, login: Login, *, cache_seconds: float = CACHE_SECONDS,
                 spans: tuple[str, ...] = ()) -> None:
        self.admin = admin
        self.spans = spans  # span files for the dependency page (govrpc trace report's input)
        self.login = login
        self.history = RuleHistory(admin)
        self.cache = _Cache(cache_seconds)
        self.traffic = TrafficRing(lambda service: self.admin.health(service).get(service, []))
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/"): lambda r: Response.redirect("/services"),
            ("GET", "/login"): self.login_page,
            ("POST", "/login"): self.login_post,
            ("POST", "/logout"): self.logout_post,
            ("GET", "/services"): self.services_page,
            ("GET", "/service"): self.service_page,
            ("GET", "/rules"): self.rules_page,
            ("GET", "/history"): self.history_page,
            ("GET", "/dependencies"): self.dependencies_page,
            ("POST", "/api/check"): self.check_api,
            ("POST", "/api/explain"): self.explain_api,
            ("POST", "/api/rule"): self.rule_post,
            ("POST", "/api/rule/delete"): self.rule_delete,
            ("POST", "/api/rollback"): self.rollback_post,
            ("POST", "/api/provider"): self.provider_post,
            ("GET", "/api/traffic"): self.traffic_api,
            ("GET", "/switches"): self.switches_page,
            ("POST", "/api/switch"): self.switch_post,
        }

    # -- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        try:
            response = self._handle(environ)
        except HttpError as exc:
            response = self._error(environ, exc.status, str(exc))
        except RuleError as exc:
            response = Response.json({"ok": False, "error": str(exc), "position": exc.position}, "400 Bad Request")
        except GovRpcError as exc:
            response = self._error(environ, "400 Bad Request", str(exc))
        except Exception:  # noqa: BLE001 - one bad request must not take the console down
            log.exception("console request %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = self._error(environ, "500 Internal Server Error", "the console failed; see its log")
        start_response(response.status, [*response.headers, *_SECURITY_HEADERS,
                                         ("Content-Length", str(len(response.body)))])
        return [response.body]

    def _error(self, environ: Mapping[str, Any], status: str, message: str) -> Response:
        if str(environ.get("PATH_INFO", "")).startswith("/api/") or environ.get("REQUEST_METHOD") == "POST":
            return Response.json({"ok": False, "error": message}, status)
        return Response(self._layout("Error", f'<p class="error">{e(message)}</p>', None), status)

    def _handle(self, environ: Mapping[str, Any]) -> Response:
        path = environ.get("PATH_INFO", "/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET" and path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        session = self.login.session(_cookie(environ, COOKIE))
        request = Request(environ, session)
        handler = self._routes.get((method, path))
        if handler is None:
            allowed = any(p == path for _m, p in self._routes)
            raise HttpError("405 Method Not Allowed" if allowed else "404 Not Found", f"no page {method} {path}")
        if method == "POST":
            self._check_origin(environ)
            request.read_body()
        if path != "/login":
            if session is None:
                if method == "GET" and not path.startswith("/api/"):
                    return Response.redirect("/login?" + urlencode({"next": _here(environ)}))
                raise HttpError("401 Unauthorized", "log in first")
            if method == "POST" and not _same(request.form.get("csrf") or environ.get("HTTP_X_CSRF_TOKEN"),
                                              session.csrf):
                raise HttpError("403 Forbidden", "missing or wrong CSRF token")
        return handler(request)

    def _check_origin(self, environ: Mapping[str, Any]) -> None:
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin != "null":
            host = environ.get("HTTP_HOST", "")
            if origin.split("://", 1)[-1] != host:
                raise HttpError("403 Forbidden", f"cross-origin write from {origin} refused")

    def _static(self, name: str) -> Response:
        kind = _STATIC.get(name)
        if kind is None:
            raise HttpError("404 Not Found", f"no static file {name!r}")
        data = resources.files("govrpc.console").joinpath("static", name).read_bytes()
        return Response(data, kind=kind, headers=[])

    # -- layout ----------------------------------------------------------------------------
    def _layout(self, title: str, body: str, session: Session | None) -> str:
        nav = ""
        if session is not None:
            nav = (f'<nav><a href="/services">Services</a> <a href="/rules">Rules</a> <a href="/dependencies">Dependencies</a>'
                   f'<a href="/switches">Switches</a>'
                   f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" '
                   f'value="{e(session.csrf)}"><span class="user">{e(session.user)}</span> '
                   f'<button type="submit" id="logout">Log out</button></form></nav>')
        csrf = f'<meta name="csrf" content="{e(session.csrf)}">' if session else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} - govrpc console</title>'
                f'{csrf}<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer>'
                f'</script></head><body><header><h1><a href="/services">govrpc console</a></h1>{nav}</header>'
                f'<main><h2>{e(title)}</h2>{body}</main></body></html>')

    def _page(self, title: str, body: str, request: Request) -> Response:
        return Response(self._layout(title, body, request.session))

    # -- login -----------------------------------------------------------------------------
    def login_page(self, request: Request, error: str = "") -> Response:
        target = request.query.get("next") or request.form.get("next") or "/services"
        message = f'<p class="error" id="login-error">{e(error)}</p>' if error else ""
        body = (f'{message}<form method="post" action="/login" id="login-form">'
                f'<input type="hidden" name="next" value="{e(target)}">'
                f'<label>User <input name="user" id="user" autocomplete="username" value="{e(self.login.user)}"></label>'
                f'<label>Password <input type="password" name="password" id="password" '
                f'autocomplete="current-password"></label><button type="submit" id="login">Log in</button></form>')
        return Response(self._layout("Log in", body, None), "401 Unauthorized" if error else "200 OK")

    def login_post(self, request: Request) -> Response:
        session = self.login.login(request.field("user", ""), request.field("password", ""))
        if session is None:
            return self.login_page(request, "wrong user or password")
        target = request.field("next", "/services")
        if not target.startswith("/") or target.startswith("//"):
            target = "/services"  # no open redirect
        cookie = f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict"
        return Response.redirect(target, [("Set-Cookie", cookie)])

    def logout_post(self, request: Request) -> Response:
        assert request.session is not None
        self.login.logout(request.session.token)
        return Response.redirect("/login", [("Set-Cookie", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")])

    # -- services --------------------------------------------------------------------------
    def _services(self) -> list[str]:
        return self.cache.get("services", self.admin.services)

    def _providers(self, service: str) -> list[URL]:
        return self.cache.get(("providers", service), lambda: self.admin.providers(service))

    def _consumers(self, service: str) -> list[URL]:
        return self.cache.get(("consumers", service), lambda: self.admin.consumers(service))

    def _rules(self, service: str, category: str) -> dict[str, str]:
        return self.cache.get((category, service), lambda: self.admin.rules(service, category))

    def services_page(self, request: Request) -> Response:
        query = request.query.get("q", "").strip()
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            raise HttpError("400 Bad Request", f"page {request.query.get('page')!r} is not a number") from None
        names = self._services()
        if query:
            lowered = query.lower()
            names = [n for n in names if lowered in n.lower()]
        pages = max(1, -(-len(names) // PAGE_SIZE))
        page = min(page, pages)
        rows = []
        for name in names[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]:
            providers, consumers = self._providers(name), self._consumers(name)
            apps = sorted({u.get("application", "") or "" for u in providers} - {""})
            callers = sorted({u.get("application", "") or "" for u in consumers} - {""})
            badge = ' <span class="badge">consumers only</span>' if consumers and not providers else ""
            link = "/service?" + urlencode({"name": name})
            rows.append(f'<tr><td><a href="{e(link)}">{e(name)}</a>{badge}</td><td>{len(providers)}</td>'
                        f'<td>{e(", ".join(apps))}</td><td>{len(consumers)}</td><td>{e(", ".join(callers))}</td></tr>')
        search = (f'<form method="get" action="/services" id="search"><input name="q" id="q" value="{e(query)}" '
                  f'placeholder="search services"><button type="submit">Search</button></form>')
        pager = self._pager(query, page, pages, len(names))
        table = ('<table id="services"><thead><tr><th>Service</th><th>Providers</th><th>Applications</th>'
                 '<th>Consumers</th><th>Consumer applications</th></tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table>") if rows else '<p class="empty">no service matches</p>'
        return self._page("Services", search + pager + table + pager, request)

    def _pager(self, query: str, page: int, pages: int, total: int) -> str:
        def link(number: int, label: str, rel: str) -> str:
            return f'<a rel="{rel}" href="/services?{e(urlencode({"q": query, "page": number}))}">{label}</a>'

        parts = [f'<span class="count">{total} services, page {page} of {pages}</span>']
        if page > 1:
            parts.append(link(page - 1, "&larr; previous", "prev"))
        if page < pages:
            parts.append(link(page + 1, "next &rarr;", "next"))
        return '<div class="pager">' + " ".join(parts) + "</div>"

    def service_page(self, request: Request) -> Response:
        service = request.field("name")
        providers, consumers = self.admin.providers(service), self.admin.consumers(service)
        rules = _configurators(self.admin.rules(service, CONFIGURATORS))
        now = time.time()
        csrf = request.session.csrf if request.session else ""
        rows = []
        for url in providers:
            seen = configure_provider(url, rules, "")
            state = "disabled" if seen is None else "enabled"
            weight = (seen or url).get("weight", "100")
            tags = ", ".join(f"{k}={v}" for k, v in url.params.items() if k in ("tag", "env") or k.startswith("tag."))
            locality = ", ".join(f"{k}={v}" for k, v in url.params.items() if k in ("zone", "region", "idc", "host"))
            health = url.get("health", "") or ""
            toggle = "enable" if seen is None else "disable"
            rows.append(
                f'<tr data-address="{e(url.address)}" class="{state}"><td>{e(url.address)}</td>'
                f'<td>{e(url.get("version", ""))}</td><td>{e(url.get("group", ""))}</td>'
                f'<td>{e(url.get("application", ""))}</td><td class="weight">{e(weight)}</td><td>{e(tags)}</td>'
                f'<td>{e(locality)}</td><td>{e(_uptime(url, now))}</td><td>{e(health)}</td>'
                f'<td class="state">{state}</td><td>'
                f'<form method="post" action="/api/provider" class="inline"><input type="hidden" name="csrf" '
                f'value="{e(csrf)}"><input type="hidden" name="service" value="{e(service)}">'
                f'<input type="hidden" name="address" value="{e(url.address)}">'
                f'<button name="action" value="{toggle}" class="{toggle}">{toggle.capitalize()}</button></form> '
                f'<form method="post" action="/api/provider" class="inline"><input type="hidden" name="csrf" '
                f'value="{e(csrf)}"><input type="hidden" name="service" value="{e(service)}">'
                f'<input type="hidden" name="address" value="{e(url.address)}">'
                f'<input type="number" name="weight" min="1" max="100000" value="{e(weight)}" class="weight-input">'
                f'<button name="action" value="weight" class="reweight">Set weight</button></form></td></tr>')
        ptable = ('<table id="providers"><thead><tr><th>Address</th><th>Version</th><th>Group</th><th>Application'
                  '</th><th>Weight</th><th>Tags</th><th>Locality</th><th>Uptime</th><th>Health</th><th>State</th>'
                  '<th></th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>") if rows \
            else '<p class="empty">no live provider</p>'
        crow = "".join(f'<tr><td>{e(u.host)}</td><td>{e(u.get("application", ""))}</td><td>{e(u.get("version", ""))}'
                       f'</td><td>{e(u.get("group", ""))}</td><td>{e(u.get("pid", ""))}</td><td>{e(_uptime(u, now))}'
                       f'</td></tr>' for u in consumers)
        ctable = ('<table id="consumers"><thead><tr><th>Host</th><th>Application</th><th>Version</th><th>Group</th>'
                  '<th>PID</th><th>Uptime</th></tr></thead><tbody>' + crow + "</tbody></table>") if crow \
            else '<p class="empty">no live consumer</p>'
        rules_link = f'<p><a href="/rules?{e(urlencode({"service": service}))}" id="rules-link">Rules of {e(service)}</a></p>'
        traffic = (f'<section id="traffic" data-service="{e(service)}"><h3>Traffic</h3>'
                   f'{traffic_svg(self.traffic.series(service))}</section>')
        body = f"{rules_link}<h3>Providers</h3>{ptable}{traffic}<h3>Consumers</h3>{ctable}"
        return self._page(service, body, request)

    def provider_post(self, request: Request) -> Response:
        service, address, action = request.field("service"), request.field("address"), request.field("action")
        name = provider_rule_name(address)
        current = self.admin.rules(service, CONFIGURATORS).get(name)
        settings: dict[str, str] = {}
        if current:
            try:
                settings = dict(parse_configurator(current, name).params)
            except RuleError:
                settings = {}
        if action == "disable":
            settings["disabled"] = "true"
        elif action == "enable":
            settings.pop("disabled", None)
        elif action == "weight":
            settings["weight"] = request.field("weight")
        else:
            raise HttpError("400 Bad Request", f"action {action!r} is not disable, enable or weight")
        user = request.session.user if request.session else "?"
        if settings:
            text = f"# written by the govrpc console\naddress = {address}\n" + "".join(
                f"{k} = {v}\n" for k, v in sorted(settings.items()))
            self.history.put(service, CONFIGURATORS, name, text, user=user)
        elif current is not None:
            self.history.delete(service, CONFIGURATORS, name, user=user)
        self.cache.clear()
        if request.json:
            return Response.json({"ok": True, "rule": name})
        return Response.redirect("/service?" + urlencode({"name": service}))

    def traffic_api(self, request: Request) -> Response:
        """The traffic ring of one service (polled now if its last poll is old) and its charts."""
        series = self.traffic.series(request.field("service"))
        return Response.json({"ok": True, "svg": traffic_svg(series), "providers": {
            address: [{"time": t, "qps": q, "error_rate": err, "p99_ms": p99} for t, q, err, p99 in points]
            for address, points in series.items()}})

    # -- switches ----------------------------------------------------------------------------
    def switches_page(self, request: Request) -> Response:
        csrf = request.session.csrf if request.session else ""
        hidden = f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        rows = []
        for name, value in sorted(self.admin.switches().items()):
            shown = json.dumps(value, sort_keys=True)
            flip = (f'<button name="action" value="flip" class="flip">Turn {"off" if value else "on"}</button> '
                    if isinstance(value, bool) else "")
            history = "/history?" + urlencode({"service": SWITCH_SERVICE, "category": SWITCHES, "name": name})
            rows.append(
                f'<tr data-switch="{e(name)}"><td>{e(name)}</td><td class="value"><code>{e(shown)}</code></td><td>'
                f'<form method="post" action="/api/switch" class="inline">{hidden}'
                f'<input type="hidden" name="name" value="{e(name)}">{flip}'
                f'<input name="value" class="value-input" value="{e(shown)}" aria-label="JSON value">'
                f'<button name="action" value="set" class="set">Set</button> '
                f'<button name="action" value="delete" class="delete">Delete</button></form> '
                f'<a href="{e(history)}" class="history">History</a></td></tr>')
        table = ('<table id="switches"><thead><tr><th>Switch</th><th>Value</th><th></th></tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table>") if rows else '<p class="empty">no switch is set</p>'
        add = (f'<form method="post" action="/api/switch" id="switch-form">{hidden}'
               f'<label>Name <input name="name" id="switch-name"></label> '
               f'<label>Value (JSON) <input name="value" id="switch-value" value="true"></label>'
               f'<button name="action" value="set" id="switch-set">Set</button></form>')
        note = ('<p>Business switches (<code>govrpc.degrade</code>): every process watching this registry sees a '
                'change at once; a deleted switch falls back to the default in the code.</p>')
        return self._page("Switches", note + table + add, request)

    def switch_post(self, request: Request) -> Response:
        name, action = request.field("name"), request.field("action", "set")
        user = request.session.user if request.session else "?"
        if action == "delete":
            self.history.delete_switch(name, user=user)
        elif action in ("set", "flip"):
            if action == "flip":
                current = self.admin.switches().get(name)
                if not isinstance(current, bool):
                    raise HttpError("400 Bad Request", f"switch {name!r} holds {current!r}, not true or false")
                value: Any = not current
            else:
                raw = request.form.get("value", request.query.get("value"))
                if raw is None:
                    raise HttpError("400 Bad Request", "missing field 'value'")
                if isinstance(raw, str) and not request.json:
                    try:
                        value = json.loads(raw)
                    except ValueError as exc:
                        raise HttpError("400 Bad Request", f"switch value {raw!r} is not JSON: {exc}") from None
                else:
                    value = raw
            self.history.set_switch(name, value, user=user)
        else:
            raise HttpError("400 Bad Request", f"action {action!r} is not set, flip or delete")
        if request.json:
            return Response.json({"ok": True, "switches": self.admin.switches()})
        return Response.redirect("/switches")

    # -- rules -----------------------------------------------------------------------------
    def rules_page(self, request: Request) -> Response:
        service = request.query.get("service", "").strip()
        csrf = request.session.csrf if request.session else ""
        picker = (f'<form method="get" action="/rules" id="service-picker"><input name="service" id="service" '
                  f'value="{e(service)}" placeholder="service name" list="service-names"><button type="submit">'
                  f'Open</button></form>')
        if not service:
            return self._page("Rules", picker, request)
        sections = []
        for category in EDITABLE:
            rules = self.admin.rules(service, category)
            items = []
            for name, text in sorted(rules.items()):
                problem = ""
                try:
                    self.admin.check_rule(category, text, name)
                except RuleError as exc:
                    problem = f'<p class="error">{e(exc)}</p>'
                history = "/history?" + urlencode({"service": service, "category": category, "name": name})
                items.append(
                    f'<li class="rule" data-category="{e(category)}" data-name="{e(name)}"><b>{e(name)}</b> '
                    f'<button type="button" class="edit" data-category="{e(category)}" data-name="{e(name)}">Edit'
                    f'</button> <a href="{e(history)}" class="history">History</a> '
                    f'<form method="post" action="/api/rule/delete" class="inline"><input type="hidden" name="csrf" '
                    f'value="{e(csrf)}"><input type="hidden" name="service" value="{e(service)}"><input type="hidden" '
                    f'name="category" value="{e(category)}"><input type="hidden" name="name" value="{e(name)}">'
                    f'<button type="submit" class="delete">Delete</button></form>'
                    f'<pre class="text">{e(text)}</pre>{problem}</li>')
            sections.append(f'<section id="{e(category)}"><h3>{e(category)}</h3><ul>{"".join(items) or "<li>none</li>"}'
                            f'</ul></section>')
        methods = sorted({m for u in self.admin.providers(service) for m in u.methods})
        options = "".join(f'<option value="{e(m)}">' for m in methods)
        editor = (
            f'<section id="editor" data-service="{e(service)}"><h3>Edit a rule</h3>'
            f'<label>Kind <select id="category">{"".join(f"<option>{c}</option>" for c in EDITABLE)}</select></label> '
            f'<label>Name <input id="rule-name" value="console"></label>'
            f'<textarea id="rule-text" rows="8" cols="80" spellcheck="false"></textarea>'
            f'<div id="check" class="check"></div>'
            f'<fieldset id="explain"><legend>What would happen</legend>'
            f'<label>Method <input id="explain-method" list="methods" value="{e(methods[0] if methods else "")}">'
            f'</label><datalist id="methods">{options}</datalist> '
            f'<label>Application <input id="explain-application" value="govrpc-consumer"></label> '
            f'<label>Host <input id="explain-host" value="127.0.0.1"></label> '
            f'<label>Arguments (JSON list) <input id="explain-args" value="[]"></label> '
            f'<button type="button" id="explain-button">Explain</button><div id="explain-result"></div></fieldset>'
            f'<button type="button" id="save">Save</button> <span id="save-result"></span></section>')
        data = {c: self.admin.rules(service, c) for c in EDITABLE}
        payload = f'<script type="application/json" id="rules-data">{_script_json(data)}</script>'
        return self._page(f"Rules of {service}", picker + "".join(sections) + editor + payload, request)

    def check_api(self, request: Request) -> Response:
        category, text, name = request.field("category"), request.field("text", ""), request.field("name", "")
        _check_category(category)
        try:
            self.admin.check_rule(category, text, name)
        except RuleError as exc:
            return Response.json({"ok": False, "error": str(exc), "position": exc.position})
        return Response.json({"ok": True})

    def explain_api(self, request: Request) -> Response:
        service, method = request.field("service"), request.field("method")
        rules = dict(self.admin.routes(service))
        if request.field("category", ROUTERS) == ROUTERS and request.field("text", "").strip():
            rules[request.field("name", "console")] = request.field("text")
        try:
            args = json.loads(request.field("args", "[]") or "[]")
        except ValueError as exc:
            raise HttpError("400 Bad Request", f"arguments are not JSON: {exc}") from None
        if not isinstance(args, list):
            raise HttpError("400 Bad Request", "arguments must be a JSON list")
        steps = self.admin.explain_route(service, method, application=request.field("application", "govrpc-consumer"),
                                         host=request.field("host", "127.0.0.1"), args=args, rules=rules)
        return Response.json({"ok": True, "steps": [{"router": s.router, "why": s.why,
                                                     "kept": [u.address for u in s.kept]} for s in steps]})

    def rule_post(self, request: Request) -> Response:
        service, category, name = request.field("service"), request.field("category"), request.field("name")
        _check_category(category)
        user = request.session.user if request.session else "?"
        version = self.history.put(service, category, name, request.field("text"), user=user)
        self.cache.clear()
        return Response.json({"ok": True, "version": version.version})

    def rule_delete(self, request: Request) -> Response:
        service, category, name = request.field("service"), request.field("category"), request.field("name")
        _check_category(category)
        user = request.session.user if request.session else "?"
        self.history.delete(service, category, name, user=user)
        self.cache.clear()
        if request.json:
            return Response.json({"ok": True})
        return Response.redirect("/rules?" + urlencode({"service": service}))

    def history_page(self, request: Request) -> Response:
        service, category, name = request.field("service"), request.field("category"), request.field("name")
        current = self.admin.rules(service, category).get(name)
        csrf = request.session.csrf if request.session else ""
        rows = []
        versions = self.history.versions(service, category, name)
        for v in versions:
            is_current = (v.text or None) == current and v is versions[0]
            button = "" if is_current else (
                f'<form method="post" action="/api/rollback" class="inline"><input type="hidden" name="csrf" '
                f'value="{e(csrf)}"><input type="hidden" name="service" value="{e(service)}"><input type="hidden" '
                f'name="category" value="{e(category)}"><input type="hidden" name="name" value="{e(name)}">'
                f'<input type="hidden" name="version" value="{v.version}"><button type="submit" class="rollback">'
                f'Roll back to v{v.version}</button></form>')
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.time))
            rows.append(f'<tr data-version="{v.version}"><td>v{v.version}</td><td>{e(v.user)}</td><td>{e(when)}</td>'
                        f'<td>{e(v.action)}</td><td><pre>{e(v.text) or "(deleted)"}</pre></td><td>{button}</td></tr>')
        note = ""
        if versions and (versions[0].text or None) != current:
            note = '<p class="warning">the stored rule was changed outside the console since its last version</p>'
        table = ('<table id="history"><thead><tr><th>Version</th><th>Who</th><th>When</th><th>What</th><th>Text</th>'
                 '<th></th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>") if rows \
            else '<p class="empty">no version recorded</p>'
        back = '<p><a href="/switches">Switches</a></p>' if (service, category) == (SWITCH_SERVICE, SWITCHES) \
            else f'<p><a href="/rules?{e(urlencode({"service": service}))}">Rules of {e(service)}</a></p>'
        return self._page(f"History of {category} {name} ({service})", back + note + table, request)

    def rollback_post(self, request: Request) -> Response:
        service, category, name = request.field("service"), request.field("category"), request.field("name")
        if (service, category) != (SWITCH_SERVICE, SWITCHES):
            _check_category(category)
        try:
            number = int(request.field("version"))
        except ValueError:
            raise HttpError("400 Bad Request", "version is not a number") from None
        user = request.session.user if request.session else "?"
        self.history.rollback(service, category, name, number, user=user)
        self.cache.clear()
        if request.json:
            return Response.json({"ok": True})
        return Response.redirect("/history?" + urlencode({"service": service, "category": category, "name": name}))


    # -- dependencies ------------------------------------------------------------------------
    def dependencies_page(self, request: Request) -> Response:
        if not self.spans:
            body = ('<p class="empty">no span files: start the console with <code>--spans FILE</code> '
                    '(the files <code>govrpc trace report</code> reads)</p>')
            return self._page("Dependencies", body, request)
        from govrpc.trace.report import analyse

        data = analyse(self.spans).as_dict()
        rows = "".join(f'<tr><td>{e(r["caller"])}</td><td>{e(r["service"])}</td><td>{e(r["method"])}</td>'
                       f'<td>{r["calls"]}</td><td>{r["errors"]}</td><td>{r["qps"]:.1f}</td><td>{r["p99_ms"]:.1f}</td>'
                       f'</tr>' for r in data["dependencies"])
        table = ('<table id="dependency-table"><thead><tr><th>Caller</th><th>Service</th><th>Method</th><th>Calls</th>'
                 '<th>Errors</th><th>Calls/s</th><th>p99 ms</th></tr></thead><tbody>' + rows + '</tbody></table>')
        summary = f'<p>{data["spans"]} spans, {data["traces"]} traces over {data["seconds"]} s</p>'
        return self._page("Dependencies", summary + dependency_svg(data) + table, request)


def _check_category(category: str) -> None:
    if category not in EDITABLE:
        raise HttpError("400 Bad Request", f"rule kind {category!r} is not one of {', '.join(EDITABLE)}")


def _script_json(data: Any) -> str:
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _same(given: Any, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _cookie(environ: Mapping[str, Any], name: str) -> str | None:
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _here(environ: Mapping[str, Any]) -> str:
    path = quote(str(environ.get("PATH_INFO", "/")))
    query = environ.get("QUERY_STRING", "")
    return path + (f"?{query}" if query else "")
