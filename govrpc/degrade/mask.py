"""Mask degradation and fallbacks: what a consumer does instead of (or after) a call.

Dubbo's spelling, as the configurator key ``mock`` (``{method}.mock`` for one method)
or ``client.proxy(..., mock=...)``::

    mock = force:return null              # never call the provider; return None
    find.mock = fail:return {"items": []} # only when the call failed (after the cluster's retries)
    mock = force:throw RateLimitedError   # a govrpc error name, or a registered safe exception
    mock = fail:mock                      # call the local @govrpc.mock class

``force`` never reaches a provider; ``fail`` (the default when no mode is written)
acts when the call fails with a govrpc call error (no provider, open breaker,
transport failure, timeout, limit refusal) after the cluster's own retries; a
business exception of the provider is an answer and passes unchanged. ``fail``
is also the fallback of a circuit breaker: an open breaker's ``CircuitOpenError``
is such a failure. Without a mask the error is raised (the third fallback).

``@govrpc.mock("demo.Greeter", version=..., group=...)`` marks a local class that
stands in for the service; its instance (made once, no arguments) answers ``mock`` masks.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import threading
from typing import Any, Callable, TypeVar

from govrpc.exceptions import (
    ConfigurationError,
    GovRpcError,
    RemoteError,
    RpcError,
    error_class,
    safe_exception_class,
)
from govrpc.invocation import Invocation
from govrpc.options import Option
from govrpc.url import URL, ServiceKey

__all__ = ["MASK", "MaskSpec", "find_mock", "mock", "parse_mask"]

FORCE, FAIL = "force", "fail"
RETURN, THROW, MOCK = "return", "throw", "mock"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """One parsed mask: ``mode`` (force or fail), ``action`` (return, throw, mock) and its argument."""

    mode: str
    action: str
    value: Any = None
    error: type[BaseException] | None = None
    text: str = ""

    @property
    def force(self) -> bool:
        return self.mode == FORCE

    def act(self, invocation: Invocation, mock_instance: Any, cause: BaseException | None = None) -> Any:
        """Answer ``invocation`` as the mask says (return the value, raise the error, call the mock)."""
        if self.action == RETURN:
            value = self.value
            return copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        if self.action == THROW:
            assert self.error is not None
            message = f"{invocation}: degraded by mask {self.text!r}"
            error = self.error(message, invocation=invocation) if issubclass(self.error, GovRpcError) \
                else self.error(message)
            raise error from cause
        method = getattr(mock_instance, invocation.method, None)
        if not callable(method):
            raise ConfigurationError(f"{invocation}: mask {self.text!r} calls the mock "
                                     f"{type(mock_instance).__name__}, which has no method {invocation.method!r}",
                                     invocation=invocation)
        return method(*invocation.args, **invocation.kwargs)


def _error(name: str) -> type[BaseException]:
    """The exception class a ``throw`` names: a govrpc error, or a registered safe exception."""
    cls: type[BaseException] | None = error_class(name)
    if cls is not None and cls is not RemoteError and cls is not GovRpcError:
        return cls
    if cls is None:
        qualname = name if "." in name else f"builtins.{name}"
        cls = safe_exception_class(qualname)
        if cls is None and "." in name:  # the writing process may not have imported it yet
            module = name.rsplit(".", 1)[0]
            try:
                importlib.import_module(module)
            except ImportError:
                pass
            cls = safe_exception_class(name)
        if cls is not None:
            return cls
    raise ValueError(f"throw {name!r}: not a govrpc error name (such as RateLimitedError) nor a registered "
                     f"safe exception (module.Class, see govrpc.safe_exception)")


def parse_mask(text: str) -> MaskSpec:
    """``force:return null`` -> ``MaskSpec``; raises ``ValueError`` saying what is wrong."""
    body = text.strip()
    mode = FAIL
    head, sep, rest = body.partition(":")
    if sep and head.strip().lower() in (FORCE, FAIL):
        mode, body = head.strip().lower(), rest.strip()
    action, _, argument = body.partition(" ")
    action, argument = action.strip().lower(), argument.strip()
    if action == RETURN:
        if not argument:
            return MaskSpec(mode, RETURN, None, text=text)
        try:
            value = json.loads(argument)
        except ValueError as exc:
            raise ValueError(f"return {argument!r}: the value is not JSON ({exc})") from None
        return MaskSpec(mode, RETURN, value, text=text)
    if action == THROW:
        if not argument:
            raise ValueError("throw needs an error name (a govrpc error or a registered safe exception)")
        return MaskSpec(mode, THROW, error=_error(argument), text=text)
    if action == MOCK and not argument:
        return MaskSpec(mode, MOCK, text=text)
    raise ValueError(f"{text!r} is not [force:|fail:] return JSON | throw ErrorName | mock")


MASK = Option("mock", parse_mask, None, "mask degradation: [force:|fail:] return JSON | throw Error | mock",
              "[force:|fail:] return JSON | throw ErrorName | mock",
              canonical=lambda spec: spec.text.strip())


# -- mocks ------------------------------------------------------------------------------------------
_MOCKS: dict[ServiceKey, type] = {}
_INSTANCES: dict[type, Any] = {}
_lock = threading.Lock()


def mock(service: str, *, version: str = "", group: str = "") -> Callable[[type[T]], type[T]]:
    """Mark a class as the local stand-in for ``service`` (used by ``mock`` masks and fallbacks).

    Its instance is made once, without arguments, when a mask first needs it.
    """
    if not isinstance(service, str) or not service:
        raise ConfigurationError(f"govrpc.mock: the service name must be a non-empty string, not {service!r}")

    def mark(cls: type[T]) -> type[T]:
        if not isinstance(cls, type):
            raise ConfigurationError(f"govrpc.mock({service!r}) marks a class, not {cls!r}")
        with _lock:
            _MOCKS[ServiceKey(service, version, group)] = cls
            _INSTANCES.pop(cls, None)
        return cls

    return mark


def find_mock(key: ServiceKey) -> Any:
    """The mock instance for ``key`` (exact version and group first, then the service's unversioned one),
    or None."""
    cls = _MOCKS.get(key) or _MOCKS.get(ServiceKey(key.service, key.version, "")) \
        or _MOCKS.get(ServiceKey(key.service, "", ""))
    if cls is None:
        return None
    instance = _INSTANCES.get(cls)
    if instance is None:
        with _lock:
            instance = _INSTANCES.get(cls)
            if instance is None:
                instance = _INSTANCES[cls] = cls()
    return instance


def mock_class_for(service: str) -> type | None:
    """Any mock class this process marked for ``service`` (what ``Admin.mask`` can check)."""
    return next((cls for key, cls in _MOCKS.items() if key.service == service), None)


def is_failure(exc: BaseException) -> bool:
    """A failure a ``fail`` mask answers: a govrpc call error other than a provider's business error."""
    return isinstance(exc, RpcError) and not isinstance(exc, RemoteError)


def masks_of(url: URL) -> tuple[MaskSpec | None, dict[str, MaskSpec]]:
    """The service-wide mask and the per-method masks ``url`` configures."""
    default_text = url.params.get("mock")
    default = MASK.check(default_text) if default_text else None
    methods: dict[str, MaskSpec] = {}
    for key, value in url.params.items():
        if key.endswith(".mock") and value:
            method = key[:-len(".mock")]
            if method.isidentifier():
                methods[method] = MASK.check(value, key)
    return default, methods
