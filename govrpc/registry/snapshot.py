"""On-disk snapshots of provider lists: what a consumer knew when the registry was last reachable.

One JSON file per subscribed service, written atomically (``base.atomic_write``)
on every change, with the time it was saved. A consumer that starts while its registry is unreachable reads them instead (see
``ZookeeperRegistry``), and says how old they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from typing import Sequence
from urllib.parse import quote, unquote

from govrpc.exceptions import ConfigurationError
from govrpc.registry.base import atomic_write
from govrpc.url import URL

__all__ = ["ProviderSnapshot", "SnapshotStore", "default_snapshot_dir"]

log = logging.getLogger("govrpc.registry.snapshot")

_SUFFIX = ".json"


def default_snapshot_dir() -> str:
    """``~/.govrpc/snapshots`` if the home directory is writable, else one under the temp dir."""
    home = os.path.expanduser("~")
    if home and home != "~" and os.access(home, os.W_OK):
        return os.path.join(home, ".govrpc", "snapshots")
    return os.path.join(tempfile.gettempdir(), f"govrpc-snapshots-{os.getuid()}")


@dataclasses.dataclass(frozen=True)
class ProviderSnapshot:
    """A saved provider list of one service."""

    service: str
    urls: tuple[URL, ...]
    saved_at: float  # time.time() when written

    @property
    def age(self) -> float:
        """Seconds since it was saved."""
        return max(0.0, time.time() - self.saved_at)


class SnapshotStore:
    """Snapshots of one registry's provider lists in ``directory`` (created on first save).

    Thread-safe: each save writes a fresh temporary file and renames it over the old one.
    """

    def __init__(self, directory: str) -> None:
        if not directory:
            raise ConfigurationError("snapshot directory must not be empty")
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self._failed_once = False

    def _path(self, service: str) -> str:
        return os.path.join(self.directory, quote(service, safe="") + _SUFFIX)

    def save(self, service: str, urls: Sequence[URL]) -> None:
        """Write the list; a failure is logged (once), never raised: snapshots are a fallback."""
        record = {"service": service, "saved_at": time.time(), "providers": [str(u) for u in urls]}
        try:
            # on disk before the rename: a crash leaves the old or the new file whole
            atomic_write(self._path(service), json.dumps(record).encode("utf-8"), fsync=True)
        except OSError as exc:
            if not self._failed_once:
                log.warning("cannot write provider snapshots to %s: %s", self.directory, exc)
                self._failed_once = True

    def load(self, service: str) -> ProviderSnapshot | None:
        """The saved list of ``service``, or None; unreadable files and bad entries are skipped with a warning."""
        path = self._path(service)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            saved_at = float(record["saved_at"])
            raw = list(record["providers"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable provider snapshot %s: %s", path, exc)
            return None
        urls = []
        for text in raw:
            try:
                url = URL.parse(text)
            except ConfigurationError as exc:
                log.warning("provider snapshot %s: skipping bad entry %r: %s", path, text, exc)
                continue
            if url.path == service:
                urls.append(url)
        return ProviderSnapshot(service, tuple(urls), saved_at)

    def services(self) -> list[str]:
        """Services that have a snapshot, sorted."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(unquote(n[: -len(_SUFFIX)]) for n in names
                      if n.endswith(_SUFFIX) and not n.startswith("."))
