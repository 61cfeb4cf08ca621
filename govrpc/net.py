"""This host's names and addresses: plain socket helpers, below every layer.

The client publishes ``local_address()`` in its consumer URL (host-based route
rules match it); ``LocalFirstRouter`` prefers providers in ``local_hosts()``.
"""

from __future__ import annotations

import functools
import socket

__all__ = ["local_address", "local_hosts"]


@functools.lru_cache(maxsize=1)
def local_address() -> str:
    """This host's outward IPv4 address (what a consumer publishes), else 127.0.0.1."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        for info in infos:
            address = str(info[4][0])
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return "127.0.0.1"


@functools.lru_cache(maxsize=1)
def local_hosts() -> frozenset[str]:
    """Names and addresses of this host (loopback included)."""
    names = {"127.0.0.1", "localhost", "::1", "0.0.0.0", local_address()}
    try:
        hostname = socket.gethostname()
        names.add(hostname)
        names.update(str(info[4][0]) for info in socket.getaddrinfo(hostname, None))
    except OSError:
        pass
    return frozenset(str(n) for n in names)
