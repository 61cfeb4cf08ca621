"""Failover and failback: try another provider when one fails in a way another may not.

Failover (the default) retries on a provider not tried yet, listing providers
again before each attempt, for at most ``retries`` extra attempts (default 2),
all within the call's one deadline (each attempt within ``attempt.timeout`` when set), with a jittered exponential pause between
attempts (tenacity's full-jitter wait). It retries only:

- failures marked ``retryable`` (transport failures, timeouts, overload), never
  business exceptions;
- idempotent methods (the provider publishes ``{method}.idempotent=true``; the
  consumer's ``idempotent`` option overrides it), unless the request surely
  never reached a provider (``surely_not_sent``, e.g. connection refused);
- while the retry budget (gRPC's retry throttling) has tokens to spare; an attempt that
  surely never reached a provider takes none (gRPC's transparent retries).

Failback lets the status code decide: return a default, raise, or retry as failover.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, ClassVar, Sequence

import tenacity

from govrpc.cluster.base import ClusterInvoker
from govrpc.cluster.directory import Directory
from govrpc.cluster.drive import drive
from govrpc.cluster.loadbalance import LoadBalancer
from govrpc.cluster.policy import Attempt, CallState, GiveUp, Return, Step, Wait, give_up
from govrpc.context import current_recorder
from govrpc.exceptions import CallTimeoutError, ConfigurationError, GovRpcError, NoProviderError
from govrpc.invocation import Invocation, Invoker, Result
from govrpc.options import IDEMPOTENT, RETRIES, Option
from govrpc.url import URL

__all__ = ["FailbackClusterInvoker", "FailoverClusterInvoker", "RetryBudget", "STATUS_CODES"]

log = logging.getLogger("govrpc.cluster")

STATUS_CODES = frozenset({
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
})


class RetryBudget:
    """gRPC retry throttling: a token bucket that stops retries while failures are frequent.

    Starts full with ``max_tokens``; every failed attempt takes one token, every
    success gives back ``ratio``; retries are allowed only while more than half
    the tokens are left. Shared by every method of a reference.
    """

    MAX_TOKENS = Option.number("retry.budget", 100.0, low=0.0, high=1e6, low_open=True, per_method=False,
                               doc="tokens of the reference's retry budget")
    RATIO = Option.number("retry.budget.ratio", 0.1, low=0.0, high=1e6, low_open=True, per_method=False,
                          doc="tokens a success gives back")
    options: ClassVar[tuple[Option, ...]] = (MAX_TOKENS, RATIO)

    def __init__(self, max_tokens: float = 100.0, ratio: float = 0.1) -> None:
        if max_tokens <= 0 or ratio <= 0:
            raise ConfigurationError(
                f"retry.budget ({max_tokens}) and retry.budget.ratio ({ratio}) must be positive")
        self.max_tokens = float(max_tokens)
        self.ratio = float(ratio)
        self.tokens = self.max_tokens
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: URL) -> RetryBudget:
        return cls(cls.MAX_TOKENS.read(url), cls.RATIO.read(url))

    def on_success(self) -> None:
        if self.tokens < self.max_tokens:  # full bucket (the usual case): nothing to do, no lock
            with self._lock:
                self.tokens = min(self.max_tokens, self.tokens + self.ratio)

    def on_failure(self) -> None:
        with self._lock:
            self.tokens = max(0.0, self.tokens - 1.0)

    @property
    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2


class _Attempt:
    """The one field of tenacity's ``RetryCallState`` its wait strategies read."""

    __slots__ = ("attempt_number",)

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


