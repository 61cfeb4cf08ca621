"""``file:///dir``: a registry in a directory, for several processes on one host.

Every node is a file under ``{dir}/{service}/{category}/``, written atomically
(``base.atomic_write``). Provider and consumer files record the owning process
(pid and start time); an entry whose process is gone is deleted by the next
reader, so a crashed provider disappears within one poll. The registry's
dispatcher thread re-reads the watched directories every ``poll`` seconds
(default 0.1, a positive finite number) and tells listeners in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os


from govrpc.exceptions import ConfigurationError, RegistryError
from govrpc.registry.base import (
    CONSUMERS,
    PROVIDERS,
    BadEntry,
    Raw,
    RegistryCore,
    Watch,
    atomic_write,
    positive_seconds,
)
from govrpc.registry.dispatch import ThreadDispatcher
from govrpc.url import URL

__all__ = ["FileRegistry"]

log = logging.getLogger("govrpc.registry.file")

_MAX_NAME = 240
_RESTORE_EVERY = 10  # polls between checks that our own entries are still there


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


class FileRegistry(RegistryCore):
    """Registry kept in files under one directory."""

    scheme = "file"

    def __init__(self, url: URL) -> None:
        if url.host:
            raise ConfigurationError(
                f"file registry needs an absolute path: file:///dir, not {url} (host {url.host!r})")
        if not url.path:
            raise ConfigurationError(f"file registry URL {url} names no directory")
        poll = positive_seconds("file registry", "poll", url.params.get("poll", "0.1"))
        root = "/" + url.path
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"file registry: cannot use directory {root}: {exc}") from exc
        display = f"file registry {root}"
        super().__init__(url, display=display,
                         dispatcher=ThreadDispatcher(display, wait_limit=60.0, thread_name="govrpc-file-registry"))
        self.root = root
        self.poll = poll
        self._pid = os.getpid()
        self._start = _process_start(self._pid)
        self._polling = False
        self._polls = 0

    @property
    def propagation_delay(self) -> float:
        return 2 * self.poll

    # -- files ---------------------------------------------------------------------
    def _dir(self, service: str, category: str) -> str:
        return os.path.join(self.root, service, category)

    def _node_path(self, service: str, category: str, name: str = "") -> str:
        return os.path.join(self._dir(service, category), name) if name else self._dir(service, category)

    def _entry_name(self, url: URL) -> str:
        name = url.encoded()
        if len(name) > _MAX_NAME:  # file names are limited; the file's content holds the URL
            name = hashlib.sha256(name.encode()).hexdigest() + ".url"
        return name

    def _entry_data(self, url: URL) -> bytes:
        return json.dumps({"url": str(url), "pid": self._pid, "start": self._start}).encode()

    def _names(self, service: str, category: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self._dir(service, category)) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryError(f"{self.display}: cannot list {self._dir(service, category)}: {exc}") from exc

    def _read(self, service: str, category: str, watch: Watch | None) -> Raw:
        if category in (PROVIDERS, CONSUMERS):
            return self._read_entries(service, category)
        rules: dict[str, bytes] = {}
        for name in self._names(service, category):
            try:
                with open(os.path.join(self._dir(service, category), name), "rb") as f:
                    rules[name] = f.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("file registry: skipping unreadable rule %s: %s", self._node_path(service, category, name),
                            exc)
        return rules

    def _read_entries(self, service: str, category: str) -> dict[str, str | URL | BadEntry]:
        entries: dict[str, str | URL | BadEntry] = {}
        for name in self._names(service, category):
            path = self._node_path(service, category, name)
            try:
                with open(path, encoding="utf-8") as f:
                    record = json.load(f)
                text = record["url"]
                pid, start = int(record.get("pid", 0)), str(record.get("start", ""))
                if not isinstance(text, str):
                    raise TypeError("url is not text")
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                entries[name] = BadEntry(f"unreadable: {type(exc).__name__}: {exc}")
                continue
            if pid and not _alive(pid, start):
                log.info("file registry: removing %s, its process %d is gone", text, pid)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            entries[name] = text
        return entries

    def _put(self, service: str, category: str, name: str, data: bytes, *, ephemeral: bool) -> None:
        path = self._node_path(service, category, name)
        try:
            atomic_write(path, data)
        except OSError as exc:
            what = "register an entry" if ephemeral else "write rule"
            raise RegistryError(f"file registry: cannot {what} at {path}: {exc}") from exc
        self._ensure_polling()

    def _delete(self, service: str, category: str, name: str) -> None:
        try:
            os.unlink(self._node_path(service, category, name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RegistryError(f"file registry: cannot delete {self._node_path(service, category, name)}: "
                                f"{exc}") from exc

    def _list_services(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.root, n)))

    # -- polling (dispatcher thread) -------------------------------------------------------
    def _watch(self, watch: Watch) -> None:
        self._ensure_polling()

    def _ensure_polling(self) -> None:
        if not self._polling and not self._closing.is_set():
            self._polling = True
            self._dispatcher.later(self.poll, self._tick)

    def _tick(self) -> None:
        if self._closing.is_set():
            return
        self._polls += 1
        with self._lock:
            watches = list(self._watches.values())
        self._refresh(watches)
        if self._polls % _RESTORE_EVERY == 0:
            self._restore_own()
        self._dispatcher.later(self.poll, self._tick)

    def _restore_own(self) -> None:
        """Re-create this process's entries if someone removed them."""
        for (service, category, name), url in self._own_entries():
            path = self._node_path(service, category, name)
            if not os.path.exists(path):
                log.warning("file registry: %s was removed behind our back; registering again", url)
                try:
                    atomic_write(path, self._entry_data(url))
                except OSError as exc:
                    log.warning("file registry: cannot restore %s: %s", path, exc)

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._withdraw_own()
        self._closing.set()
        self._dispatcher.close(join_timeout=2)


