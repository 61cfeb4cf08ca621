"""Options: the settings a reference, a provider or an extension reads from a URL.

Each extension declares the options it reads as ``options``, a class attribute
holding ``Option`` objects (cluster invokers, load balancers, ``govrpc.filter``
filters); the core reference options (``timeout``, ``cluster``, ``loadbalance``,
``retries``, ``idempotent``) and provider options (``weight``, ``disabled``) are
declared here. One ``Option`` both checks a value where it is written (a
configurator, ``client.proxy(...)``) and parses it for the extension that
reads it, so a setting is validated in one place::

    class FirstLoadBalancer(LoadBalancer):
        INDEX = Option.integer("first.index", 0, doc="which provider to pick")
        options = (INDEX,)

        def __init__(self, url=None):
            super().__init__(url)
            self.index = self.INDEX.read(url)

``known_options()`` finds every declared option through the installed
extensions (entry points); nothing here imports a strategy. Durations are
limited to ``MAX_SECONDS`` (one day): a deadline further away cannot be honoured.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from typing import Any, Callable, Mapping

from govrpc.exceptions import ConfigurationError, ExtensionNotFoundError
from govrpc.extension import extension_names, get_extension, loader
from govrpc.url import URL

__all__ = [
    "CLUSTER",
    "CONSUMER_OPTIONS",
    "DISABLED",
    "IDEMPOTENT",
    "LOADBALANCE",
    "MAX_SECONDS",
    "Option",
    "PROVIDER_OPTIONS",
    "RETRIES",
    "TIMEOUT",
    "MAX_MESSAGE_SIZE",
    "WEIGHT",
    "check_int",
    "check_options",
    "check_seconds",
    "declared_options",
    "known_options",
    "split_method_key",
]

log = logging.getLogger("govrpc.options")

MAX_SECONDS = 86400.0
"""The longest duration any option or call accepts (one day)."""

CONSUMER, PROVIDER = "consumer", "provider"


@dataclasses.dataclass(frozen=True, eq=False)
class Option:
    """One setting: its key, how its text is parsed, its default and what it means.

    ``parse`` turns the text into the value and raises ``ValueError`` (or
    ``ConfigurationError``) when the text is not allowed; a non-empty message
    says what is wrong, else ``expected`` is shown. ``per_method`` options can
    also be set as ``{method}.{name}``; ``side`` is ``consumer`` or ``provider``.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any = None
    doc: str = ""
    expected: str = "a valid value"
    per_method: bool = True
    side: str = CONSUMER
    canonical: Callable[[Any], str] | None = None

    def check(self, text: str, key: str | None = None) -> Any:
        """The value of ``text``; raises ``ConfigurationError`` naming ``key`` (default: the option)."""
        key = key or self.name
        try:
            return self.parse(text.strip())
        except (ValueError, ConfigurationError) as exc:
            error = type(exc) if isinstance(exc, ConfigurationError) else ConfigurationError
            detail = str(exc) if isinstance(exc, ConfigurationError) else (exc.args[0] if exc.args else "")
            if detail:
                said = detail.startswith((key, self.name))  # the parser named the option already
                raise error(detail if said else f"{key}: {detail}") from None
            raise error(f"{key} must be {self.expected}, not {text!r}") from None

    def text(self, value: str, key: str | None = None) -> str:
        """``value`` checked and written the way it is stored (``True`` -> ``true``)."""
        parsed = self.check(value, key)
        return self.canonical(parsed) if self.canonical is not None else value.strip()

    def read(self, url: URL | None, default: Any = ...) -> Any:
        """The value ``url`` gives this option, else ``default`` (the option's own when omitted)."""
        text = url.params.get(self.name) if url is not None else None
        if text is None or text == "":
            return self.default if default is ... else default
        try:
            return self.check(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} ({url.path})") from None  # type: ignore[union-attr]

    # -- the usual kinds ------------------------------------------------------------------
    @classmethod
    def integer(cls, name: str, default: int | None, *, low: int = 0, high: int | None = None,
                expected: str = "", doc: str = "", per_method: bool = True, side: str = CONSUMER) -> Option:
        """A whole number within ``[low, high]``."""
        expected = expected or (f"an integer >= {low}" if high is None else f"an integer from {low} to {high}")

        def parse(text: str) -> int:
            digits = text[1:] if text[:1] in "+-" else text
            if not digits.isdigit():
                raise ValueError()
            number = int(text)
            if number < low or (high is not None and number > high):
                raise ValueError()
            return number

        return cls(name, parse, default, doc, expected, per_method, side)

    @classmethod
    def number(cls, name: str, default: float | None, *, low: float, high: float, low_open: bool = False,
               expected: str = "", doc: str = "", per_method: bool = True) -> Option:
        """A finite number within ``[low, high]`` (``(low, high]`` when ``low_open``)."""
        expected = expected or f"a number {'>' if low_open else '>='} {low} and <= {high}"

        def parse(text: str) -> float:
            number = _finite(text)
            if number < low or (low_open and number == low) or number > high:
                raise ValueError()
            return number

        return cls(name, parse, default, doc, expected, per_method)

    @classmethod
    def seconds(cls, name: str, default: float | None, *, zero: bool = False, doc: str = "",
                per_method: bool = True) -> Option:
        """A duration: a positive number of seconds (``zero``: >= 0), at most ``MAX_SECONDS``."""
        what = "a number of seconds >= 0" if zero else "a positive number of seconds"
        return cls.number(name, default, low=0.0, high=MAX_SECONDS, low_open=not zero,
                          expected=f"{what} (at most {MAX_SECONDS:.0f}, one day)", doc=doc, per_method=per_method)

    @classmethod
    def boolean(cls, name: str, default: bool | None, *, doc: str = "", per_method: bool = True,
                side: str = CONSUMER) -> Option:
        def parse(text: str) -> bool:
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError()
            return lowered == "true"

        return cls(name, parse, default, doc, "true or false", per_method, side,
                   canonical=lambda value: "true" if value else "false")

    @classmethod
    def json(cls, name: str, *, doc: str = "") -> Option:
        """A JSON value (default null)."""
        def parse(text: str) -> Any:
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not JSON: {exc}") from None

        return cls(name, parse, None, doc, "JSON")

    @classmethod
    def extension(cls, name: str, group: str, default: str, *, doc: str = "") -> Option:
        """The name of an installed extension of ``group``."""
        def parse(text: str) -> str:
            names = extension_names(group)
            if text not in names:
                raise ExtensionNotFoundError(
                    f"no {group} extension named {text!r}; installed: {', '.join(names) or 'none'}")
            return text

        return cls(name, parse, default, doc, f"the name of a {group} extension")


