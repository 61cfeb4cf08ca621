"""Outlier ejection: keep a provider that keeps failing out of the list for a while.

A provider with ``outlier.failures`` consecutive provider failures (default 5)
is ejected for ``outlier.interval`` s (default 30) times the number of times it
has been ejected, at most ``outlier.max_interval`` s (default 300). Never more
than ``outlier.max_share`` of the providers (default 0.5, rounded down) are
ejected at once, so a cluster-wide outage is never turned into "no provider".
An ejected provider returns by itself when its time is up; its failure count
starts again from zero.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import ClassVar, Sequence

from govrpc.cluster.stats import ProviderState, stats_of
from govrpc.exceptions import ConfigurationError
from govrpc.invocation import Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["OutlierDetector"]

log = logging.getLogger("govrpc.cluster")


class OutlierDetector:
    """Ejection state of one reference's providers; thread-safe, cheap when nobody is ejected.

    Its options (shared by every method of a reference, so not per method) are
    declared here and by every cluster invoker, which owns a detector.
    """

    FAILURES = Option.integer("outlier.failures", 5, low=1, per_method=False,
                              doc="consecutive provider failures that eject a provider")
    INTERVAL = Option.seconds("outlier.interval", 30.0, zero=True, per_method=False,
                              doc="seconds ejected, times the number of ejections")
    MAX_INTERVAL = Option.seconds("outlier.max_interval", 300.0, zero=True, per_method=False,
                                  doc="longest ejection, seconds")
    MAX_SHARE = Option.number("outlier.max_share", 0.5, low=0.0, high=1.0, per_method=False,
                              doc="largest share of the providers ejected at once")
    options: ClassVar[tuple[Option, ...]] = (FAILURES, INTERVAL, MAX_INTERVAL, MAX_SHARE)

    def __init__(self, failures: int = 5, interval: float = 30.0, max_interval: float = 300.0,
                 max_share: float = 0.5) -> None:
        if failures < 1:
            raise ConfigurationError(f"outlier.failures must be 1 or more, not {failures}")
        if interval < 0 or max_interval < interval:
            raise ConfigurationError(
                f"outlier.interval ({interval}) must be >= 0 and <= outlier.max_interval ({max_interval})")
        if not 0.0 <= max_share <= 1.0:
            raise ConfigurationError(f"outlier.max_share must be within 0..1, not {max_share}")
        self.failures = failures
        self.interval = interval
        self.max_interval = max_interval
        self.max_share = max_share
        self._lock = threading.Lock()
        self.ejected: dict[ProviderState, Invoker] = {}

    @classmethod
    def from_url(cls, url: URL) -> OutlierDetector:
        return cls(cls.FAILURES.read(url), cls.INTERVAL.read(url), cls.MAX_INTERVAL.read(url),
                   cls.MAX_SHARE.read(url))

    def configure(self, other: OutlierDetector) -> None:
        """Take ``other``'s settings (a configurator changed them), keeping who is ejected."""
        self.failures, self.interval = other.failures, other.interval
        self.max_interval, self.max_share = other.max_interval, other.max_share

    def filter(self, invokers: Sequence[Invoker]) -> Sequence[Invoker]:
        """``invokers`` without the ejected ones; releases those whose time is up."""
        now = time.monotonic()
        with self._lock:
            for stats in [s for s in self.ejected if s.ejected_until <= now]:
                invoker = self.ejected.pop(stats)
                stats.ejected_until = 0.0
                stats.consecutive_failures = 0
                log.info("provider %s returns after ejection", invoker.url.address)
            if not self.ejected:
                return invokers
        kept = [i for i in invokers if stats_of(i).ejected_until == 0.0]
        return kept or invokers

    def on_failure(self, invoker: Invoker, stats: ProviderState, providers: int) -> None:
        """Called after a provider failure; ejects ``invoker`` when it has failed too often."""
        if stats.consecutive_failures < self.failures or stats.ejected_until:
            return
        with self._lock:
            if stats.ejected_until or len(self.ejected) + 1 > int(self.max_share * providers):
                return
            stats.times_ejected += 1
            seconds = min(self.interval * stats.times_ejected, self.max_interval)
            stats.ejected_until = time.monotonic() + seconds
            self.ejected[stats] = invoker
        log.warning("provider %s ejected for %.0f s after %d consecutive failures (ejection #%d)",
                    invoker.url.address, seconds, stats.consecutive_failures, stats.times_ejected)