class FailoverClusterInvoker(ClusterInvoker):
    """Up to ``retries`` extra attempts (default 2), each on a provider not tried yet.

    URL options: ``retries``, ``idempotent`` (override the provider's marker),
    ``retry.backoff`` (s, default 0.01) and ``retry.backoff.max`` (s, default
    0.2): the pause before attempt n is uniform in [0, min(backoff·2^(n-1), max)];
    ``retry.budget`` (tokens, default 100) and ``retry.budget.ratio`` (0.1);
    ``attempt.timeout`` (s, default: the call's whole deadline) bounds each attempt, so a
    provider that hangs leaves time to try another within the call's deadline.
    The error after the last attempt has the last failure's type and names
    every provider tried and why no further attempt was made.
    """

    BACKOFF = Option.seconds("retry.backoff", 0.01, zero=True, doc="base pause between attempts, seconds")
    BACKOFF_MAX = Option.seconds("retry.backoff.max", 0.2, zero=True, doc="longest pause between attempts")
    ATTEMPT_TIMEOUT = Option.seconds("attempt.timeout", None,
                                     doc="seconds one attempt may take within the call's deadline (default: "
                                         "all of it): a provider that hangs leaves time to fail over")
    options = (RETRIES, IDEMPOTENT, BACKOFF, BACKOFF_MAX, ATTEMPT_TIMEOUT, *RetryBudget.options)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.retries: int = RETRIES.read(url)
        self.idempotent: bool | None = IDEMPOTENT.read(url)
        backoff = self.BACKOFF.read(url)
        backoff_max = self.BACKOFF_MAX.read(url)
        if backoff_max < backoff:
            raise ConfigurationError(
                f"retry.backoff ({backoff}) must be >= 0 and <= retry.backoff.max ({backoff_max})")
        self.wait = tenacity.wait_random_exponential(multiplier=backoff, max=backoff_max)
        self.budget = RetryBudget.from_url(url)
        self.attempt_timeout: float | None = self.ATTEMPT_TIMEOUT.read(url)

    def future(self, invocation: Invocation, run: Callable[[Callable[[], Any]], Future[Any]]) -> Future[Any] | None:
        if self.attempt_timeout is not None:  # the first attempt has a deadline of its own: on a worker
            return None
        return super().future(invocation, run)

    def for_attempt(self, invocation: Invocation) -> Invocation:
        """``invocation`` with the deadline of one attempt when ``attempt.timeout`` is set."""
        if self.attempt_timeout is None:
            return invocation
        deadline = min(invocation.deadline, time.monotonic() + self.attempt_timeout)
        return dataclasses.replace(invocation, deadline=deadline)

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        # the sync driver's first steps inlined (what ``decide`` says for a fresh call and for a
        # success), so the usual call costs no state object; a failure goes on in ``drive``
        invoker = self.loadbalance.select(invokers, invocation)
        try:
            result = self.call(invoker, invocation if self.attempt_timeout is None else self.for_attempt(invocation))
        except GovRpcError as exc:
            return drive(self, CallState(invocation, invokers, [invoker], Result(exception=exc)))
        budget = self.budget
        if budget.tokens < budget.max_tokens:  # a full bucket (the usual case) has nothing to add
            budget.on_success()
        return result

    def is_idempotent(self, invocation: Invocation, invoker: Invoker) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return invoker.url.params.get(f"{invocation.method}.idempotent") == "true"

    def decide(self, state: CallState) -> Step:
        """Attempt one provider; after a failure: give up (with why), wait the backoff, or attempt
        a provider not tried yet, listed again."""
        invocation, outcome = state.invocation, state.outcome
        if outcome is None:
            return Attempt(self.loadbalance.select(state.invokers, invocation))
        exc = outcome.exception
        if exc is None:
            self.budget.on_success()
            return Return(outcome.value)
        if not isinstance(exc, GovRpcError):  # a business error is an answer
            return GiveUp(exc)
        tried = state.tried
        if not state.waited:
            try:
                reason = self._refusal(invocation, tried[-1], exc)
            except BaseException as error:  # noqa: BLE001 - not retryable: raised as it is
                return GiveUp(error)
            if len(tried) > self.retries:
                return give_up(self._final(invocation, tried, exc, f"{self.retries} retries are used up"), exc)
            recorder = current_recorder()
            if reason:
                if recorder is not None:
                    recorder.event("govrpc.no_retry", {"govrpc.reason": reason, "govrpc.attempts": len(tried)})
                return give_up(self._final(invocation, tried, exc, reason), exc)
            if recorder is not None:
                recorder.retry(invocation, len(tried) + 1, tried[-1].url.address, exc)
            log.debug("%s failed on %s (%s: %s); attempt %d of %d", invocation, tried[-1].url.address,
                      type(exc).__name__, exc, len(tried) + 1, self.retries + 1)
            pause = min(self.wait(_Attempt(len(tried))),  # type: ignore[arg-type]
                        max(invocation.remaining(), 0.0))
            if pause > 0:
                return Wait(pause)
        if invocation.remaining() <= 0:
            return give_up(self._final(invocation, tried, exc, "the deadline passed", timeout=True), exc)
        try:
            listed = self.list(invocation)
        except NoProviderError:  # every provider left meanwhile: say so with what was tried
            listed = ()
        invokers = [i for i in listed if i not in tried]
        if not invokers:
            return give_up(self._final(invocation, tried, exc, "no other provider is left"), exc)
        return Attempt(self.loadbalance.select(invokers, invocation))

    def _refusal(self, invocation: Invocation, invoker: Invoker, exc: GovRpcError) -> str:
        """Why ``exc`` must not be retried ("" if it may); a non-retryable error is raised as is."""
        if not exc.retryable:
            raise exc
        if exc.surely_not_sent:
            # never reached a provider (connection refused): a retry adds no load anywhere, so, as
            # gRPC's transparent retries, it is outside the budget; else a few SIGKILLed providers
            # still listed drain it and every call that meets one fails
            return "the deadline passed" if invocation.remaining() <= 0 else ""
        self.budget.on_failure()
        if not self.is_idempotent(invocation, invoker):
            return (f"{invocation.method} is not idempotent and the request may have reached the provider "
                    f"(mark it @govrpc.method(idempotent=True) to allow retries)")
        if not self.budget.allows_retry:
            return "the retry budget is exhausted (too many recent failures)"
        if invocation.remaining() <= 0:
            return "the deadline passed"
        return ""

    def _final(self, invocation: Invocation, tried: list[Invoker], exc: GovRpcError, reason: str,
               timeout: bool = False) -> GovRpcError:
        addresses = ", ".join(i.url.address for i in tried)
        message = (f"{invocation} failed on {len(tried)} provider(s) [{addresses}]; no retry because {reason}; "
                   f"last error: {exc.message or exc}")
        timed_out = timeout or "deadline passed" in reason
        cls = CallTimeoutError if timed_out else type(exc)
        try:
            error = cls(message, invocation=invocation)
        except TypeError:  # an error class with another constructor: keep it as it is
            return exc
        if error.code != exc.code and not timed_out:
            error.code = exc.code  # type: ignore[misc]
        return error


