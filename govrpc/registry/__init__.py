"""Where providers announce themselves and consumers find them.

Call path: the consumer's ``cluster.RegistryDirectory`` subscribes here; a
``Server`` registers its provider URLs here. Entry-point group
``govrpc.registry``: ``memory`` (in-process, the default), ``file`` (one host,
several processes), ``zookeeper`` (an ensemble, through kazoo; with on-disk
provider snapshots and empty-push protection). The registry knows nothing of
clusters or routing.
"""

from govrpc.registry.base import CATEGORIES, RULE_CATEGORIES, Registry, acquire_registry, release_registry

__all__ = ["CATEGORIES", "RULE_CATEGORIES", "Registry", "acquire_registry", "release_registry"]
