"""``file:///dir``: a registry in a directory, for several processes on one host.

Every node is a file under ``{dir}/{service}/{category}/``, written atomically
(temporary file, then ``os.replace``). Provider and consumer files record the
owning process (pid and start time); an entry whose process is gone is deleted
by the next reader, so a crashed provider disappears within one poll. One
poller thread per registry instance sees other processes' changes (every
``poll`` seconds, default 0.1) and tells listeners in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from typing import Any, Callable

from govrpc.exceptions import ConfigurationError, RegistryError
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
from govrpc.url import URL

__all__ = ["FileRegistry"]

log = logging.getLogger("govrpc.registry.file")

_MAX_NAME = 240


def _process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (guards against pid reuse), or "" if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) in ("", start)


def _node_name(url: URL) -> str:
    name = url.encoded()
    if len(name) > _MAX_NAME:  # file names are limited; the file's content holds the URL
        name = hashlib.sha256(name.encode()).hexdigest() + ".url"
    return name


class FileRegistry(Registry):
    """Registry kept in files under one directory."""

    scheme = "file"

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        if url.host:
            raise ConfigurationError(
                f"file registry needs an absolute path: file:///dir, not {url} (host {url.host!r})")
        if not url.path:
            raise ConfigurationError(f"file registry URL {url} names no directory")
        self.root = "/" + url.path
        try:
            self.poll = float(url.params.get("poll", "0.1"))
        except ValueError:
            raise ConfigurationError(f"file registry: poll={url.params['poll']!r} is not a number") from None
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"file registry: cannot use directory {self.root}: {exc}") from exc
        self._pid = os.getpid()
        self._start = _process_start(self._pid)
        self._lock = threading.Lock()
        self._mine: dict[str, URL] = {}  # path -> url
        self._watches: dict[tuple[str, str], tuple[list[Callable[..., None]], Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- files -------------------------------------------------------------------
    def _dir(self, service: str, category: str) -> str:
        if not service or "/" in service or service.startswith("."):
            raise ConfigurationError(f"invalid service name {service!r}")
        return os.path.join(self.root, service, category)

    def _write(self, path: str, data: str) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, path)

    def _read_nodes(self, service: str, category: str) -> list[URL]:
        directory = self._dir(service, category)
        urls = []
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
                url = URL.parse(record["url"])
                pid, start = int(record.get("pid", 0)), str(record.get("start", ""))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
                log.warning("file registry: skipping unreadable entry %s: %s", path, exc)
                continue
            if pid and not _alive(pid, start):
                log.info("file registry: removing %s, its process %d is gone", url, pid)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            if url.path != service:
                log.warning("file registry: skipping %s under service %s", url, service)
                continue
            urls.append(url)
        return urls

    def _read_rules(self, service: str, category: str) -> dict[str, str]:
        directory = self._dir(service, category)
        rules = {}
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return {}
        for name in names:
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    rules[name] = f.read()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("file registry: skipping unreadable rule %s/%s: %s", directory, name, exc)
        return rules

    def _read(self, key: tuple[str, str]) -> Any:
        service, category = key
        if category in (PROVIDERS, CONSUMERS):
            return self._read_nodes(service, category)
        return self._read_rules(service, category)

    # -- providers and consumers -------------------------------------------------
    def register(self, url: URL) -> None:
        path = os.path.join(self._dir(url.path, category_of(url)), _node_name(url))
        record = {"url": str(url), "pid": self._pid, "start": self._start}
        try:
            self._write(path, json.dumps(record))
        except OSError as exc:
            raise RegistryError(f"file registry: cannot register {url} at {path}: {exc}") from exc
        with self._lock:
            self._mine[path] = url
        self._ensure_poller()
        self._poke((url.path, category_of(url)))

    def unregister(self, url: URL) -> None:
        path = os.path.join(self._dir(url.path, category_of(url)), _node_name(url))
        with self._lock:
            self._mine.pop(path, None)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        self._poke((url.path, category_of(url)))

    def subscribe(self, service: str, listener: NotifyListener) -> None:
        self._watch((service, PROVIDERS), listener)

    def unsubscribe(self, service: str, listener: NotifyListener) -> None:
        self._unwatch((service, PROVIDERS), listener)

    def lookup(self, service: str, category: str = PROVIDERS) -> list[URL]:
        return self._read_nodes(service, category)

    def services(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.root, n)))

    # -- rules ---------------------------------------------------------------------
    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        path = os.path.join(self._dir(service, category), name)
        try:
            self._write(path, str(text))
        except OSError as exc:
            raise RegistryError(f"file registry: cannot write rule {path}: {exc}") from exc
        self._poke((service, category))

    def delete_rule(self, service: str, category: str, name: str) -> None:
        check_rule_category(category)
        check_rule_name(name)
        try:
            os.unlink(os.path.join(self._dir(service, category), name))
        except FileNotFoundError:
            return
        self._poke((service, category))

    def rules(self, service: str, category: str) -> dict[str, str]:
        check_rule_category(category)
        return self._read_rules(service, category)

    def watch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        check_rule_category(category)
        self._watch((service, category), listener)

    def unwatch_rules(self, service: str, category: str, listener: RuleListener) -> None:
        self._unwatch((service, category), listener)

    @property
    def propagation_delay(self) -> float:
        return 2 * self.poll

    # -- watching ----------------------------------------------------------------------
    def _watch(self, key: tuple[str, str], listener: Callable[..., None]) -> None:
        self._dir(*key)  # validates the service name
        with self._lock:
            listeners, _ = self._watches.setdefault(key, ([], None))
            current = self._read(key)
            listeners.append(listener)
            self._watches[key] = (listeners, current)
        safe_call(listener, current)
        self._ensure_poller()

    def _unwatch(self, key: tuple[str, str], listener: Callable[..., None]) -> None:
        with self._lock:
            entry = self._watches.get(key)
            if entry and listener in entry[0]:
                entry[0].remove(listener)
                if not entry[0]:
                    del self._watches[key]

    def _poke(self, key: tuple[str, str]) -> None:
        """Tell this process's listeners of ``key`` now, without waiting for the poller."""
        if key in self._watches:
            self._scan(key)

    def _scan(self, key: tuple[str, str]) -> None:
        with self._lock:
            entry = self._watches.get(key)
            if entry is None:
                return
            listeners, last = entry
            current = self._read(key)
            if current == last:
                return
            self._watches[key] = (listeners, current)
            listeners = list(listeners)
        for listener in listeners:
            safe_call(listener, current)

    def _ensure_poller(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="govrpc-file-registry", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(self.poll):
            ticks += 1
            for key in list(self._watches):
                try:
                    self._scan(key)
                except Exception:  # noqa: BLE001 - the poller must outlive any one bad read
                    log.exception("file registry: scanning %s failed", key)
            if ticks % 10 == 0:
                self._restore_mine()

    def _restore_mine(self) -> None:
        """Re-create this process's entries if someone removed them."""
        with self._lock:
            mine = list(self._mine.items())
        for path, url in mine:
            if not os.path.exists(path):
                log.warning("file registry: %s was removed behind our back; registering again", url)
                try:
                    self._write(path, json.dumps({"url": str(url), "pid": self._pid, "start": self._start}))
                except OSError as exc:
                    log.warning("file registry: cannot restore %s: %s", path, exc)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            mine = list(self._mine.values())
        for url in mine:
            self.unregister(url)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
