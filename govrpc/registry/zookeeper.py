"""``zookeeper://[user:password@]h1:2181,h2:2181/root?session_timeout=10``: the distributed registry.

Layout (DESIGN.md section 4; root ``/govrpc`` unless the URL names one)::

    /{root}/{service}/providers/{encoded provider URL}   ephemeral, one per live provider
    /{root}/{service}/consumers/{encoded consumer URL}   ephemeral
    /{root}/{service}/configurators/{name}               persistent text
    /{root}/{service}/routers/{name}                     persistent text

This module is the backend (read, watch, put, delete through kazoo) of
``base.RegistryCore``, which holds the listeners, the ordered delivery, the
empty-push guard and the snapshots. Its parts: ``zkaddress`` (address, options,
ACLs), ``dispatch`` (the ordered dispatcher thread), ``zkrepair`` (the repair
thread). kazoo's own threads only enqueue: a watch event queues a re-read, a
connection state change bumps the connection generation and wakes the repair
thread, which re-creates this process's ephemeral nodes and re-reads every
watch not read since the newest connection (kazoo drops every watch when a
connection is lost). Registrations that fail for want of a connection are kept
and retried there, never dropped: a provider may start during an outage.

Outage safety. While the connection is suspended the last lists stay. Every
provider list is saved on disk (``snapshot.SnapshotStore``); a consumer that
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
import logging
import time
from typing import Any, Iterator, Sequence
from urllib.parse import unquote

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

from govrpc.exceptions import RegistryError, RegistryUnreachableError
from govrpc.registry.base import (
    CONSUMERS,
    PROVIDERS,
    AccessDenied,
    Raw,
    RegistryCore,
    SubscriptionStatus,
    Watch,
)
from govrpc.registry.dispatch import ThreadDispatcher
from govrpc.registry.snapshot import SnapshotStore, default_snapshot_dir
from govrpc.registry.zkaddress import PARAMETERS, ZookeeperSettings, parse_address
from govrpc.registry.zkrepair import NotConnected, RepairLoop, forget_zxid
from govrpc.url import URL

__all__ = ["PARAMETERS", "SubscriptionStatus", "ZookeeperRegistry"]

log = logging.getLogger("govrpc.registry.zookeeper")

_TRANSIENT = (ConnectionLoss, SessionExpiredError, OperationTimeoutError, SessionMovedError, KazooTimeoutError)


class ZookeeperRegistry(RegistryCore):
    """Registry in a ZooKeeper ensemble, through kazoo."""

    scheme = "zookeeper"
    notify_own_writes = False  # ZooKeeper's watches tell us, in order with everyone else's changes

    @classmethod
    def parse_address(cls, address: str) -> URL:
        """``zookeeper://[user:pw@]h1[:port],h2[:port][/root][?params]`` -> URL (hosts in ``hosts=``)."""
        return parse_address(address)

    def __init__(self, url: URL) -> None:
        settings = ZookeeperSettings.from_url(url)
        self.settings = settings
        self.hosts = settings.hosts
        self.root = settings.root
        self.user = settings.user
        self.session_timeout = settings.session_timeout
        self.connect_timeout = settings.connect_timeout
        self.operation_timeout = settings.operation_timeout
        self.retry_max_delay = settings.retry_max_delay
        display = f"zookeeper registry {settings.display}"
        snapshots = SnapshotStore(f"{settings.snapshot_dir or default_snapshot_dir()}/{settings.snapshot_name}")
        dispatcher = ThreadDispatcher(display, wait_limit=settings.operation_timeout * 3 + 5,
                                      thread_name="govrpc-zk-dispatch")
        super().__init__(url, display=display, dispatcher=dispatcher, empty_protection=settings.empty_protection,
                         snapshots=snapshots)
        self.snapshots: SnapshotStore = snapshots
        self._disconnected_since: float | None = None
        self._ever_connected = False
        self._root_prepared = not self.user
        self._repair = RepairLoop(settings.display, self._repair_once, (*_TRANSIENT, RegistryUnreachableError),
                                  settings.retry_max_delay, self._closing)
        self.client = KazooClient(
            hosts=self.hosts, timeout=self.session_timeout, auth_data=list(settings.auth_data) or None,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_jitter=0.2,
                                        max_delay=min(1.0, self.retry_max_delay)),
            logger=logging.getLogger("govrpc.registry.zookeeper.kazoo"), **settings.tls)
        self.client.add_listener(self._on_state)
        started = self.client.start_async()
        started.wait(self.connect_timeout)
        if self.client.connected:
            self._ever_connected = True
            try:
                self._prepare_root()
            except Exception:
                self._stop_client()
                dispatcher.close()
                raise
        else:
            saved = self.snapshots.services()
            if saved:
                log.warning("%s: unreachable after %g s; starting from the provider snapshots in %s "
                            "(%d service(s)) and reconnecting in the background",
                            self.display, self.connect_timeout, self.snapshots.directory, len(saved))
            else:
                log.warning("%s: unreachable after %g s; reconnecting in the background (registrations wait "
                            "for it)", self.display, self.connect_timeout)
        self._repair.start()

    def check_consumer_ready(self) -> None:
        if self._ever_connected or self.client.connected or self.snapshots.services():
            return
        raise RegistryUnreachableError(
            f"{self.display}: no server answered within {self.connect_timeout:g} s "
            f"(connect_timeout) and there is no provider snapshot in {self.snapshots.directory}")

    @property
    def propagation_delay(self) -> float:
        return self.settings.propagation_delay

    def _stop_client(self) -> None:
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a half-started client must not mask the real error
            log.debug("%s: error while closing the client", self.display, exc_info=True)

    def _prepare_root(self) -> None:
        """With credentials: create the root protected, and refuse a wrong password with a clear error."""
        if not self.user:
            return
        try:
            self._ensure_dirs(self.root)
            acls, _ = self._wait(self.client.get_acls_async(self.root))
        except NoAuthError:
            self._root_prepared = True
            return  # cannot see the ACL: writes will say what is wrong
        except _TRANSIENT as exc:
            raise RegistryUnreachableError(f"{self.display}: cannot read {self.root}: "
                                           f"{type(exc).__name__}") from exc
        owners = {acl.id.id for acl in acls
                  if acl.id.scheme == "digest" and acl.id.id.split(":", 1)[0] == self.user and acl.perms & 2}
        if owners and self.settings.credential not in owners:
            raise RegistryError(
                f"{self.display}: wrong password for user {self.user!r}: {self.root} may be "
                f"changed by digest user {self.user!r} with another password")
        self._root_prepared = True

    # -- kazoo requests ------------------------------------------------------------------
    def _wait(self, result: Any, deadline: float | None = None) -> Any:
        timeout = self.operation_timeout if deadline is None else max(0.0, deadline - time.monotonic())
        return result.get(timeout=timeout)

    def _node_path(self, service: str, category: str, name: str = "") -> str:
        return f"{self.root}/{service}/{category}" + (f"/{name}" if name else "")

    @contextlib.contextmanager
    def _translate(self, what: str, path: str) -> Iterator[None]:
        """kazoo errors -> govrpc errors naming the operation and the path (the one boundary)."""
        try:
            yield
        except NoAuthError as exc:
            raise AccessDenied(self._no_auth(what, path)) from exc
        except (*_TRANSIENT, NotConnected) as exc:
            raise RegistryUnreachableError(
                f"{self.display}: cannot {what} {path}: {type(exc).__name__} "
                f"(no answer within {self.operation_timeout:g} s)") from exc
        except AuthFailedError as exc:
            raise RegistryError(f"{self.display}: authentication failed") from exc
        except ConnectionClosedError as exc:
            raise RegistryError(f"{self.display} is closed") from exc
        except KazooException as exc:
            raise RegistryError(f"{self.display}: cannot {what} {path}: {type(exc).__name__}: {exc}") from exc

    def _no_auth(self, what: str, path: str) -> str:
        who = f"user {self.user!r}" if self.user else "an anonymous client (no user:password@ in the URL)"
        return (f"{self.display}: not allowed to {what} {path}: {who} lacks the permission "
                f"(wrong credentials?)")

    def _connected(self) -> None:
        if self.client.state != KazooState.CONNECTED:
            raise NotConnected(f"not connected to {self.hosts}")

    def _ensure_dirs(self, path: str) -> None:
        """Create ``path`` and its parents (persistent), each with the ACL of its level."""
        prefix = ""
        for part in path.strip("/").split("/"):
            prefix += "/" + part
            try:
                self._wait(self.client.create_async(prefix, b"", acl=self.settings.acl_for(prefix)))
            except NodeExistsError:
                continue
            except NoAuthError:
                # ZooKeeper checks the parent's CREATE permission before existence
                if self._wait(self.client.exists_async(prefix)) is not None:
                    continue
                raise
            if self.settings.acl_dir is not None and prefix.count("/") == self.root.count("/") + 1:
                # a protected service node: open its consumers/ now, anonymous consumers cannot
                try:
                    self._wait(self.client.create_async(f"{prefix}/{CONSUMERS}", b"",
                                                        acl=self.settings.acl_consumers))
                except NodeExistsError:
                    pass

    def _create(self, path: str, data: bytes, ephemeral: bool) -> None:
        """Create a leaf node (an entry or a rule), creating missing parents."""
        self._connected()
        acl = self.settings.acl_dir
        try:
            self._wait(self.client.create_async(path, data, acl=acl, ephemeral=ephemeral))
        except NoNodeError:
            self._ensure_dirs(path.rsplit("/", 1)[0])
            self._wait(self.client.create_async(path, data, acl=acl, ephemeral=ephemeral))

    # -- the backend: read, watch, put, delete ------------------------------------------------
    def _watch(self, watch: Watch) -> None:
        watch.handle = lambda event: self._schedule_refresh(watch)  # kazoo's thread: only enqueue

    def _read(self, service: str, category: str, watch: Watch | None) -> Raw:
        path = self._node_path(service, category)
        deadline = time.monotonic() + self.operation_timeout
        watcher = watch.handle if watch is not None else None
        what = "list" if category in (PROVIDERS, CONSUMERS) else "read rules"
        with self._translate(what, path):
            if category in (PROVIDERS, CONSUMERS):
                return self._entries(path, self.client.get_children_async(path, watch=watcher), watcher, deadline)
            return self._rules(path, watcher, deadline)

    def _read_many(self, watches: Sequence[Watch]) -> list[tuple[Watch, Raw | RegistryError]]:
        """Pipelined: every children list is asked for before the first answer is awaited."""
        if self.client.state != KazooState.CONNECTED:
            return [(w, RegistryUnreachableError(f"{self.display}: not connected")) for w in watches]
        deadline = time.monotonic() + self.operation_timeout
        asked = [(w, self.client.get_children_async(self._node_path(*w.key), watch=w.handle)
                  if w.category in (PROVIDERS, CONSUMERS) else None) for w in watches]
        results: list[tuple[Watch, Raw | RegistryError]] = []
        for watch, pending in asked:
            path = self._node_path(*watch.key)
            try:
                with self._translate("list" if pending is not None else "read rules", path):
                    raw = (self._entries(path, pending, watch.handle, deadline) if pending is not None
                           else self._rules(path, watch.handle, deadline))
                results.append((watch, raw))
            except RegistryError as exc:
                results.append((watch, exc))
        return results

    def _entries(self, path: str, pending: Any, watcher: Any, deadline: float) -> Raw:
        try:
            names = self._wait(pending, deadline)
        except NoNodeError:
            names = []
            if watcher is not None and self._wait(self.client.exists_async(path, watch=watcher), deadline):
                names = self._wait(self.client.get_children_async(path, watch=watcher), deadline)
        return {name: unquote(name) for name in names}

    def _rules(self, path: str, watcher: Any, deadline: float) -> Raw:
        try:
            names = self._wait(self.client.get_children_async(path, watch=watcher), deadline)
        except NoNodeError:
            if watcher is not None and self._wait(self.client.exists_async(path, watch=watcher), deadline):
                return self._rules(path, watcher, deadline)
            return {}
        pending = [(n, self.client.get_async(f"{path}/{n}", watch=watcher)) for n in sorted(names)]
        rules: dict[str, bytes] = {}
        for name, result in pending:
            try:
                data, _ = self._wait(result, deadline)
            except NoNodeError:
                continue
            rules[name] = data or b""
        return rules

    def _put(self, service: str, category: str, name: str, data: bytes, *, ephemeral: bool) -> None:
        path = self._node_path(service, category, name)
        if ephemeral:
            with self._translate("register consumer" if category == CONSUMERS else "register", path):
                try:
                    self._create(path, data, ephemeral=True)
                except NodeExistsError:
                    self._want_repair()  # checks it is ours
            return
        with self._translate("write rule", path):
            self._connected()
            try:
                self._wait(self.client.set_async(path, data))
            except NoNodeError:
                try:
                    self._create(path, data, ephemeral=False)
                except NodeExistsError:
                    self._wait(self.client.set_async(path, data))

    def _delete(self, service: str, category: str, name: str) -> None:
        path = self._node_path(service, category, name)
        what = "unregister" if category in (PROVIDERS, CONSUMERS) else "delete rule"
        with self._translate(what, path):
            self._connected()
            try:
                self._wait(self.client.delete_async(path))
            except NoNodeError:
                pass

    def _list_services(self) -> list[str]:
        with self._translate("list", self.root):
            try:
                names = self._wait(self.client.get_children_async(self.root))
            except NoNodeError:
                return []
        return sorted(names)

    # -- connection states and repair ------------------------------------------------------
    def _want_repair(self) -> None:
        self._repair.want()

    def _on_state(self, state: str) -> None:
        """kazoo's connection thread: never block here."""
        if state in (KazooState.SUSPENDED, KazooState.LOST) and self._disconnected_since is None:
            self._disconnected_since = time.monotonic()
            self._repair.want()
        if state == KazooState.SUSPENDED:
            log.warning("%s: connection suspended; keeping the last known providers", self.display)
        elif state == KazooState.LOST:
            if not self._closing.is_set():
                log.warning("%s: session lost; will register again and re-subscribe once reconnected",
                            self.display)
        elif state == KazooState.CONNECTED:
            self._disconnected_since = None
            self._ever_connected = True
            # kazoo forgets every watch when a connection drops: every read begun before now armed
            # nothing that will fire, so each watch is dirty until a read of this generation succeeds
            self._generation += 1
            log.info("%s: connected (session 0x%x)", self.display,
                     self.client.client_id[0] if self.client.client_id else 0)
            self._repair.want()
            self._repair.wake()

    def _repair_once(self) -> None:
        if self._closing.is_set():
            return
        if self.client.state != KazooState.CONNECTED:
            forget_zxid(self.client, self._disconnected_since, self.session_timeout, self.display)
            raise NotConnected("not connected")
        if not self._root_prepared:
            try:
                self._prepare_root()
            except RegistryError as exc:
                if isinstance(exc, RegistryUnreachableError):
                    raise
                log.error("%s", exc)
                self._root_prepared = True  # writes will keep saying what is wrong
        session = self.client.client_id[0] if self.client.client_id else None
        with self._lock:
            unwanted = list(self._unwanted)
        for own in unwanted:
            self._delete_own(own, session)
        for own, url in self._own_entries():
            self._ensure_own(own, url, session)
        dirty = self._dirty_watches()
        if dirty:
            self._dispatcher.call(lambda: self._refresh(dirty), "re-reading watched paths")
            still = [self._node_path(*w.key) for w in dirty if not w.closed and self._dirty(w)]
            if still:
                raise NotConnected(f"cannot read {', '.join(still[:3])}")

    def _is_own(self, own: tuple[str, str, str], url: URL | None = None) -> bool:
        with self._lock:
            return own in self._own and (url is None or self._own[own] == url)

    def _ensure_own(self, own: tuple[str, str, str], url: URL, session: int | None) -> None:
        """Make sure this process's node exists and belongs to the current session (no lock held)."""
        path = self._node_path(*own)
        if not self._is_own(own, url):
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
            self._create(path, self._entry_data(url), ephemeral=True)
            log.warning("%s: registered %s again", self.display, url)
        except NodeExistsError:
            return
        except NoAuthError:
            log.error("%s", self._no_auth("register", path))
            with self._lock:
                self._own.pop(own, None)
            return
        if not self._is_own(own, url):  # unregistered while we re-created it: take it back
            self._delete_own(own, session)

    def _delete_own(self, own: tuple[str, str, str], session: int | None) -> None:
        path = self._node_path(*own)
        if self._is_own(own):  # registered again meanwhile
            with self._lock:
                self._unwanted.discard(own)
            return
        stat = self._wait(self.client.exists_async(path))
        if stat is not None and stat.ephemeralOwner == session:
            try:
                self._wait(self.client.delete_async(path))
            except NoNodeError:
                pass
        with self._lock:
            self._unwanted.discard(own)
        if self._is_own(own):  # registered again while we deleted it: put it back
            self._repair.want()

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop watching and close the session: ZooKeeper removes this process's ephemeral nodes."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._repair.stop(timeout=self.operation_timeout + 1)
        self._dispatcher.close(join_timeout=self.operation_timeout + 1)
        with self._lock:
            self._own.clear()
        self._stop_client()
