"""ZooKeeper addresses, options and ACLs: everything ``zookeeper://...`` means, checked before connecting.

``parse_address`` turns ``zookeeper://[user:pw@]h1[:port],h2[:port][/root][?params]``
into a URL (hosts in ``hosts=``); ``ZookeeperSettings.from_url`` validates every
option and builds the digest ACLs. Pure: no connection, no thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote

from kazoo.security import make_acl, make_digest_acl, make_digest_acl_credential

from govrpc.exceptions import ConfigurationError
from govrpc.registry.base import CONSUMERS, positive_seconds
from govrpc.url import URL

__all__ = ["DEFAULT_PORT", "DEFAULT_ROOT", "PARAMETERS", "ZookeeperSettings", "check_hosts", "parse_address"]

DEFAULT_PORT = 2181
DEFAULT_ROOT = "govrpc"

# name -> (default, what it is); every value is validated in ZookeeperSettings.from_url
PARAMETERS: dict[str, tuple[str, str]] = {
    "session_timeout": ("10", "seconds before ZooKeeper removes a silent process's entries"),
    "connect_timeout": ("10", "seconds to wait for ZooKeeper at start"),
    "operation_timeout": ("5", "deadline, seconds, of each ZooKeeper request"),
    "empty_protection": ("30", "seconds a push removing every provider is held back (0: off)"),
    "retry_max_delay": ("5", "longest pause, seconds, between background retries"),
    "propagation_delay": ("0.15", "seconds a server waits after deregistering"),
    "snapshot_dir": ("", "directory of provider snapshots (default ~/.govrpc/snapshots)"),
    "auth": ("", "digest credentials user:password"),
    "reader": ("anyone", "who may read nodes this identity creates: anyone or user:password"),
    "use_ssl": ("false", "true: TLS to ZooKeeper's secureClientPort (kazoo's use_ssl)"),
    "ca": ("", "PEM file of the CAs trusted for ZooKeeper's certificate (default: the system's)"),
    "certfile": ("", "PEM client certificate, when ZooKeeper asks for one (ssl.clientAuth)"),
    "keyfile": ("", "PEM key of certfile"),
    "verify_certs": ("true", "false: accept any server certificate (tests only)"),
    "check_hostname": ("true", "false: accept a certificate that does not name the host dialled"),
    "hosts": ("", "the host list (set from the address)"),
}

_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]+))?$")
_PART_RE = re.compile(r"^[A-Za-z0-9_.:@=+-]+$")
_WHO = "zookeeper registry"


def credentials(name: str, raw: str) -> tuple[str, str]:
    """``user:password`` -> (user, password); the error never echoes what was given (a password)."""
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        missing = "the ':'" if not sep else "the user" if not user else "the password"
        raise ConfigurationError(f"{_WHO}: {name} must be user:password; {missing} is missing")
    return user, password


def _flag(p: Mapping[str, str], name: str) -> bool:
    value = p[name].strip().lower()
    if value not in ("true", "false"):
        raise ConfigurationError(f"{_WHO}: {name} must be true or false, not {p[name]!r}")
    return value == "true"


def _tls(p: Mapping[str, str]) -> dict[str, Any]:
    """kazoo's TLS arguments from the address; checked here so a typo fails at once, not at connect."""
    files = {name: p[name] for name in ("ca", "certfile", "keyfile") if p[name]}
    verify, hostname = _flag(p, "verify_certs"), _flag(p, "check_hostname")
    if not _flag(p, "use_ssl"):
        if files:
            raise ConfigurationError(f"{_WHO}: {', '.join(files)} given without use_ssl=true")
        return {}
    if bool(p["certfile"]) != bool(p["keyfile"]):
        raise ConfigurationError(f"{_WHO}: a client certificate needs both certfile and keyfile")
    for name, path in files.items():
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigurationError(f"{_WHO}: {name} {path!r} is not a readable file")
    return {"use_ssl": True, "verify_certs": verify, "check_hostname": hostname and verify, **files}


def check_hosts(raw: str) -> str:
    """Normalise ``h1:2181,h2`` to ``h1:2181,h2:2181``; raises naming the bad entry."""
    if not raw:
        raise ConfigurationError(f"{_WHO} address names no host (zookeeper://host:2181/root)")
    hosts = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            raise ConfigurationError(f"{_WHO}: empty entry in host list {raw!r}")
        match = _HOST_RE.match(entry)
        if match is None:
            raise ConfigurationError(f"{_WHO}: bad host {entry!r} in host list {raw!r} (expected host or host:port)")
        port = int(match.group(2)) if match.group(2) else DEFAULT_PORT
        if not 0 < port <= 65535:
            raise ConfigurationError(f"{_WHO}: port {port} of host {entry!r} is not in 1..65535")
        hosts.append(f"{match.group(1)}:{port}")
    return ",".join(hosts)


