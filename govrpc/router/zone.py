"""Locality: prefer providers of the consumer's zone (machine room), spill over as it sickens.

Providers publish ``zone`` / ``region`` (and ``rack``, the host is their address)
as tags (``Server(tags={"zone": "a", "region": "east"})``); a consumer with a zone
(``Client(zone="a")``) gets a ``ZoneRouter``. It keeps the healthy providers of
its zone while their share of that zone's providers is at least
``zone_threshold`` (default 0.7, Istio's overprovisioning factor 1.4 read the
other way); below it, a matching part of the calls (share / threshold) stays in
the zone and the rest spills over to the other zones, those of the consumer's
region first. With ``zone_force`` nothing ever leaves the zone (an empty zone
means no provider). Healthy: its link is up, outlier detection has not ejected it
(``outlier.*``), and it does not report itself NOT_SERVING.
"""

from __future__ import annotations

import random
import time
from typing import Sequence

from govrpc.invocation import Invocation, Invoker
from govrpc.router.base import Router
from govrpc.url import URL

__all__ = ["ZoneRouter", "healthy"]

DEFAULT_THRESHOLD = 0.7


def healthy(invoker: Invoker, now: float) -> bool:
    """Fit for traffic as far as the consumer knows (link up, not ejected, serving)."""
    if not invoker.available:
        return False
    state = getattr(invoker, "state", None)
    if state is None:
        return True
    if state.ejected_until > now:  # a failure streak alone is not enough: it must be called to end one
        return False
    health = state.health
    return health is None or health.serving or not health.fresh()


class ZoneRouter(Router):
    """Zone preference with spill-over (see the module); built by the chain from the consumer URL."""

    name = "zone"
    priority = -900
    runtime = True  # its answer follows the providers' health, call by call

    def __init__(self, zone: str, region: str = "", *, force: bool = False,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.zone = zone
        self.region = region
        self.force = force
        self.threshold = threshold

    @classmethod
    def from_url(cls, consumer: URL) -> ZoneRouter:
        params = consumer.params
        try:
            threshold = float(params.get("zone_threshold", DEFAULT_THRESHOLD))
        except ValueError:
            threshold = DEFAULT_THRESHOLD
        if not 0.0 < threshold <= 1.0:
            threshold = DEFAULT_THRESHOLD
        return cls(params.get("zone", ""), params.get("region", ""),
                   force=params.get("zone_force", "").lower() == "true", threshold=threshold)

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        now = time.monotonic()
        zone = self.zone
        local = [i for i in invokers if i.url.params.get("zone") == zone] if zone else []
        fit = [i for i in local if healthy(i, now)]
        if local and len(fit) >= self.threshold * len(local):
            return fit, f"zone {zone}: {len(fit)} of {len(local)} provider(s) healthy"
        if self.force:
            return fit or local, f"zone {zone} forced: {len(fit)} of {len(local)} provider(s) healthy"
        share = len(fit) / len(local) if local else 0.0
        if fit and random.random() < share / self.threshold:
            return fit, f"zone {zone}: {len(fit)} of {len(local)} healthy, kept this call in the zone"
        others = [i for i in invokers if not zone or i.url.params.get("zone") != zone]
        if self.region:
            near = [i for i in others if i.url.params.get("region") == self.region]
            near_fit = [i for i in near if healthy(i, now)]
            if near_fit:
                return near_fit, f"zone {zone or '-'}: spilled over to region {self.region}"
        others_fit = [i for i in others if healthy(i, now)]
        chosen = others_fit or fit or others or local
        return chosen, f"zone {zone or '-'}: {len(fit)} of {len(local)} healthy; spilled over to other zones"
