"""The flow-control keys, declared once as ``Option``s (checked where written, parsed where read).

Provider-side keys (``tps`` and its family, ``concurrency``, ``connections``,
``cluster.*``) in a configurator without ``application`` reach the providers;
in a rule with ``application = X`` they configure the consumers of X instead.
``actives`` and ``priority`` are consumer keys. Each except ``connections``,
``cluster.mode``, ``cluster.period`` is also settable per method as ``{method}.{key}``.
"""

from __future__ import annotations

import dataclasses
import math

from govrpc.exceptions import ConfigurationError
from govrpc.flowctl.priority import parse_priority
from govrpc.options import Option

__all__ = ["ACTIVES", "ADAPTIVE", "CLUSTER_MODE", "CLUSTER_MODES", "CLUSTER_PERIOD", "CLUSTER_TPS", "CONCURRENCY",
           "CONNECTIONS", "CONSUMER_FLOW_OPTIONS", "FLOW_KEYS", "PRIORITY", "PROVIDER_FLOW_OPTIONS", "TPS", "TPS_BURST",
           "TPS_LIMITER", "TPS_QUEUE", "TPS_WARMUP"]

PROVIDER = "provider"
MAX_RATE = 1e9


def _rate(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError() from None
    if not math.isfinite(number) or not 0 < number <= MAX_RATE:
        raise ValueError()
    return number


def _mode(text: str) -> str:
    if text not in CLUSTER_MODES:
        raise ConfigurationError(f"cluster.mode must be one of {', '.join(CLUSTER_MODES)}, not {text!r}")
    return text


def _priority(text: str) -> str:
    return str(parse_priority(text))


def _provider(option: Option) -> Option:
    return dataclasses.replace(option, side=PROVIDER)


CLUSTER_MODES = ("split", "pool")
RATE_EXPECTED = f"a positive number of calls per second (at most {MAX_RATE:g})"

TPS = Option("tps", _rate, None, "calls per second admitted", RATE_EXPECTED, side=PROVIDER)
TPS_BURST = _provider(Option.number("tps.burst", None, low=1.0, high=MAX_RATE,
                                    expected="a number of calls >= 1",
                                    doc="calls admitted at once (token bucket; default: one second's worth)"))
TPS_LIMITER = _provider(Option.extension("tps.limiter", "govrpc.limiter", "tokenbucket",
                                         doc="the rate limiter: tokenbucket, slidingwindow, warmup, queueing"))
TPS_WARMUP = _provider(Option.seconds("tps.warmup", 10.0, doc="warm-up limiter: seconds to reach the full rate"))
TPS_QUEUE = _provider(Option.seconds("tps.queue", 0.5, doc="queueing limiter: longest wait for a slot, seconds"))
CONCURRENCY = Option.integer("concurrency", None, low=1, side=PROVIDER, expected="an integer >= 1",
                             doc="calls executing at once on the provider (bulkhead); more are refused at once")
CONNECTIONS = Option.integer("connections", None, low=1, side=PROVIDER, per_method=False,
                             expected="an integer >= 1",
                             doc="client connections a provider serves; a call on another one is refused")
CLUSTER_TPS = Option("cluster.tps", _rate, None, "calls per second for all instances together",
                     RATE_EXPECTED, side=PROVIDER)
CLUSTER_MODE = Option("cluster.mode", _mode, "split", "split: cluster.tps x weight / the live instances' weights; "
                      "pool: shares leased from the registry by demand (govrpc.flowctl.pool)",
                      "split or pool", per_method=False, side=PROVIDER)
CLUSTER_PERIOD = _provider(Option.number("cluster.period", 1.0, low=0.05, high=3600.0, per_method=False,
                                         expected="a number of seconds >= 0.05 and <= 3600",
                                         doc="pool: seconds between two renewals of an instance's lease"))
ACTIVES = Option.integer("actives", None, low=1, expected="an integer >= 1",
                         doc="calls in flight from this consumer; more are refused at once")
ADAPTIVE = Option.boolean("adaptive", None, per_method=False, side=PROVIDER,
                          doc="true: shed by priority as the process's load rises (govrpc.flowctl.adaptive)")
PRIORITY = Option("priority", _priority, None, "criticality of the calls: critical_plus, critical, "
                  "sheddable_plus, sheddable", "a priority", canonical=str)

PROVIDER_FLOW_OPTIONS = (TPS, TPS_BURST, TPS_LIMITER, TPS_WARMUP, TPS_QUEUE, CONCURRENCY, CONNECTIONS,
                         CLUSTER_TPS, CLUSTER_MODE, CLUSTER_PERIOD, ADAPTIVE)
CONSUMER_FLOW_OPTIONS = (TPS, TPS_BURST, TPS_LIMITER, TPS_WARMUP, TPS_QUEUE, ACTIVES, PRIORITY)
FLOW_KEYS = frozenset(o.name for o in (*PROVIDER_FLOW_OPTIONS, *CONSUMER_FLOW_OPTIONS))