def parse_address(address: str) -> URL:
    """``zookeeper://[user:pw@]h1[:port],h2[:port][/root][?params]`` -> URL (hosts in ``hosts=``)."""
    if not isinstance(address, str) or not address.startswith("zookeeper://"):
        raise ConfigurationError(f"not a zookeeper registry address: {address!r}")
    rest = address[len("zookeeper://"):]
    rest, _, query = rest.partition("?")
    netloc, _, root = rest.partition("/")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if "hosts" in params:  # internal: set from the address only, never by a query that could redirect it
        raise ConfigurationError(f"{_WHO}: give hosts in the address (zookeeper://h1:2181,h2:2181/...), "
                                 "not as a hosts= parameter")
    userinfo, at, hostlist = netloc.rpartition("@")
    if at:
        if "auth" in params:
            raise ConfigurationError(f"{_WHO}: credentials given twice (user:pw@ and auth=)")
        user, password = credentials("the user:password@ part", unquote(userinfo))
        params["auth"] = f"{user}:{password}"
    hosts = check_hosts(hostlist)
    if "," in hosts:
        params["hosts"] = hosts
    first = hosts.split(",")[0]
    host, _, port = first.rpartition(":")
    return URL("zookeeper", host.strip("[]"), int(port), root, params)


@dataclasses.dataclass(frozen=True)
class ZookeeperSettings:
    """Every option of one ``zookeeper://`` URL, validated; the ACLs its nodes get."""

    hosts: str
    root: str  # "/govrpc"
    session_timeout: float
    connect_timeout: float
    operation_timeout: float
    empty_protection: float
    retry_max_delay: float
    propagation_delay: float
    snapshot_dir: str  # "" for the default
    user: str
    auth_data: tuple[tuple[str, str], ...]
    credential: str  # our digest credential, "" without auth
    acl_dir: list[Any] | None  # directories, entries, rules: writable by us
    acl_consumers: list[Any] | None  # consumers/: others may add their entries
    tls: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # kazoo's TLS arguments; empty: plaintext

    @property
    def display(self) -> str:
        return f"zookeeper://{self.user + '@' if self.user else ''}{self.hosts}{self.root}"

    @property
    def snapshot_name(self) -> str:
        """A directory name of its own per ensemble and root."""
        digest = hashlib.sha1(f"{self.hosts}{self.root}".encode()).hexdigest()[:12]
        return f"{self.root.lstrip('/').replace('/', '_')}-{digest}"

    def acl_for(self, path: str) -> list[Any] | None:
        if self.acl_dir is None:
            return None
        return self.acl_consumers if path.endswith("/" + CONSUMERS) else self.acl_dir

    @classmethod
    def from_url(cls, url: URL) -> ZookeeperSettings:
        """Raises ``ConfigurationError`` naming the option that is wrong."""
        unknown = sorted(set(url.params) - set(PARAMETERS))
        if unknown:
            raise ConfigurationError(
                f"{_WHO}: unknown parameter {', '.join(unknown)}; "
                f"known: {', '.join(sorted(p for p in PARAMETERS if p != 'hosts'))}")
        p = {name: url.params.get(name, default) for name, (default, _) in PARAMETERS.items()}
        hosts = check_hosts(p["hosts"] or (f"{url.host}:{url.port or DEFAULT_PORT}" if url.host else ""))
        root = url.path or DEFAULT_ROOT
        for part in root.split("/"):
            if not _PART_RE.match(part) or part in (".", "..", "zookeeper"):
                raise ConfigurationError(f"{_WHO}: bad root path {root!r} (part {part!r})")
        user, credential = "", ""
        auth_data: tuple[tuple[str, str], ...] = ()
        acl_dir = acl_consumers = None
        if p["auth"]:
            user, password = credentials("auth", p["auth"])
            auth_data = (("digest", f"{user}:{password}"),)
            credential = make_digest_acl_credential(user, password)
            owner = make_digest_acl(user, password, all=True)
            if p["reader"] == "anyone":
                read = make_acl("world", "anyone", read=True)
                use = make_acl("world", "anyone", read=True, create=True, delete=True)
            else:
                ruser, rpassword = credentials("reader", p["reader"])
                read = make_digest_acl(ruser, rpassword, read=True)
                use = make_digest_acl(ruser, rpassword, read=True, create=True, delete=True)
            acl_dir, acl_consumers = [owner, read], [owner, use]
        elif p["reader"] != "anyone":
            raise ConfigurationError(f"{_WHO}: reader= needs auth= (or user:password@)")

        def seconds(name: str, allow_zero: bool = False) -> float:
            return positive_seconds(_WHO, name, p[name], allow_zero=allow_zero)

        return cls(hosts=hosts, root="/" + root, session_timeout=seconds("session_timeout"),
                   connect_timeout=seconds("connect_timeout"), operation_timeout=seconds("operation_timeout"),
                   empty_protection=seconds("empty_protection", True), retry_max_delay=seconds("retry_max_delay"),
                   propagation_delay=seconds("propagation_delay", True), snapshot_dir=p["snapshot_dir"],
                   user=user, auth_data=auth_data, credential=credential, acl_dir=acl_dir,
                   acl_consumers=acl_consumers, tls=_tls(p))
