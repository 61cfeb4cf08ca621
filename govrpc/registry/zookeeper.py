"""``zookeeper://[user:password@]h1:2181,h2:2181/root?session_timeout=10``: the distributed registry.

Layout (DESIGN.md section 4; root ``/govrpc`` unless the URL names one)::

    /{root}/{service}/providers/{encoded provider URL}   ephemeral, one per live provider
    /{root}/{service}/consumers/{encoded consumer URL}   ephemeral
    /{root}/{service}/configurators/{name}               persistent text
    /{root}/{service}/routers/{name}                     persistent text

Threads. kazoo's own threads only enqueue: a watch event queues a re-read of
its path, a connection state change wakes the repair thread. One dispatcher
thread reads ZooKeeper and calls listeners, so each change is applied once, in
order, and a slow listener never blocks kazoo. One repair thread, with a
tenacity backoff, re-creates this process's ephemeral nodes and re-reads the
watched paths after a failure or a reconnect (kazoo drops every watch when a
connection is lost). Registrations and subscriptions that fail for want of a
connection are kept and retried there, never dropped.

Outage safety. While the connection is suspended the last lists stay. Every
provider list is saved on disk (``snapshot.SnapshotStore``); a process that
starts while ZooKeeper is unreachable uses those snapshots and logs their age.
A push that removes every provider of a service at once is held back for
``empty_protection`` seconds (``protection.EmptyPushGuard``).

Security. ``user:password@`` (or ``auth=user:password``) adds a digest identity;
the nodes it creates are writable by that identity only and readable by
anyone (or by the ``reader=user:password`` identity). Consumers may add their
own entries under ``consumers/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import heapq
import itertools
import logging
import queue
import re
import threading
import time
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qsl, unquote

import tenacity
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
    SessionMovedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import make_acl, make_digest_acl, make_digest_acl_credential

from govrpc.exceptions import ConfigurationError, RegistryError, RegistryUnreachableError
from govrpc.registry.base import (
    CONSUMERS,
    PROVIDERS,
    NotifyListener,
    Registry,
    RuleListener,
    category_of,
    check_rule_category,
    check_rule_name,
    safe_call,
)
from govrpc.registry.protection import EmptyPushGuard
from govrpc.registry.snapshot import SnapshotStore, default_snapshot_dir
from govrpc.url import CONSUMER, PROVIDER_SCHEMES, URL

__all__ = ["SubscriptionStatus", "ZookeeperRegistry"]

log = logging.getLogger("govrpc.registry.zookeeper")

DEFAULT_PORT = 2181
DEFAULT_ROOT = "govrpc"

# name -> (default, what it is); every value is validated in ZookeeperRegistry.__init__
PARAMETERS: dict[str, tuple[str, str]] = {
    "session_timeout": ("10", "seconds before ZooKeeper removes a silent process's entries"),
    "connect_timeout": ("10", "seconds to wait for ZooKeeper at start"),
    "operation_timeout": ("5", "deadline, seconds, of each ZooKeeper request"),
    "empty_protection": ("30", "seconds a push removing every provider is held back (0: off)"),
    "retry_max_delay": ("5", "longest pause, seconds, between background retries"),
    "propagation_delay": ("0.15", "seconds a server waits after deregistering"),
    "snapshot_dir": ("", "directory of provider snapshots (default ~/.govrpc/snapshots)"),
    "auth": ("", "digest credentials user:password"),
    "reader": ("anyone", "who may read nodes this identity creates: anyone or user:password"),
    "hosts": ("", "the host list (set from the address)"),
}

_TRANSIENT = (ConnectionLoss, SessionExpiredError, OperationTimeoutError, SessionMovedError, KazooTimeoutError)
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]+))?$")
_PART_RE = re.compile(r"^[A-Za-z0-9_.:@=+-]+$")


class _NotConnected(Exception):
    """Raised inside the repair loop to wait for a connection."""


def _seconds(name: str, raw: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"zookeeper registry: {name}={raw!r} is not a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value or value == float("inf"):
        raise ConfigurationError(f"zookeeper registry: {name}={raw!r} must be a positive number of seconds")
    return value


def _credentials(name: str, raw: str) -> tuple[str, str]:
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        missing = "the ':'" if not sep else "the user" if not user else "the password"
        # never echo what was given: it may hold a password
        raise ConfigurationError(f"zookeeper registry: {name} must be user:password; {missing} is missing")
    return user, password


def _check_hosts(raw: str) -> str:
    """Normalise ``h1:2181,h2`` to ``h1:2181,h2:2181``; raises naming the bad entry."""
    if not raw:
        raise ConfigurationError("zookeeper registry address names no host (zookeeper://host:2181/root)")
    hosts = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            raise ConfigurationError(f"zookeeper registry: empty entry in host list {raw!r}")
        match = _HOST_RE.match(entry)
        if match is None:
            raise ConfigurationError(f"zookeeper registry: bad host {entry!r} in host list {raw!r} "
                                     "(expected host or host:port)")
        port = int(match.group(2)) if match.group(2) else DEFAULT_PORT
        if not 0 < port <= 65535:
            raise ConfigurationError(f"zookeeper registry: port {port} of host {entry!r} is not in 1..65535")
        hosts.append(f"{match.group(1)}:{port}")
    return ",".join(hosts)


@dataclasses.dataclass(frozen=True)
class SubscriptionStatus:
    """What a consumer currently uses for one service, and where it came from."""

    service: str
    providers: tuple[URL, ...]
    source: str  # "zookeeper", "snapshot" or "none" (nothing known yet)
    stale: bool  # True while an empty push is held back or ZooKeeper could not be read
    held_since: float | None  # time.monotonic() when an empty push was held back


class _Watch:
    """One watched path: its listeners and the last value applied (dispatcher thread only)."""

    __slots__ = ("service", "category", "path", "listeners", "value", "decoded", "guard", "pending",
                 "source", "stale", "dirty", "queued", "closed", "recheck", "watcher")

    def __init__(self, service: str, category: str, path: str, hold: float) -> None:
        self.service = service
        self.category = category
        self.path = path
        self.listeners: list[Callable[..., None]] = []
        self.value: Any = None  # list[URL] or dict[str, str] once read
        self.decoded: dict[str, URL | None] = {}
        self.guard = EmptyPushGuard(hold)
        self.pending: Any = None  # the newest list while an empty push is held back
        self.source = "none"
        self.stale = False
        self.dirty = False  # the last read failed: the repair thread reads again
        self.queued = False
        self.closed = False
        self.recheck = False
        self.watcher: Callable[[Any], None] = lambda event: None


class ZookeeperRegistry(Registry):
    """Registry in a ZooKeeper ensemble, through kazoo."""

    scheme = "zookeeper"

    # -- address -----------------------------------------------------------------
    @classmethod
    def parse_address(cls, address: str) -> URL:
        """``zookeeper://[user:pw@]h1[:port],h2[:port][/root][?params]`` -> URL (hosts in ``hosts=``)."""
        if not isinstance(address, str) or not address.startswith("zookeeper://"):
            raise ConfigurationError(f"not a zookeeper registry address: {address!r}")
        rest = address[len("zookeeper://"):]
        rest, _, query = rest.partition("?")
        netloc, _, root = rest.partition("/")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if "hosts" in params:  # internal: set from the address only, never by a query that could redirect it
            raise ConfigurationError("zookeeper registry: give hosts in the address (zookeeper://h1:2181,h2:2181/...), "
                                     "not as a hosts= parameter")
        userinfo, at, hostlist = netloc.rpartition("@")
        if at:
            if "auth" in params:
                raise ConfigurationError("zookeeper registry: credentials given twice (user:pw@ and auth=)")
            user, password = _credentials("the user:password@ part", unquote(userinfo))
            params["auth"] = f"{user}:{password}"
        hosts = _check_hosts(hostlist)
        if "," in hosts:
            params["hosts"] = hosts
        first = hosts.split(",")[0]
        host, _, port = first.rpartition(":")
        return URL("zookeeper", host.strip("[]"), int(port), root, params)

    # -- construction ------------------------------------------------------------
    def __init__(self, url: URL) -> None:
        super().__init__(url)
        unknown = sorted(set(url.params) - set(PARAMETERS))
        if unknown:
            raise ConfigurationError(
                f"zookeeper registry: unknown parameter {', '.join(unknown)}; "
                f"known: {', '.join(sorted(p for p in PARAMETERS if p != 'hosts'))}")
        p = {name: url.params.get(name, default) for name, (default, _) in PARAMETERS.items()}
        self.hosts = _check_hosts(p["hosts"] or (f"{url.host}:{url.port or DEFAULT_PORT}" if url.host else ""))
        root = url.path or DEFAULT_ROOT
        parts = root.split("/")
        for part in parts:
            if not _PART_RE.match(part) or part in (".", "..", "zookeeper"):
                raise ConfigurationError(f"zookeeper registry: bad root path {root!r} (part {part!r})")
        self.root = "/" + root
        self.session_timeout = _seconds("session_timeout", p["session_timeout"])
        self.connect_timeout = _seconds("connect_timeout", p["connect_timeout"])
        self.operation_timeout = _seconds("operation_timeout", p["operation_timeout"])
        self.empty_protection = _seconds("empty_protection", p["empty_protection"], allow_zero=True)
        self.retry_max_delay = _seconds("retry_max_delay", p["retry_max_delay"])
        self._propagation_delay = _seconds("propagation_delay", p["propagation_delay"], allow_zero=True)
        self.user = ""
        auth_data = []
        self._acl_dir: list[Any] | None = None
        self._acl_consumers: list[Any] | None = None
        if p["auth"]:
            self.user, password = _credentials("auth", p["auth"])
            auth_data.append(("digest", f"{self.user}:{password}"))
            self._credential = make_digest_acl_credential(self.user, password)
            owner = make_digest_acl(self.user, password, all=True)
            if p["reader"] == "anyone":
                read = make_acl("world", "anyone", read=True)
                use = make_acl("world", "anyone", read=True, create=True, delete=True)
            else:
                ruser, rpassword = _credentials("reader", p["reader"])
                read = make_digest_acl(ruser, rpassword, read=True)
                use = make_digest_acl(ruser, rpassword, read=True, create=True, delete=True)
            self._acl_dir = [owner, read]
            self._acl_consumers = [owner, use]
        elif p["reader"] != "anyone":
            raise ConfigurationError("zookeeper registry: reader= needs auth= (or user:password@)")
        self.display = f"zookeeper://{self.user + '@' if self.user else ''}{self.hosts}{self.root}"
        snapshot_root = p["snapshot_dir"] or default_snapshot_dir()
        digest = hashlib.sha1(f"{self.hosts}{self.root}".encode()).hexdigest()[:12]
        self.snapshots = SnapshotStore(f"{snapshot_root}/{root.replace('/', '_')}-{digest}")

        self._mine: dict[str, URL] = {}  # node path -> URL registered by this process
        self._unwanted: set[str] = set()  # own nodes whose deletion failed
        self._node_lock = threading.RLock()
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._warned: set[str] = set()
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timer_lock = threading.Lock()
        self._closing = threading.Event()
        self._repair_wanted = threading.Event()
        self._wake = threading.Event()
        self._disconnected_since: float | None = None

        # background retries of registrations and subscriptions: forever (until close), backing off
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((_NotConnected, *_TRANSIENT)),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=self.retry_max_delay, jitter=0.1),
            stop=lambda state: self._closing.is_set(),
            sleep=self._repair_sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        self.client = KazooClient(
            hosts=self.hosts, timeout=self.session_timeout, auth_data=auth_data or None,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_jitter=0.2,
                                        max_delay=min(1.0, self.retry_max_delay)),
            logger=logging.getLogger("govrpc.registry.zookeeper.kazoo"))
        self.client.add_listener(self._on_state)
        started = self.client.start_async()
        started.wait(self.connect_timeout)
        if not self.client.connected:
            saved = self.snapshots.services()
            if not saved:
                self._stop_client()
                raise RegistryUnreachableError(
                    f"zookeeper registry {self.display}: no server answered within {self.connect_timeout:g} s "
                    f"(connect_timeout) and there is no provider snapshot in {self.snapshots.directory}")
            log.warning("zookeeper registry %s: unreachable after %g s; starting from the provider snapshots in %s "
                        "(%d service(s)) and reconnecting in the background",
                        self.display, self.connect_timeout, self.snapshots.directory, len(saved))
        else:
            try:
                self._prepare_root()
            except Exception:
                self._stop_client()
                raise
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="govrpc-zk-dispatch", daemon=True)
        self._repairer = threading.Thread(target=self._repair_loop, name="govrpc-zk-repair", daemon=True)
        self._dispatcher.start()
        self._repairer.start()

    def _stop_client(self) -> None:
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a half-started client must not mask the real error
            log.debug("zookeeper registry %s: error while closing the client", self.display, exc_info=True)

    def _prepare_root(self) -> None:
        """With credentials: create the root protected, and refuse a wrong password with a clear error."""
        if not self.user:
            return
        try:
            self._ensure_dirs(self.root)
            acls, _ = self._wait(self.client.get_acls_async(self.root))
        except NoAuthError:
            return  # cannot see the ACL: writes will say what is wrong
        except _TRANSIENT as exc:
            raise RegistryUnreachableError(f"zookeeper registry {self.display}: cannot read {self.root}: "
                                           f"{type(exc).__name__}") from exc
        owners = {acl.id.id for acl in acls
                  if acl.id.scheme == "digest" and acl.id.id.split(":", 1)[0] == self.user and acl.perms & 2}
        if owners and self._credential not in owners:
            raise RegistryError(
                f"zookeeper registry {self.display}: wrong password for user {self.user!r}: {self.root} may be "
                f"changed by digest user {self.user!r} with another password")

    # -- small helpers -------------------------------------------------------------
    @property
    def propagation_delay(self) -> float:
        return self._propagation_delay

    def _wait(self, result: Any, deadline: float | None = None) -> Any:
        timeout = self.operation_timeout if deadline is None else max(0.0, deadline - time.monotonic())
        return result.get(timeout=timeout)

    def _path(self, service: str, category: str | None = None) -> str:
        if not service or "/" in service or service in (".", "..") or any(c in service for c in "?# \t\n"):
            raise ConfigurationError(f"invalid service name {service!r}")
        return f"{self.root}/{service}" + (f"/{category}" if category else "")

    def _acl_for(self, path: str) -> list[Any] | None:
        if self._acl_dir is None:
            return None
        return self._acl_consumers if path.endswith("/" + CONSUMERS) else self._acl_dir

    @contextlib.contextmanager
    def _translate(self, what: str, path: str) -> Iterator[None]:
        """kazoo errors -> govrpc errors naming the operation and the path (public API boundary)."""
        try:
            yield
        except NoAuthError as exc:
            raise RegistryError(self._no_auth(what, path)) from exc
        except (*_TRANSIENT, _NotConnected) as exc:
            raise RegistryUnreachableError(
                f"zookeeper registry {self.display}: cannot {what} {path}: {type(exc).__name__} "
                f"(no answer within {self.operation_timeout:g} s)") from exc
        except AuthFailedError as exc:
            raise RegistryError(f"zookeeper registry {self.display}: authentication failed") from exc
        except ConnectionClosedError as exc:
            raise RegistryError(f"zookeeper registry {self.display} is closed") from exc
        except KazooException as exc:
            raise RegistryError(f"zookeeper registry {self.display}: cannot {what} {path}: "
                                f"{type(exc).__name__}: {exc}") from exc

    def _no_auth(self, what: str, path: str) -> str:
        who = f"user {self.user!r}" if self.user else "an anonymous client (no user:password@ in the URL)"
        return (f"zookeeper registry {self.display}: not allowed to {what} {path}: {who} lacks the permission "
                f"(wrong credentials?)")

    def _ensure_dirs(self, path: str) -> None:
        """Create ``path`` and its parents (persistent), each with the ACL of its level."""
        prefix = ""
        for part in path.strip("/").split("/"):
            prefix += "/" + part
            try:
                self._wait(self.client.create_async(prefix, b"", acl=self._acl_for(prefix)))
            except NodeExistsError:
                continue
            except NoAuthError:
                # ZooKeeper checks the parent's CREATE permission before existence
                if self._wait(self.client.exists_async(prefix)) is not None:
                    continue
                raise
            if self._acl_dir is not None and prefix.count("/") == self.root.count("/") + 1:
                # a protected service node: open its consumers/ now, anonymous consumers cannot
                try:
                    self._wait(self.client.create_async(f"{prefix}/{CONSUMERS}", b"", acl=self._acl_consumers))
                except NodeExistsError:
                    pass

    def _create(self, path: str, data: bytes, ephemeral: bool) -> None:
        """Create a leaf node (an entry or a rule), creating missing parents."""
        if self.client.state != KazooState.CONNECTED:
            raise _NotConnected(f"not connected to {self.hosts}")
        try:
            self._wait(self.client.create_async(path, data, acl=self._acl_dir, ephemeral=ephemeral))
        except NoNodeError:
            self._ensure_dirs(path.rsplit("/", 1)[0])
            self._wait(self.client.create_async(path, data, acl=self._acl_dir, ephemeral=ephemeral))

    # -- timers and the dispatcher ----------------------------------------------------
    def _submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def _later(self, delay: float, task: Callable[[], None]) -> None:
        with self._timer_lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), task))
        self._tasks.put(_noop)

    def _in_dispatcher(self, task: Callable[[], None], what: str) -> None:
        """Run ``task`` on the dispatcher thread and wait for it (inline when already there)."""
        if threading.current_thread() is getattr(self, "_dispatcher", None):
            task()
            return
        if self._closing.is_set():
            raise RegistryError(f"zookeeper registry {self.display} is closed")
        done = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                task()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                failure.append(exc)
            finally:
                done.set()

        self._submit(run)
        if not done.wait(self.operation_timeout * 3 + 5):
            # the caller would otherwise go on as if it had happened (no first notification)
            raise RegistryError(f"zookeeper registry {self.display}: {what} is still queued behind a slow "
                                f"listener after {self.operation_timeout * 3 + 5:.0f} s")
        if failure:
            raise failure[0]

    def _dispatch_loop(self) -> None:
        while True:
            timeout = None
            with self._timer_lock:
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                task = self._tasks.get(timeout=timeout)
            except queue.Empty:
                task = _noop
            if task is None:
                return
            self._run_task(task)
            while True:
                with self._timer_lock:
                    if not self._timers or self._timers[0][0] > time.monotonic():
                        break
                    _, _, due = heapq.heappop(self._timers)
                self._run_task(due)

    def _run_task(self, task: Callable[[], None]) -> None:
        try:
            task()
        except Exception:  # noqa: BLE001 - the dispatcher must outlive any one task
            log.exception("zookeeper registry %s: dispatcher task failed", self.display)

    # -- connection states and repair -------------------------------------------------
    def _on_state(self, state: str) -> None:
        """kazoo's connection thread: never block here."""
        if state in (KazooState.SUSPENDED, KazooState.LOST) and self._disconnected_since is None:
            self._disconnected_since = time.monotonic()
            self._repair_wanted.set()
        if state == KazooState.SUSPENDED:
            log.warning("zookeeper registry %s: connection suspended; keeping the last known providers",
                        self.display)
        elif state == KazooState.LOST:
            if not self._closing.is_set():
                log.warning("zookeeper registry %s: session lost; will register again and re-subscribe "
                            "once reconnected", self.display)
        elif state == KazooState.CONNECTED:
            self._disconnected_since = None
            log.info("zookeeper registry %s: connected (session 0x%x)", self.display, self.client.client_id[0]
                     if self.client.client_id else 0)
            # kazoo forgets every watch when a connection drops: read everything again, check own nodes
            for watch in list(self._watches.values()):
                watch.dirty = True
            self._repair_wanted.set()
            self._wake.set()

    def _repair_loop(self) -> None:
        while True:
            self._repair_wanted.wait()
            if self._closing.is_set():
                return
            self._repair_wanted.clear()
            try:
                self._retrying(self._repair_once)
            except Exception as exc:  # noqa: BLE001 - the repair thread must outlive any one failure
                if not self._closing.is_set():
                    log.warning("zookeeper registry %s: repair failed (%s); trying again in %.0f s",
                                self.display, exc, self.retry_max_delay)
                    # a pass that stopped half-way must run again, not wait for the next reconnect
                    if not self._closing.wait(self.retry_max_delay):
                        self._repair_wanted.set()

    def _repair_sleep(self, seconds: float) -> None:
        # a reconnect (or close) cuts the pause short
        if self._wake.wait(seconds):
            self._wake.clear()

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if state.attempt_number in (1, 5) or state.attempt_number % 20 == 0:
            log.info("zookeeper registry %s: will retry (attempt %d): %s", self.display, state.attempt_number,
                     type(exc).__name__ if exc else "")

    def _repair_once(self) -> None:
        if self._closing.is_set():
            return
        if self.client.state != KazooState.CONNECTED:
            self._forget_zxid()
            raise _NotConnected("not connected")
        session = self.client.client_id[0] if self.client.client_id else None
        with self._node_lock:
            unwanted = list(self._unwanted)
            mine = list(self._mine.items())
        for path in unwanted:
            self._delete_own(path, session)
        for path, url in mine:
            self._ensure_own(path, url, session)
        dirty = [w for w in list(self._watches.values()) if w.dirty and not w.closed]
        if dirty:
            self._in_dispatcher(functools.partial(self._fetch, dirty), "re-reading watched paths")
            still = [w.path for w in dirty if w.dirty and not w.closed]
            if still:
                raise _NotConnected(f"cannot read {', '.join(still[:3])}")

    def _forget_zxid(self) -> None:
        """After a disconnection longer than the session timeout, accept a server that is behind us.

        ZooKeeper refuses a client that has seen a newer transaction than the
        server has (a server rebuilt empty, a restored backup), and kazoo would
        retry that server forever. By then our session is gone anyway (or the
        server will tell us so), and kazoo forgets the zxid itself when it learns
        that a session expired: do the same a little earlier.
        """
        since = self._disconnected_since
        if since is not None and time.monotonic() - since > self.session_timeout and self.client.last_zxid:
            log.warning("zookeeper registry %s: disconnected for over %g s; reconnecting without the last "
                        "seen transaction id 0x%x (the ensemble may have been rebuilt)",
                        self.display, self.session_timeout, self.client.last_zxid)
            self.client.last_zxid = 0

    def _ensure_own(self, path: str, url: URL, session: int | None) -> None:
        """Make sure this process's node exists and belongs to the current session."""
        with self._node_lock:
            if self._mine.get(path) != url:
                return
            stat = self._wait(self.client.exists_async(path))
            if stat is not None and stat.ephemeralOwner == session:
                return
            if stat is not None:  # left by an older session of ours: replace it
                try:
                    self._wait(self.client.delete_async(path))
                except NoNodeError:
                    pass
            try:
                self._create(path, str(url).encode(), ephemeral=True)
                log.warning("zookeeper registry %s: registered %s again", self.display, url)
            except NodeExistsError:
                pass
            except NoAuthError:
                log.error("%s", self._no_auth("register", path))
                self._mine.pop(path, None)

    def _delete_own(self, path: str, session: int | None) -> None:
        with self._node_lock:
            if path in self._mine:
                self._unwanted.discard(path)
                return
            stat = self._wait(self.client.exists_async(path))
            if stat is not None and stat.ephemeralOwner == session:
                try:
                    self._wait(self.client.delete_async(path))
                except NoNodeError:
                    pass
            self._unwanted.discard(path)

    # -- providers and consumers --------------------------------------------------------
    def register(self, url: URL) -> None:
        category = category_of(url)
        if category == PROVIDERS and url.scheme not in PROVIDER_SCHEMES:
            raise ConfigurationError(f"cannot register {url}: scheme {url.scheme!r} is neither a provider scheme "
                                     f"({', '.join(sorted(PROVIDER_SCHEMES))}) nor {CONSUMER!r}")
        path = f"{self._path(url.path, category)}/{url.encoded()}"
        with self._node_lock:
            self._mine[path] = url
            self._unwanted.discard(path)
            try:
                self._create(path, str(url).encode(), ephemeral=True)
            except NodeExistsError:
                self._repair_wanted.set()  # checks it is ours
            except NoAuthError as exc:
                self._mine.pop(path, None)
                if category == CONSUMERS:  # consumer entries only inform operators
                    log.warning("%s", self._no_auth("register consumer", path))
                    return
                raise RegistryError(self._no_auth("register", path)) from exc
            except (*_TRANSIENT, _NotConnected) as exc:
                log.warning("zookeeper registry %s: cannot register %s now (%s); retrying in the background",
                            self.display, url, type(exc).__name__)
                self._repair_wanted.set()
            except ConnectionClosedError as exc:
                self._mine.pop(path, None)
                raise RegistryError(f"zookeeper registry {self.display} is closed") from exc

    def unregister(self, url: URL) -> None:
        path = f"{self._path(url.path, category_of(url))}/{url.encoded()}"
        with self._node_lock:
            if self._mine.pop(path, None) is None:
                return
            try:
                if self.client.state != KazooState.CONNECTED:
                    raise _NotConnected(f"not connected to {self.hosts}")
                self._wait(self.client.delete_async(path))
            except NoNodeError:
                pass
            except NoAuthError:
                log.warning("%s", self._no_auth("unregister", path))
            except (*_TRANSIENT, _NotConnected, ConnectionClosedError) as exc:
                if not self._closing.is_set():
                    log.warning("zookeeper registry %s: cannot unregister %s now (%s); retrying in the background",
                                self.display, url, type(exc).__name__)
                    self._unwanted.add(path)
                    self._repair_wanted.set()

    def subscribe(self, service: str, listener: NotifyListener) -> None:
        self._add_listener(service, PROVIDERS, listener)

    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        self._remove_listener(service, PROVIDERS, listener)

    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        if category not in (PROVIDERS, CONSUMERS):
            raise ConfigurationError(f"lookup category must be {PROVIDERS} or {CONSUMERS}, not {category!r}")
        path = self._path(service, category)
        with self._translate("list", path):
            try:
                names = self._wait(self.client.get_children_async(path))
            except NoNodeError:
                return []
        return [u for n in sorted(names) if (u := self._parse_node(service, category, path, n)) is not None]

    def services(self) -> list[str]:
        with self._translate("list", self.root):
            try:
                names = self._wait(self.client.get_children_async(self.root))
            except NoNodeError:
                return []
        return sorted(names)

    def subscription_status(self, service: str) -> SubscriptionStatus:
        """What this process uses now for ``service`` (``source="none"`` if not subscribed)."""
        watch = self._watches.get((service, PROVIDERS))
        if watch is None or watch.value is None:
            return SubscriptionStatus(service, (), "none", False, None)
        return SubscriptionStatus(service, tuple(watch.value), watch.source, watch.stale or watch.dirty,
                                  watch.guard.held_since)

    def _parse_node(self, service: str, category: str, parent: str, name: str) -> URL | None:
        """The URL a node name stands for, or None (with one warning per node) if it is garbage."""
        try:
            url = URL.decode(name)
            problem = ""
            if category == PROVIDERS and url.scheme not in PROVIDER_SCHEMES:
                problem = f"scheme {url.scheme!r} is not a provider scheme"
            elif category == CONSUMERS and url.scheme != CONSUMER:
                problem = f"scheme {url.scheme!r} is not {CONSUMER!r}"
            elif url.path != service:
                problem = f"it names service {url.path!r}"
            elif category == PROVIDERS and (not url.host or not 0 < url.port <= 65535):
                problem = f"bad address {url.host!r}:{url.port}"
        except (ConfigurationError, ValueError, UnicodeError) as exc:
            problem = str(exc)
        if not problem:
            return url
        path = f"{parent}/{name}"
        if path not in self._warned:
            self._warned.add(path)
            log.warning("zookeeper registry %s: skipping node %s: %s", self.display, path[:300], problem)
        return None

    # -- rules ----------------------------------------------------------------------------
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        path = f"{self._path(service, category)}/{name}"
        data = str(text).encode("utf-8")
        with self._translate("write rule", path):
            try:
                self._wait(self.client.set_async(path, data))
            except NoNodeError:
                try:
                    self._create(path, data, ephemeral=False)
                except NodeExistsError:
                    self._wait(self.client.set_async(path, data))

    def delete_rule(self, service: str, category: str, name: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        path = f"{self._path(service, category)}/{name}"
        with self._translate("delete rule", path):
            try:
                self._wait(self.client.delete_async(path))
            except NoNodeError:
                pass

    def rules(self, service: str, category: str) -> dict[str, str]:
        check_rule_category(category)
        path = self._path(service, category)
        with self._translate("read rules", path):
            return self._read_rules(path, None, time.monotonic() + self.operation_timeout)

    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        check_rule_category(category)
        self._add_listener(service, category, listener)

    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._remove_listener(service, category, listener)

    def _read_rules(self, path: str, watcher: Callable[[Any], None] | None, deadline: float) -> dict[str, str]:
        try:
            names = self._wait(self.client.get_children_async(path, watch=watcher), deadline)
        except NoNodeError:
            if watcher is not None and self._wait(self.client.exists_async(path, watch=watcher), deadline):
                return self._read_rules(path, watcher, deadline)
            return {}
        pending = [(n, self.client.get_async(f"{path}/{n}", watch=watcher)) for n in sorted(names)]
        rules = {}
        for name, result in pending:
            try:
                data, _ = self._wait(result, deadline)
            except NoNodeError:
                continue
            try:
                rules[name] = (data or b"").decode("utf-8")
            except UnicodeDecodeError:
                if f"{path}/{name}" not in self._warned:
                    self._warned.add(f"{path}/{name}")
                    log.warning("zookeeper registry %s: skipping rule %s/%s: not UTF-8 text",
                                self.display, path, name)
        return rules

    # -- watching (dispatcher thread) ---------------------------------------------------------
    def _add_listener(self, service: str, category: str, listener: Callable[..., None]) -> None:
        path = self._path(service, category)

        def add() -> None:
            key = (service, category)
            watch = self._watches.get(key)
            if watch is None or watch.closed:
                watch = _Watch(service, category, path, self.empty_protection if category == PROVIDERS else 0)
                watch.watcher = functools.partial(self._on_event, watch)
                self._watches[key] = watch
                watch.listeners.append(listener)
                self._fetch([watch])
            else:
                watch.listeners.append(listener)
                safe_call(listener, _copy(watch.value))

        self._in_dispatcher(add, f"subscribing to {path}")

    def _remove_listener(self, service: str, category: str, listener: Callable[..., None]) -> None:
        def remove() -> None:
            watch = self._watches.get((service, category))
            if watch is None or listener not in watch.listeners:
                return
            watch.listeners.remove(listener)
            if not watch.listeners:
                watch.closed = True  # its last kazoo watch fires once more, into nothing
                del self._watches[(service, category)]

        if not self._closing.is_set():
            self._in_dispatcher(remove, f"unsubscribing from {service}")

    def _on_event(self, watch: _Watch, event: Any) -> None:
        """kazoo's event thread: queue a re-read, never block."""
        if not watch.queued and not watch.closed:
            watch.queued = True
            self._submit(functools.partial(self._fetch, [watch]))

    def _fetch(self, watches: Sequence[_Watch]) -> None:
        """Read the watched paths (pipelined) and apply what changed."""
        deadline = time.monotonic() + self.operation_timeout
        if self.client.state != KazooState.CONNECTED:
            for watch in watches:
                watch.queued = False
                if not watch.closed:
                    self._fetch_failed(watch, _NotConnected("not connected"))
            return
        url_reads = []
        for watch in watches:
            watch.queued = False
            if watch.closed:
                continue
            if watch.category in (PROVIDERS, CONSUMERS):
                url_reads.append((watch, self.client.get_children_async(watch.path, watch=watch.watcher)))
                continue
            try:
                value: Any = self._read_rules(watch.path, watch.watcher, deadline)
            except (*_TRANSIENT, ConnectionClosedError) as exc:
                self._fetch_failed(watch, exc)
                continue
            except NoAuthError:
                self._not_readable(watch)
                continue
            watch.dirty = False
            self._offer(watch, value, "zookeeper")
        for watch, result in url_reads:
            try:
                try:
                    names = self._wait(result, deadline)
                except NoNodeError:
                    names = []
                    if self._wait(self.client.exists_async(watch.path, watch=watch.watcher), deadline):
                        names = self._wait(self.client.get_children_async(watch.path, watch=watch.watcher),
                                           deadline)
            except (*_TRANSIENT, ConnectionClosedError, NoNodeError) as exc:
                self._fetch_failed(watch, exc)
                continue
            except NoAuthError:
                self._not_readable(watch)
                continue
            watch.dirty = False
            self._offer(watch, self._decode(watch, names), "zookeeper")

    def _decode(self, watch: _Watch, names: list[str]) -> list[URL]:
        known = watch.decoded
        decoded: dict[str, URL | None] = {}
        for name in names:
            url = known[name] if name in known else self._parse_node(watch.service, watch.category, watch.path, name)
            decoded[name] = url
        watch.decoded = decoded
        return [u for n in sorted(decoded) if (u := decoded[n]) is not None]

    def _not_readable(self, watch: _Watch) -> None:
        watch.dirty = False
        if watch.path not in self._warned:
            self._warned.add(watch.path)
            log.error("%s", self._no_auth("read", watch.path))
        if watch.value is None:
            self._offer(watch, [] if watch.category == PROVIDERS else {}, "none")

    def _fetch_failed(self, watch: _Watch, exc: BaseException) -> None:
        if self._closing.is_set():
            return
        watch.dirty = True
        self._repair_wanted.set()
        if watch.value is not None:
            log.debug("zookeeper registry %s: cannot read %s (%s); keeping the last list",
                      self.display, watch.path, type(exc).__name__)
            return
        if watch.category == PROVIDERS:
            snapshot = self.snapshots.load(watch.service)
            if snapshot is not None:
                log.warning("zookeeper registry %s: cannot read %s (%s); using the provider snapshot of %s "
                            "saved %.0f s ago (%d provider(s))", self.display, watch.path, type(exc).__name__,
                            watch.service, snapshot.age, len(snapshot.urls))
                self._apply(watch, list(snapshot.urls), "snapshot")
                return
            log.warning("zookeeper registry %s: cannot read %s (%s) and there is no snapshot of %s; "
                        "no providers until ZooKeeper answers", self.display, watch.path, type(exc).__name__,
                        watch.service)
            self._apply(watch, [], "none")
        else:
            self._apply(watch, {}, "none")

    def _offer(self, watch: _Watch, value: Any, source: str) -> None:
        if watch.category != PROVIDERS:
            self._apply(watch, value, source)
            return
        watch.pending = value
        decision = watch.guard.review(watch.value, value, time.monotonic())
        if decision.apply:
            if decision.released:
                log.warning("zookeeper registry %s: %s still has no provider after %g s; applying the empty list",
                            self.display, watch.service, self.empty_protection)
            self._apply(watch, value, source)
            return
        if not watch.stale:
            watch.stale = True
            log.warning("zookeeper registry %s: a push removed every provider of %s at once; keeping the last %d "
                        "(stale) for up to %g s (empty_protection)", self.display, watch.service,
                        len(watch.value or ()), self.empty_protection)
        if not watch.recheck:
            watch.recheck = True
            self._later(decision.recheck_in, functools.partial(self._recheck, watch))

    def _recheck(self, watch: _Watch) -> None:
        watch.recheck = False
        if watch.closed or not watch.guard.holding:
            return
        self._offer(watch, watch.pending, "zookeeper")

    def _apply(self, watch: _Watch, value: Any, source: str) -> None:
        changed = value != watch.value
        came_back = watch.source != source or watch.stale
        watch.value = value
        watch.source = source
        watch.stale = source != "zookeeper"
        if watch.category == PROVIDERS and source == "zookeeper" and (changed or came_back):
            self.snapshots.save(watch.service, value)
        if not changed:
            return
        for listener in list(watch.listeners):
            safe_call(listener, _copy(value))

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop watching and close the session: ZooKeeper removes this process's ephemeral nodes."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        self._repair_wanted.set()
        self._tasks.put(None)
        for thread in (self._dispatcher, self._repairer):
            if thread is not threading.current_thread():
                thread.join(timeout=self.operation_timeout + 1)
        with self._node_lock:
            self._mine.clear()
        self._stop_client()


def _noop() -> None:
    pass


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (list, dict)) else value

