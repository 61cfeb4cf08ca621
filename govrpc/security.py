"""Link and data security: TLS on the transport and token authentication of callers.

Where it sits: ``TLS`` (or grpc's own credential objects) is given to ``Server`` and
``Client``; the transport (``govrpc/rpc``) turns it into secure ports and channels. A
provider serving TLS publishes ``tls=true`` in its URL, so consumers dial it with TLS
and never fall back to plaintext. ``TokenAuthFilter`` is the provider filter a
``Server(token=...)`` puts first in its chain: a call without one of the accepted
tokens is refused with ``UnauthenticatedError`` before any other filter or the
provider's method runs. The consumer sends its token as static metadata (built once
per provider, so an unconfigured client pays nothing). Tokens are compared in
constant time and never written to a log, an error or a provider URL.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import threading
from typing import Any, Iterable

from govrpc.exceptions import ConfigurationError, UnauthenticatedError
from govrpc.invocation import Filter, Invocation, Invoker

__all__ = ["TLS", "TLS_KEY", "TOKEN_KEY", "TokenAuthFilter", "channel_credentials", "check_token", "check_tokens",
           "server_credentials"]

TOKEN_KEY = "govrpc-token"
"""Request metadata: the consumer's token (stripped before provider code sees the attachments)."""

TLS_KEY = "tls"
"""Provider URL parameter: ``true`` when the provider serves TLS only."""


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"TLS {what} must be a file path, not {path!r}")
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigurationError(f"TLS {what} {path!r} cannot be read: {exc.strerror}") from None


@dataclasses.dataclass(frozen=True)
class TLS:
    """File-based TLS settings for ``Server(tls=...)`` and ``Client(tls=...)``.

    On a server: ``cert_file`` and ``key_file`` (PEM) are its certificate chain and key
    (required); ``ca_file`` given means mutual TLS: clients must present a certificate
    signed by it. On a client: ``ca_file`` is the roots trusted for providers (default:
    the system's); ``cert_file`` / ``key_file`` its own certificate for mutual TLS;
    ``server_name`` the name expected in providers' certificates when it differs from
    the address dialled (grpc's ``ssl_target_name_override``).

    Raises ``ConfigurationError`` (from ``server_credentials`` / ``channel_credentials``)
    for a file that cannot be read or a certificate given without its key.
    """

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    server_name: str | None = None

    def server_credentials(self) -> Any:
        import grpc  # only the transport's helpers import grpc at module level

        if self.cert_file is None or self.key_file is None:
            raise ConfigurationError("a TLS server needs cert_file and key_file")
        chain, key = _read(self.cert_file, "cert_file"), _read(self.key_file, "key_file")
        roots = _read(self.ca_file, "ca_file")
        return grpc.ssl_server_credentials([(key, chain)], root_certificates=roots,
                                           require_client_auth=roots is not None)

    def channel_credentials(self) -> Any:
        import grpc

        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError("a TLS client certificate needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca_file, "ca_file"),
                                            private_key=_read(self.key_file, "key_file"),
                                            certificate_chain=_read(self.cert_file, "cert_file"))

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def __repr__(self) -> str:
        return f"TLS(cert_file={self.cert_file!r}, ca_file={self.ca_file!r}, server_name={self.server_name!r})"


def server_credentials(credentials: Any, tls: TLS | None) -> Any:
    """grpc ``ServerCredentials`` from ``Server(credentials=..., tls=...)`` (None: plaintext)."""
    import grpc

    if credentials is not None and tls is not None:
        raise ConfigurationError("give credentials= or tls=, not both")
    if tls is not None:
        if not isinstance(tls, TLS):
            raise ConfigurationError(f"tls must be a govrpc.TLS, not {tls!r}")
        return tls.server_credentials()
    if credentials is not None and not isinstance(credentials, grpc.ServerCredentials):
        raise ConfigurationError(f"credentials must be grpc.ServerCredentials "
                                 f"(grpc.ssl_server_credentials(...)), not {type(credentials).__name__}")
    return credentials


def channel_credentials(credentials: Any, tls: TLS | None) -> Any:
    """grpc ``ChannelCredentials`` from ``Client(credentials=..., tls=...)`` (None: plaintext)."""
    import grpc

    if credentials is not None and tls is not None:
        raise ConfigurationError("give credentials= or tls=, not both")
    if tls is not None:
        if not isinstance(tls, TLS):
            raise ConfigurationError(f"tls must be a govrpc.TLS, not {tls!r}")
        return tls.channel_credentials()
    if credentials is not None and not isinstance(credentials, grpc.ChannelCredentials):
        raise ConfigurationError(f"credentials must be grpc.ChannelCredentials "
                                 f"(grpc.ssl_channel_credentials(...)), not {type(credentials).__name__}")
    return credentials


def check_token(token: Any, option: str = "token") -> str:
    """``token`` if it is a usable token (a non-empty printable ASCII string); names no value."""
    if not isinstance(token, str) or not token:
        raise ConfigurationError(f"{option} must be a non-empty string")
    if not token.isascii() or not token.isprintable() or token != token.strip():
        raise ConfigurationError(f"{option} must be printable ASCII without surrounding spaces "
                                 f"(it travels as gRPC metadata)")
    return token


def check_tokens(tokens: str | Iterable[str], option: str = "token") -> tuple[str, ...]:
    """One token or several (accepted alike: the overlap of a rotation), checked."""
    if isinstance(tokens, str):
        return (check_token(tokens, option),)
    try:
        listed = tuple(tokens)
    except TypeError:
        raise ConfigurationError(f"{option} must be a string or a list of strings") from None
    if not listed:
        raise ConfigurationError(f"{option} must name at least one token")
    return tuple(check_token(t, option) for t in listed)


class TokenAuthFilter(Filter):
    """Provider filter: refuses a call whose token is not one of the accepted ones.

    Runs first (lowest ``order``), so a refused call reaches no other filter and not the
    method. ``rotate(new_tokens)`` swaps the accepted set whole (accept old and new,
    switch the consumers, then accept only the new one: no call is dropped). The token
    is removed from the attachments the rest of the chain and the method see.
    """

    side = "provider"
    order = -2000  # before every other provider filter (tracing included): a refused call reaches none

    def __init__(self, tokens: str | Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in check_tokens(tokens))
        self._lock = threading.Lock()

    def rotate(self, tokens: str | Iterable[str]) -> None:
        """Accept ``tokens`` from now on (checked first; a bad list changes nothing)."""
        accepted = tuple(t.encode() for t in check_tokens(tokens))
        with self._lock:
            self._tokens = accepted

    def accepts(self, token: str | None) -> bool:
        if not token:
            return False
        given = token.encode("utf-8", "replace")
        # every accepted token compared, each in constant time: timing tells nothing of which matched
        matched = False
        for accepted in self._tokens:
            matched |= hmac.compare_digest(given, accepted)
        return matched

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        attachments = invocation.attachments
        token = attachments.get(TOKEN_KEY)
        if not self.accepts(token):
            why = "no token" if not token else "a wrong token"
            raise UnauthenticatedError(f"{invocation}: the call carries {why}; this provider requires one",
                                       invocation=invocation)
        rest = {k: v for k, v in attachments.items() if k != TOKEN_KEY}
        return invoker.invoke(dataclasses.replace(invocation, attachments=rest))

    def __repr__(self) -> str:
        return f"TokenAuthFilter({len(self._tokens)} token(s))"
