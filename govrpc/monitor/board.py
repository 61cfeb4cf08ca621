"""``HealthBoard``: a reference's view of its providers' health summaries (the monitor centre's feedback).

It watches the service's ``monitors`` rules in the registry and hands each listed
provider its fresh summary (``ProviderState.health``, None when there is none or it
is stale or garbage), which the ``healthweighted`` load balancer reads.
"""

from __future__ import annotations

import logging
from typing import Any

from govrpc.monitor.health import MONITORS, HealthSummary, read_summaries
from govrpc.registry.base import Registry

__all__ = ["HealthBoard"]

log = logging.getLogger("govrpc.monitor")


class HealthBoard:
    """Summaries of the providers of ``directory``'s service, kept on their states. Thread-safe."""

    def __init__(self, registry: Registry, directory: Any) -> None:
        self.registry = registry
        self.directory = directory
        self.service = directory.key.service
        self.summaries: dict[str, HealthSummary] = {}
        registry.watch_rules(self.service, MONITORS, self.update)

    def update(self, texts: dict[str, str]) -> None:
        """Registry listener: every summary of the service (garbage and stale ones are left out)."""
        self.summaries = read_summaries(texts, where=f"{self.service} monitors")
        self.apply()

    def apply(self) -> None:
        summaries = self.summaries
        for invoker in self.directory.invokers:
            state = getattr(invoker, "state", None)
            if state is not None:
                state.health = summaries.get(invoker.url.address)

    def close(self) -> None:
        self.registry.unwatch_rules(self.service, MONITORS, self.update)
