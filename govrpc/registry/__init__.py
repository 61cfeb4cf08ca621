"""Where providers announce themselves and consumers find them.

Call path: a ``Server`` registers its provider URLs here; the consumer's
``cluster.RegistryDirectory`` subscribes here and receives each provider list
(and each rule set) on the registry's delivery thread, in order, outside any
lock. Entry-point group ``govrpc.registry``: ``memory`` (in-process, the
default), ``file`` (one host, several processes), ``zookeeper`` (an ensemble,
through kazoo; with on-disk provider snapshots and empty-push protection).

Modules: ``base`` (the ``Registry`` interface and ``RegistryCore``, which every
built-in shares: listeners, ordered delivery, own entries, rule decoding),
``dispatch`` (the ordered delivery thread), ``memory``, ``file``,
``zookeeper`` (the kazoo backend) with ``zkaddress`` (address, options, ACLs)
and ``zkrepair`` (re-registration and re-reads after a failure),
``protection`` (the empty-push guard), ``snapshot`` (provider lists on disk),
``multi`` (several registries read as one: ``Client(registry=[url1, url2])``).
Rule categories: ``configurators``, ``routers`` and ``monitors`` (providers'
health summaries, ``govrpc.monitor.health``).
The registry knows nothing of clusters or routing.
"""

from govrpc.registry.base import CATEGORIES, RULE_CATEGORIES, Registry, acquire_registry, release_registry

__all__ = ["CATEGORIES", "RULE_CATEGORIES", "Registry", "acquire_registry", "release_registry"]
