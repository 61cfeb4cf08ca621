"""Service keys and provider/consumer URLs: the data the registry holds.

A provider URL carries everything routing and balancing need::

    grpc://10.0.0.5:50051/demo.Greeter?version=1.0&group=default&methods=hello,bye&weight=100

Its URL-encoded form (``URL.encoded()``) is the name of its registry node.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from govrpc.exceptions import ConfigurationError

__all__ = ["ServiceKey", "URL", "CONSUMER", "PROVIDER_SCHEMES"]

CONSUMER = "consumer"
PROVIDER_SCHEMES = frozenset({"grpc"})


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceKey:
    """Identifies a service: its name plus optional version and group.

    ``version`` or ``group`` equal to ``"*"`` match any value (consumer side only).
    """

    service: str
    version: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not self.service or any(c in self.service for c in "/?# \t\n"):
            raise ConfigurationError(f"invalid service name {self.service!r}")

    def __str__(self) -> str:
        text = self.service
        if self.group:
            text = f"{self.group}/{text}"
        if self.version:
            text = f"{text}:{self.version}"
        return text

    def matches(self, url: URL) -> bool:
        """Does the provider ``url`` serve this key?"""
        if url.path != self.service:
            return False
        if self.version != "*" and url.params.get("version", "") != self.version:
            return False
        return self.group == "*" or url.params.get("group", "") == self.group


class URL:
    """An immutable ``scheme://host:port/path?params`` value.

    Parameters keep their insertion order; equal URLs compare and hash equal.
    """

    __slots__ = ("scheme", "host", "port", "path", "params", "address", "_text", "_hash")

    def __init__(self, scheme: str, host: str, port: int, path: str = "",
                 params: Mapping[str, object] | None = None) -> None:
        if not scheme:
            raise ConfigurationError("URL needs a scheme")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"URL port {port!r} is not in 0..65535")
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path.strip("/")
        self.params: Mapping[str, str] = MappingProxyType({str(k): str(v) for k, v in (params or {}).items()})
        netloc = f"{host}:{port}" if port else host
        query = urlencode(list(self.params.items()), safe=",*:")
        self._text = f"{scheme}://{netloc}/{self.path}" + (f"?{query}" if query else "")
        self._hash = hash(self._text)
        self.address = f"{host}:{port}"  # read on every call a span records (the provider chosen)

    # -- parse / format -------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> URL:
        """Parse ``text``; raises ``ConfigurationError`` naming what is wrong."""
        if not isinstance(text, str) or "://" not in text:
            raise ConfigurationError(f"not a URL: {text!r} (expected scheme://host:port/path?params)")
        try:
            parts = urlsplit(text)
        except ValueError as exc:  # an unbalanced "[" of an IPv6 host
            raise ConfigurationError(f"not a URL: {text!r}: {exc}") from None
        try:
            port = parts.port or 0
        except ValueError as exc:
            raise ConfigurationError(f"bad port in URL {text!r}: {exc}") from None
        host = parts.hostname or ""
        return cls(parts.scheme, host, port, unquote(parts.path),
                   dict(parse_qsl(parts.query, keep_blank_values=True)))

    @classmethod
    def decode(cls, node_name: str) -> URL:
        """Parse the URL-encoded form used as a registry node name."""
        return cls.parse(unquote(node_name))

    def encoded(self) -> str:
        """The URL-encoded form, safe as a registry node or file name."""
        return quote(self._text, safe="")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"URL({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other._text == self._text

    def __hash__(self) -> int:
        return self._hash

    # -- accessors -------------------------------------------------------
    @property
    def service_key(self) -> ServiceKey:
        return ServiceKey(self.path, self.params.get("version", ""), self.params.get("group", ""))

    @property
    def methods(self) -> tuple[str, ...]:
        raw = self.params.get("methods", "")
        return tuple(m for m in raw.split(",") if m)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def get_int(self, name: str, default: int) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigurationError(f"parameter {name}={value!r} of {self} is not an integer") from None

    def get_float(self, name: str, default: float) -> float:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):  # nan and inf break timers and comparisons far from here
            raise ConfigurationError(f"parameter {name}={value!r} of {self} is not a finite number")
        return number

    def method_param(self, method: str, name: str, default: str | None = None) -> str | None:
        """``{method}.{name}`` if set, else ``{name}``, else ``default`` (Dubbo's lookup)."""
        value = self.params.get(f"{method}.{name}")
        return value if value is not None else self.params.get(name, default)

    def with_params(self, **params: Any) -> URL:
        """A copy with ``params`` added or replaced (a value of None removes the key)."""
        merged = dict(self.params)
        for key, value in params.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return URL(self.scheme, self.host, self.port, self.path, merged)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.params.items())