def _finite(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError() from None
    if not math.isfinite(number):
        raise ValueError()
    return number


def check_options(params: Mapping[str, Any]) -> dict[str, str]:
    """``params`` (consumer options given in code) as URL text, each known option checked.

    ``True`` becomes ``true``; ``None`` values are left out; keys no option owns
    (router options such as ``tag``) pass unchanged. Raises ``ConfigurationError``
    naming the option.
    """
    options = known_options()
    checked: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        option = options.get(split_method_key(key, options)[1])
        checked[key] = option.text(text, key) if option is not None else text
    return checked


def check_seconds(value: Any, name: str) -> float:
    """``value`` as a duration for ``name`` (> 0, at most ``MAX_SECONDS``), or ``ConfigurationError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(TIMEOUT.check(str(value), name))


MAX_MESSAGE_SIZE = 2**31 - 1
"""The largest ``max_message_size`` a Server or Client accepts: grpc's lengths are signed 32-bit."""


def check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is a whole number in ``[minimum, maximum]``, else ``ConfigurationError`` naming ``name``.

    For constructor arguments: ``True`` is not a number here, text is not parsed, and
    nothing is clamped or wrapped (``port=70000`` is an error, not port 4464).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigurationError(f"{name} must be a whole number {bounds}, not {value!r}")
    return value


# -- the core options ---------------------------------------------------------------------
TIMEOUT = Option.seconds("timeout", None, doc="deadline of a call, seconds (the client's default when unset)")
CLUSTER = Option.extension("cluster", "govrpc.cluster", "failover", doc="fault-tolerance strategy")
LOADBALANCE = Option.extension("loadbalance", "govrpc.loadbalance", "random", doc="load balancer")
RETRIES = Option.integer("retries", 2, doc="extra attempts after a provider failure")
IDEMPOTENT = Option.boolean("idempotent", None, doc="overrides the provider's idempotency marker")
WEIGHT = Option.integer("weight", 100, low=1, expected="a positive integer (use disabled = true to stop traffic)",
                        doc="share of traffic (use disabled = true to stop it)",
                        per_method=False, side=PROVIDER)
DISABLED = Option.boolean("disabled", False, doc="true: consumers stop calling this provider",
                          per_method=False, side=PROVIDER)

CONSUMER_OPTIONS = (TIMEOUT, CLUSTER, LOADBALANCE, RETRIES, IDEMPOTENT)
PROVIDER_OPTIONS = (WEIGHT, DISABLED)
EXTENSION_GROUPS = ("govrpc.cluster", "govrpc.loadbalance", "govrpc.filter")
"""The groups whose extensions declare options."""


def declared_options(extension: Any) -> tuple[Option, ...]:
    """The options an extension class (or instance) declares: ``options`` along its MRO."""
    klass = extension if isinstance(extension, type) else type(extension)
    found: dict[str, Option] = {}
    for owner in klass.__mro__:
        for option in vars(owner).get("options", ()) or ():
            if isinstance(option, Option):
                found.setdefault(option.name, option)
    return tuple(found.values())


_cache_lock = threading.Lock()
_cache: tuple[tuple[Any, ...], Mapping[str, Option]] | None = None


def known_options() -> Mapping[str, Option]:
    """Every option name -> its ``Option``: the core ones and those of every installed extension.

    Read once per set of installed extensions (``govrpc.extension.reset_cache`` starts over).
    An extension that fails to load declares nothing (logged); the first declaration of a name wins.
    """
    global _cache
    stamp = tuple(loader(group) for group in EXTENSION_GROUPS)  # new loaders after reset_cache()
    cached = _cache
    if cached is not None and all(a is b for a, b in zip(cached[0], stamp)):
        return cached[1]
    with _cache_lock:
        found: dict[str, Option] = {o.name: o for o in (*CONSUMER_OPTIONS, *PROVIDER_OPTIONS)}
        for group in EXTENSION_GROUPS:
            for name in extension_names(group):
                try:
                    extension = get_extension(group, name)
                except ConfigurationError as exc:
                    log.warning("%s; its options are unknown", exc)
                    continue
                for option in declared_options(extension):
                    found.setdefault(option.name, option)
        options = dict(sorted(found.items()))
        _cache = (stamp, options)
    return options


def split_method_key(key: str, options: Mapping[str, Option] | None = None) -> tuple[str | None, str]:
    """``"find.loadbalance"`` -> ``("find", "loadbalance")``; ``"retries"`` -> ``(None, "retries")``.

    A key that is itself an option's name (``failcache.timeout``) is never a method's.
    """
    options = known_options() if options is None else options
    if key in options:
        return None, key
    method, _, rest = key.partition(".")
    option = options.get(rest)
    if option is not None and option.per_method and method.isidentifier():
        return method, rest
    return None, key

