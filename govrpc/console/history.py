"""Rule history kept in the registry, beside the rules themselves.

Every change the console makes to a rule is also stored as a version under
``{service}/history/{category}.{name}.v{version:06d}``: a small JSON record with
the rule's text after the change (empty for a delete), who made it and when.
The newest ``keep`` versions of each rule are kept, older ones are deleted, so
the history is bounded. Nothing lives in the console's memory: a second
console, or the same one restarted, sees the same history.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from govrpc.admin import Admin
from govrpc.degrade.switches import SWITCH_SERVICE, SWITCHES, switch_text
from govrpc.exceptions import ConfigurationError
from govrpc.registry.base import HISTORY

__all__ = ["HISTORY", "RuleHistory", "Version"]
KEEP = 20


@dataclasses.dataclass(frozen=True)
class Version:
    """One stored version of a rule."""

    category: str
    name: str
    version: int
    user: str
    time: float
    action: str  # "put", "delete" or "rollback to vN"
    text: str

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _entry(category: str, name: str, version: int) -> str:
    return f"{category}.{name}.v{version:06d}"


def _split(entry: str) -> tuple[str, str, int] | None:
    category, dot, rest = entry.partition(".")
    name, mark, number = rest.rpartition(".v")
    if not dot or not mark or not name or not number.isdigit():
        return None
    return category, name, int(number)


class RuleHistory:
    """Writes rules through ``Admin`` and keeps each version in the registry; thread-safe per registry node."""

    def __init__(self, admin: Admin, *, keep: int = KEEP) -> None:
        if keep < 1:
            raise ConfigurationError(f"history keep={keep} must be at least 1")
        self.admin = admin
        self.keep = keep

    def versions(self, service: str, category: str | None = None, name: str | None = None) -> list[Version]:
        """Stored versions, newest first (of one rule when ``category`` and ``name`` are given)."""
        found = []
        for entry, text in self.admin.registry.rules(service, HISTORY).items():
            parts = _split(entry)
            if parts is None or (category and parts[0] != category) or (name is not None and parts[1] != name):
                continue
            try:
                data = json.loads(text)
                found.append(Version(parts[0], parts[1], parts[2], str(data["user"]), float(data["time"]),
                                     str(data["action"]), str(data["text"])))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged record is not history; the rule itself is untouched
        found.sort(key=lambda v: (v.category, v.name, -v.version))
        return found

    def put(self, service: str, category: str, name: str, text: str, *, user: str, action: str = "put") -> Version:
        """Check and store the rule through ``Admin`` (raises ``RuleError``, storing nothing), then its version."""
        self.admin.check_rule(category, text, name)
        self.admin.put_rule(service, category, name, text)
        return self._record(service, category, name, text, user, action)

    def delete(self, service: str, category: str, name: str, *, user: str) -> Version:
        """Delete the rule and record the deletion (a version with empty text)."""
        self.admin.delete_rule(service, category, name)
        return self._record(service, category, name, "", user, "delete")

    def set_switch(self, name: str, value: Any, *, user: str, action: str = "put") -> Version:
        """Set business switch ``name`` through ``Admin.set_switch`` (raises ``ConfigurationError``, storing
        nothing), then record it under the switches' own service (``govrpc.switches``)."""
        self.admin.set_switch(name, value)
        return self._record(SWITCH_SERVICE, SWITCHES, name, switch_text(value), user, action)

    def delete_switch(self, name: str, *, user: str) -> Version:
        """Delete switch ``name`` through ``Admin.delete_switch`` and record the deletion."""
        self.admin.delete_switch(name)
        return self._record(SWITCH_SERVICE, SWITCHES, name, "", user, "delete")

    def rollback(self, service: str, category: str, name: str, version: int, *, user: str) -> Version:
        """Make ``version`` current again (a new version); a deleted version deletes the rule."""
        old = next((v for v in self.versions(service, category, name) if v.version == version), None)
        if old is None:
            raise ConfigurationError(f"{service}: {category} rule {name!r} has no version {version} in the history")
        if (service, category) == (SWITCH_SERVICE, SWITCHES):
            if not old.text:
                self.admin.delete_switch(name)
                return self._record(service, category, name, "", user, f"rollback to v{version}")
            return self.set_switch(name, json.loads(old.text), user=user, action=f"rollback to v{version}")
        if not old.text:
            self.admin.delete_rule(service, category, name)
            return self._record(service, category, name, "", user, f"rollback to v{version}")
        return self.put(service, category, name, old.text, user=user, action=f"rollback to v{version}")

    def _record(self, service: str, category: str, name: str, text: str, user: str, action: str) -> Version:
        versions = self.versions(service, category, name)
        number = versions[0].version + 1 if versions else 1
        version = Version(category, name, number, user, time.time(), action, text)
        payload = {k: v for k, v in version.record().items() if k not in ("category", "name", "version")}
        self.admin.registry.put_rule(service, HISTORY, _entry(category, name, number), json.dumps(payload))
        for old in versions[self.keep - 1:]:
            self.admin.registry.delete_rule(service, HISTORY, _entry(category, name, old.version))
        return version
