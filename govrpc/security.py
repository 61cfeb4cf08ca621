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
import hashlib
import hmac
import os
import re
from typing import Any, Callable, ClassVar, Iterable

from govrpc.exceptions import ConfigurationError, UnauthenticatedError
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.options import Option
from govrpc.url import URL

__all__ = ["TLS", "TLS_KEY", "TOKEN_DIGESTS", "TOKEN_KEY", "TokenAuthFilter", "channel_credentials", "check_token",
           "check_tokens", "server_credentials", "token_digest"]

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


def _credentials(credentials: Any, tls: TLS | None, side: str) -> Any:
    import grpc

    if credentials is not None and tls is not None:
        raise ConfigurationError("give credentials= or tls=, not both")
    if tls is not None:
        if not isinstance(tls, TLS):
            raise ConfigurationError(f"tls must be a govrpc.TLS, not {tls!r}")
        return tls.server_credentials() if side == "server" else tls.channel_credentials()
    kind, maker = ((grpc.ServerCredentials, "ssl_server_credentials") if side == "server"
                   else (grpc.ChannelCredentials, "ssl_channel_credentials"))
    if credentials is not None and not isinstance(credentials, kind):
        raise ConfigurationError(f"credentials must be grpc.{kind.__name__} (grpc.{maker}(...)), "
                                 f"not {type(credentials).__name__}")
    return credentials


def server_credentials(credentials: Any, tls: TLS | None) -> Any:
    """grpc ``ServerCredentials`` from ``Server(credentials=..., tls=...)`` (None: plaintext)."""
    return _credentials(credentials, tls, "server")


def channel_credentials(credentials: Any, tls: TLS | None) -> Any:
    """grpc ``ChannelCredentials`` from ``Client(credentials=..., tls=...)`` (None: plaintext)."""
    return _credentials(credentials, tls, "channel")


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


def token_digest(token: str) -> str:
    """The SHA-256 hex digest of ``token``: what the registry holds instead of the token itself."""
    return hashlib.sha256(check_token(token).encode()).hexdigest()


_DIGEST = re.compile(r"[0-9a-f]{64}$")


def _digests(text: str) -> tuple[str, ...]:
    listed = tuple(d.strip().lower() for d in text.split(",") if d.strip())
    bad = [d for d in listed if not _DIGEST.match(d)]
    if not listed or bad:
        raise ValueError(f"{TOKEN_DIGESTS.name} must be SHA-256 hex digests (govrpc.security.token_digest), "
                         f"comma-separated" + (f"; {len(bad)} of them are not" if bad else ""))
    return listed


TOKEN_DIGESTS = Option(
    "token.sha256", _digests, None, per_method=False, side="provider", expected="SHA-256 hex digests",
    doc="the tokens providers accept, as SHA-256 digests (a registry override of Server(token=...): "
        "list old and new during a rotation)")


class TokenAuthFilter(Filter):
    """Provider filter: refuses a call whose token is not one of the accepted ones.

    Runs first (lowest ``order``), so a refused call reaches no other filter and not the
    method (tracing included, on the server's direct path too). The token is removed from the
    attachments the rest of the chain and the method see. Only SHA-256 digests of the
    accepted tokens are kept, compared in constant time. Rotation without dropping a call:
    accept old and new, switch the consumers (``Client.rotate_token``), then accept only the
    new one. The accepted set is the
    server's own (``Server(token=...)``, ``rotate(tokens)``) unless the registry overrides
    it for a service: a configurator's ``token.sha256`` (digests only: the registry never
    holds a token; ``Admin.accept_tokens``), which reaches the filter the way every
    provider-side setting does (the server binds its filters to the configured URL again).
    Made from its name (``"token"``) it has no token of its own and accepts only what the
    registry lists.
    """

    side = "provider"
    order = -2000  # before every other provider filter (tracing included): a refused call reaches none
    options: ClassVar[tuple[Option, ...]] = (TOKEN_DIGESTS,)

    def __init__(self, tokens: str | Iterable[str] = ()) -> None:
        given = () if not isinstance(tokens, str) and not tokens else check_tokens(tokens)
        self._own = tuple(bytes.fromhex(token_digest(t)) for t in given)

    def bind(self, url: URL) -> Filter:
        """The check for the service of ``url``: the digests a configurator gives it (``token.sha256``
        on the provider's configured URL), else this server's own tokens."""
        listed = TOKEN_DIGESTS.read(url)
        return _ServiceTokenAuth(self, None if listed is None else tuple(bytes.fromhex(d) for d in listed),
                                 str(url.service_key))

    def rotate(self, tokens: str | Iterable[str]) -> None:
        """Accept ``tokens`` from now on (checked first; a bad list changes nothing)."""
        self._own = tuple(bytes.fromhex(token_digest(t)) for t in check_tokens(tokens))  # swapped whole

    def accepts(self, token: str | None, listed: tuple[bytes, ...] | None = None) -> bool:
        """True if ``token`` is one of ``listed`` (digests; None: this server's own tokens)."""
        if not token:
            return False
        given = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        # every accepted digest compared, each in constant time: timing tells nothing of which matched
        matched = False
        for accepted in self._own if listed is None else listed:
            matched |= hmac.compare_digest(given, accepted)
        return matched

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        return self.bind(invoker.url).invoke(invoker, invocation)

    async def ainvoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        return await self.bind(invoker.url).ainvoke(invoker, invocation)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"TokenAuthFilter({len(self._own)} token(s) of its own)"


def _refused(call: str, token: str | None, invocation: Invocation | None = None) -> UnauthenticatedError:
    why = "no token" if not token else "a wrong token"
    return UnauthenticatedError(f"{call}: the call carries {why}; this provider requires one", invocation=invocation)


class _ServiceTokenAuth(Filter):
    """``TokenAuthFilter`` bound to one service: its registry override, else the server's tokens."""

    side = "provider"
    order = TokenAuthFilter.order

    def __init__(self, parent: TokenAuthFilter, listed: tuple[bytes, ...] | None, service: str = "") -> None:
        self.parent = parent
        self.listed = listed
        self.service = service

    def check(self, invocation: Invocation) -> None:
        """Raise ``UnauthenticatedError`` unless the call carries an accepted token; remove it."""
        attachments = invocation.attachments
        token = attachments.get(TOKEN_KEY)
        if not self.parent.accepts(token, self.listed):
            raise _refused(str(invocation), token, invocation)
        # the provider side's attachments are this call's own dict (decoded from its metadata): the
        # token leaves it here, so no later filter nor the method sees it
        del attachments[TOKEN_KEY]

    def scope(self, call: Any, name: str, method: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        """``check`` without an Invocation (``Filter.scope``): the token read from the request
        metadata (which only the other stages' scopes see, never the method)."""
        token = None
        for key, value in call.invocation_metadata():
            if key == TOKEN_KEY:
                token = value
                break
        if not self.parent.accepts(token, self.listed):
            raise _refused(f"{self.service}.{name}", token)
        return method(*args, **kwargs)

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        self.check(invocation)
        return invoker.invoke(invocation)

    async def ainvoke(self, invoker: Invoker, invocation: Invocation) -> Any:  # AsyncServer's chain
        self.check(invocation)
        return await invoker.ainvoke(invocation)  # type: ignore[attr-defined]
