"""The console's login: one hashed password, sessions in cookies, a CSRF token per session.

The password comes from the environment (``GOVRPC_CONSOLE_PASSWORD``, hashed at
start and never kept in clear) or from a file holding a hash made by
``govrpc console --hash-password`` (``GOVRPC_CONSOLE_PASSWORD_FILE`` or
``--password-file``). Sessions live in the console's memory only: they are
logins, not data; every rule the console writes is in the registry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import Mapping

from govrpc.exceptions import ConfigurationError

__all__ = ["Login", "Session", "hash_password", "verify_password"]

_ALGO = "pbkdf2_sha256"
_ITERATIONS = 200_000
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1024  # a flood of logins cannot grow memory without bound


def hash_password(password: str, *, iterations: int = _ITERATIONS, salt: str | None = None) -> str:
    """``pbkdf2_sha256$iterations$salt$hexdigest`` for ``password``."""
    if not password:
        raise ConfigurationError("the console password is empty")
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"{_ALGO}${iterations}${salt}${digest}"


def _parse_hash(stored: str) -> tuple[int, str, str]:
    parts = stored.strip().split("$")
    if len(parts) != 4 or parts[0] != _ALGO or not parts[1].isdigit() or not parts[2] or not parts[3]:
        raise ConfigurationError(f"the console password hash is not {_ALGO}$iterations$salt$hex "
                                 f"(make one with `govrpc console --hash-password`)")
    return int(parts[1]), parts[2], parts[3]


def verify_password(password: str, stored: str) -> bool:
    """Does ``password`` match the ``stored`` hash? (constant-time comparison)"""
    iterations, salt, digest = _parse_hash(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return hmac.compare_digest(candidate, digest)


class Session:
    __slots__ = ("token", "user", "csrf", "expires")

    def __init__(self, user: str, lifetime: float) -> None:
        self.token = secrets.token_urlsafe(32)
        self.user = user
        self.csrf = secrets.token_urlsafe(32)
        self.expires = time.monotonic() + lifetime


class Login:
    """Checks the password and keeps the sessions it opened; thread-safe."""

    def __init__(self, password_hash: str, *, user: str = "admin", lifetime: float = SESSION_SECONDS) -> None:
        _parse_hash(password_hash)
        self.user = user
        self._hash = password_hash
        self._lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *, password_file: str | None = None,
                         user: str | None = None) -> Login:
        """The login configured by ``password_file`` or the environment; raises ``ConfigurationError``."""
        env = os.environ if environ is None else environ
        user = user or env.get("GOVRPC_CONSOLE_USER") or "admin"
        path = password_file or env.get("GOVRPC_CONSOLE_PASSWORD_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    stored = f.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"cannot read the console password file {path}: {exc}") from exc
            return cls(stored, user=user)
        password = env.get("GOVRPC_CONSOLE_PASSWORD")
        if password:
            return cls(hash_password(password), user=user)
        raise ConfigurationError("the console needs a password: set GOVRPC_CONSOLE_PASSWORD, or "
                                 "GOVRPC_CONSOLE_PASSWORD_FILE / --password-file to a file holding a hash "
                                 "made by `govrpc console --hash-password`")

    def login(self, user: str, password: str) -> Session | None:
        """A new session when ``user`` and ``password`` are right, else None."""
        good = verify_password(password, self._hash)  # always hash: the timing does not tell the user
        if not (good and hmac.compare_digest(user.encode(), self.user.encode())):
            return None
        session = Session(user, self._lifetime)
        with self._lock:
            self._expire()
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.expires)
                del self._sessions[oldest.token]
            self._sessions[session.token] = session
        return session

    def session(self, token: str | None) -> Session | None:
        """The live session of cookie value ``token``, or None."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires < time.monotonic():
                del self._sessions[token]
                return None
            return session

    def logout(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]