RETRY, RAISE, DEFAULT = "retry", "raise", "default"
DEFAULT_ACTIONS = {"UNAVAILABLE": RETRY, "DEADLINE_EXCEEDED": DEFAULT, "RESOURCE_EXHAUSTED": DEFAULT, "*": RAISE}


def parse_actions(text: str) -> dict[str, str]:
    """``"UNAVAILABLE:retry,NOT_FOUND:default,*:raise"`` -> mapping; raises ``ConfigurationError``."""
    actions: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, sep, action = part.partition(":")
        code, action = code.strip().upper(), action.strip().lower()
        if not sep or (code != "*" and code not in STATUS_CODES):
            raise ConfigurationError(
                f"failback.codes: {part!r} is not CODE:action with a gRPC status code name "
                f"({', '.join(sorted(STATUS_CODES))}) or *")
        if action not in (RETRY, RAISE, DEFAULT):
            raise ConfigurationError(f"failback.codes: action {action!r} in {part!r} is not retry, raise or default")
        actions[code] = action
    return actions


class FailbackClusterInvoker(FailoverClusterInvoker):
    """The provider's status code decides: ``retry`` (as failover), ``raise``, or ``default``.

    URL options: ``failback.codes`` (``CODE:action`` pairs, merged over the
    defaults ``UNAVAILABLE:retry,DEADLINE_EXCEEDED:default,RESOURCE_EXHAUSTED:default,*:raise``;
    a business exception's code is ``UNKNOWN``) and ``failback.default`` (the
    value returned, as JSON; default null), plus failover's options for ``retry``.
    When the retries fail too, the last error's code decides again (``retry`` then raises).
    """

    CODES = Option("failback.codes", parse_actions, {}, "CODE:action pairs merged over the defaults",
                   "CODE:action pairs (retry, raise or default)")
    DEFAULT_VALUE = Option.json("failback.default", doc="the value returned for a 'default' code (JSON)")
    options = (CODES, DEFAULT_VALUE)

    def __init__(self, directory: Directory, loadbalance: LoadBalancer, url: URL) -> None:
        super().__init__(directory, loadbalance, url)
        self.actions = {**DEFAULT_ACTIONS, **self.CODES.read(url)}
        self.default = self.DEFAULT_VALUE.read(url)

    def action(self, exc: BaseException) -> str:
        code = exc.code if isinstance(exc, GovRpcError) else "UNKNOWN"
        return self.actions.get(code, self.actions["*"])

    def do_invoke(self, invocation: Invocation, invokers: Sequence[Invoker]) -> Any:
        return drive(self, CallState(invocation, invokers))

    def decide(self, state: CallState) -> Step:
        """The first failure's code picks: retry (failover's steps), raise, or the default."""
        outcome = state.outcome
        if outcome is None or outcome.exception is None:
            return super().decide(state)
        exc = outcome.exception
        if state.mode != RETRY:
            action = self.action(exc)
            if action == RETRY and isinstance(exc, GovRpcError) and exc.retryable:
                state.mode = RETRY
            elif action == DEFAULT:
                return self._default(state, exc)
            else:
                return GiveUp(exc)
        step = super().decide(state)
        if isinstance(step, GiveUp) and isinstance(step.error, GovRpcError) and self.action(step.error) == DEFAULT:
            return self._default(state, step.error)
        return step

    def _default(self, state: CallState, exc: BaseException) -> Step:
        log.info("%s failed on %s with %s; failback returns the default", state.invocation,
                 state.tried[-1].url.address, self.action_code(exc))
        return Return(self.default)

    @staticmethod
    def action_code(exc: BaseException) -> str:
        return exc.code if isinstance(exc, GovRpcError) else f"UNKNOWN ({type(exc).__name__})"
