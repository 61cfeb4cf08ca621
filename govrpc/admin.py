"""``govrpc.Admin``: what an operator sees and changes in a running system.

Reads the registry (services, providers, consumers) and writes the persistent
rule nodes (``configurators``, ``routers``) that every process watches. Works
the same on every registry.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Mapping, Sequence

from govrpc.configurator import parse_configurator
from govrpc.degrade.mask import MASK, MOCK, mock_class_for
from govrpc.degrade.publish import BREAKERS
from govrpc.degrade.switches import SWITCH_SERVICE, SWITCHES, check_switch, switch_text
from govrpc.exceptions import ConfigurationError, GovRpcError
from govrpc.invocation import Invocation
from govrpc.monitor.health import HealthSummary, read_summaries
from govrpc.registry.base import (
    CONFIGURATORS,
    CONSUMERS,
    MONITORS,
    PROVIDERS,
    ROUTERS,
    Registry,
    acquire_registry,
    release_registry,
)
from govrpc.router.chain import RouteStep, compile_rule, explain_route
from govrpc.url import CONSUMER, PROVIDER_SCHEMES, URL, ServiceKey

__all__ = ["Admin", "MASK_RULE"]

log = logging.getLogger("govrpc.admin")

MASK_RULE = "mask"
"""The configurator that holds a service's masks (``mock`` / ``{method}.mock`` lines)."""


class Admin:
    """Operator's handle on a registry: ``Admin("zookeeper://127.0.0.1:2181")``."""

    def __init__(self, registry: str | Registry | None = None) -> None:
        self._owned = not isinstance(registry, Registry)
        self.registry = acquire_registry(registry)

    def services(self) -> list[str]:
        """Every service name in the registry, sorted."""
        return self.registry.services()

    def providers(self, service: str) -> list[URL]:
        """The live provider URLs of ``service``."""
        return sorted(self.registry.lookup(service, PROVIDERS), key=str)

    def consumers(self, service: str) -> list[URL]:
        """The live consumer URLs of ``service``."""
        return sorted(self.registry.lookup(service, CONSUMERS), key=str)

    def rules(self, service: str, category: str) -> dict[str, str]:
        """The stored rules of ``service`` in ``category`` (``configurators`` or ``routers``)."""
        return self.registry.rules(service, category)

    def put_rule(self, service: str, category: str, name: str, text: str) -> None:
        """Check and store a rule: route rules (``routers``) and overrides (``configurators``).

        Raises ``RuleError`` naming the position of the mistake; nothing is stored then.
        """
        self.check_rule(category, text, name)
        self.registry.put_rule(service, category, name, text)

    def check_rule(self, category: str, text: str, name: str = "") -> None:
        """Parse a rule as ``put_rule`` would, storing nothing; raises ``RuleError`` with the position."""
        if category == ROUTERS:
            compile_rule(text, name)
        elif category == CONFIGURATORS:
            parse_configurator(text, name)

    def set_override(self, service: str, name: str, text: str) -> None:
        """Check and store configurator ``name`` of ``service`` (see ``govrpc.configurator``)."""
        self.put_rule(service, CONFIGURATORS, name, text)

    def accept_tokens(self, service: str, tokens: Sequence[str], *, addresses: Sequence[str] = (),
                      name: str = "token") -> None:
        """Make the providers of ``service`` (those at ``addresses``, ``host:port``, when given) accept ``tokens``.

        Only their SHA-256 digests are written (configurator ``name``, key ``token.sha256``):
        the registry, readable by every process, never holds a token. List old and new while
        consumers rotate (``Client.rotate_token``), then the new one alone; delete the rule to
        fall back on each server's own tokens. Raises ``ConfigurationError`` for a bad token.
        """
        from govrpc.security import TOKEN_DIGESTS, check_tokens, token_digest

        digests = ",".join(token_digest(t) for t in check_tokens(list(tokens)))
        scope = f"address = {','.join(addresses)}\n" if addresses else ""
        self.set_override(service, name, f"{scope}{TOKEN_DIGESTS.name} = {digests}\n")

    # -- route rules -----------------------------------------------------------------
    def add_route(self, service: str, name: str, text: str) -> None:
        """Check and store route rule ``name`` of ``service`` (replacing one of that name).

        Raises ``RuleError`` naming the position of the mistake; nothing is stored then.
        """
        self.put_rule(service, ROUTERS, name, text)

    def routes(self, service: str) -> dict[str, str]:
        """The route rules of ``service`` stored in the registry: name -> text."""
        return self.registry.rules(service, ROUTERS)

    def remove_route(self, service: str, name: str) -> None:
        """Delete route rule ``name`` of ``service`` (an unknown name is ignored)."""
        self.registry.delete_rule(service, ROUTERS, name)

    def explain_route(self, service: str, method: str, *, application: str = "govrpc-consumer",
                      host: str = "127.0.0.1", args: Sequence[Any] = (),
                      attachments: Mapping[str, str] | None = None,
                      consumer: Mapping[str, str] | None = None,
                      rules: Mapping[str, str] | None = None) -> list[RouteStep]:
        """Dry run: for a call of ``method`` from this consumer, what each router keeps and why.

        ``rules`` (name -> text) replaces the stored route rules: what a rule would do before it is saved.
        """
        params = {"application": application, **(consumer or {})}
        consumer_url = URL(CONSUMER, host, 0, service, params)
        key = ServiceKey(service, params.get("version", ""), params.get("group", ""))
        providers = [u for u in self.registry.lookup(service, PROVIDERS)
                     if u.scheme in PROVIDER_SCHEMES and (key.matches(u) or not (key.version or key.group))]
        invocation = Invocation(key, method, tuple(args), {}, dict(attachments or {}))
        stored = self.routes(service) if rules is None else dict(rules)
        return explain_route(consumer_url, sorted(providers, key=str), stored, invocation)

    # -- the monitor centre ----------------------------------------------------------------
    def health(self, service: str | None = None, *, stale: bool = False,
               side: str | None = "provider") -> dict[str, list[HealthSummary]]:
        """Service -> the health summaries its providers publish (``govrpc.monitor.health``), by
        address; garbage is left out, and so are stale ones unless ``stale`` is True. ``side``
        ``consumer``: the summaries its consumers publish (``Client(report_interval=...)``);
        None: both, providers first."""
        if side not in ("provider", "consumer", None):
            raise ConfigurationError(f"side must be 'provider', 'consumer' or None, not {side!r}")
        services = [service] if service else self.services()
        found: dict[str, list[HealthSummary]] = {}
        for name in services:
            texts = self.registry.rules(name, MONITORS)
            summaries = [h for s in (("provider", "consumer") if side is None else (side,))
                         for h in sorted(read_summaries(texts, where=f"{name} monitors", fresh_only=not stale,
                                                        side=s).values(), key=lambda h: h.address)]
            if summaries:
                found[name] = summaries
        return found

    # -- flow control ----------------------------------------------------------------
    def flow(self, service: str) -> dict[str, dict[str, str]]:
        """The flow settings of ``service``: configurator name -> its flow keys (scope keys
        ``address`` / ``application`` included), and ``provider host:port`` -> the flow keys
        each live provider published (``Server.add(..., tps=...)``)."""
        from govrpc.flowctl.rules import flow_params
        from govrpc.flowctl.settings import FLOW_KEYS
        from govrpc.options import split_method_key

        found: dict[str, dict[str, str]] = {}
        for name, text in sorted(self.registry.rules(service, CONFIGURATORS).items()):
            try:
                params = flow_params(text)
                rule = parse_configurator(text)
            except GovRpcError:
                continue  # a broken rule holds no setting in force
            if params:
                scope = {"address": ",".join(sorted(rule.addresses))} if rule.addresses else {}
                scope.update({"application": rule.application} if rule.application else {})
                found[name] = {**scope, **params}
        for url in self.providers(service):
            published = {k: v for k, v in url.params.items() if split_method_key(k)[1] in FLOW_KEYS}
            if published:
                found[f"provider {url.address}"] = published
        return found

    def set_flow(self, service: str, settings: Mapping[str, Any], *, application: str = "",
                 address: str = "") -> None:
        """Set flow keys (``{"tps": 200, "find.concurrency": 4}``) for every provider of ``service``,
        one provider (``address``) or the consumers of one ``application``; keys already set in
        that scope stay unless given. Raises ``ConfigurationError`` naming a bad key or value."""
        from govrpc.flowctl.rules import check_flow_settings, flow_rule_name, render_flow_rule

        name = flow_rule_name(application, address)
        checked = check_flow_settings(settings)
        params = {**self._flow_of(service, name), **checked}
        self.put_rule(service, CONFIGURATORS, name, render_flow_rule(params, application, address))

    def remove_flow(self, service: str, keys: Sequence[str] = (), *, application: str = "",
                    address: str = "") -> None:
        """Remove flow ``keys`` of one scope (all of them when ``keys`` is empty)."""
        from govrpc.flowctl.rules import flow_rule_name, render_flow_rule

        name = flow_rule_name(application, address)
        if name not in self.registry.rules(service, CONFIGURATORS):
            return
        params = {k: v for k, v in self._flow_of(service, name).items() if keys and k not in keys}
        if params:
            self.put_rule(service, CONFIGURATORS, name, render_flow_rule(params, application, address))
        else:
            self.registry.delete_rule(service, CONFIGURATORS, name)

    def _flow_of(self, service: str, name: str) -> dict[str, str]:
        """The flow keys stored in configurator ``name`` (none if it is missing or broken: it holds
        no setting in force, and what is written now replaces it)."""
        from govrpc.flowctl.rules import flow_params

        current = self.registry.rules(service, CONFIGURATORS).get(name)
        try:
            return flow_params(current) if current else {}
        except GovRpcError:
            return {}
    # -- degradation: masks, switches, breaker states ---------------------------------------
    def masks(self, service: str) -> dict[str, str]:
        """The masks of ``service``: ``mock`` / ``{method}.mock`` -> text (from configurator ``mask``;
        a node that does not parse holds none)."""
        text = self.registry.rules(service, CONFIGURATORS).get(MASK_RULE)
        if not text:
            return {}
        try:
            params = parse_configurator(text, MASK_RULE).params
        except ConfigurationError as exc:  # written by hand around Admin: the next mask() replaces it
            log.warning("configurator %s/%s does not parse (%s); treated as holding no mask", service, MASK_RULE, exc)
            return {}
        return {k: v for k, v in params.items() if k == "mock" or k.endswith(".mock")}

    def mask(self, service: str, action: str, *, methods: Iterable[str] | None = None, force: bool = True) -> None:
        """Mask ``service`` (or only ``methods``) for every consumer: ``action`` is ``return null``,
        ``return JSON``, ``throw ErrorName`` or ``mock``; ``force`` (the provider is never called) or
        not (only when the call fails). Raises ``ConfigurationError`` / ``RuleError`` naming the key;
        nothing is stored then."""
        if not isinstance(action, str) or ":" in action.split(" ", 1)[0]:
            raise ConfigurationError(f"mask action {action!r}: give return/throw/mock and force=True/False")
        names = list(methods) if methods is not None else None
        if names is not None and (not names or not all(isinstance(m, str) and m.isidentifier() for m in names)):
            raise ConfigurationError(f"mask methods must be method names, not {methods!r}")
        keys = [f"{m}.mock" for m in names] if names is not None else ["mock"]
        text = f"{'force' if force else 'fail'}:{action.strip()}"
        for key in keys:
            spec = MASK.check(text, key)
            cls = mock_class_for(service) if spec.action == MOCK else None
            if cls is not None and key != "mock" and not callable(getattr(cls, key[:-len(".mock")], None)):
                raise ConfigurationError(f"{key}: the mock {cls.__name__} of {service} has no method "
                                         f"{key[:-len('.mock')]!r}")
        params = {**self.masks(service), **{key: text for key in keys}}
        self._write_masks(service, params)

    def unmask(self, service: str, *, methods: Iterable[str] | None = None) -> None:
        """Remove the masks of ``methods`` (default: every mask of ``service``)."""
        params = self.masks(service)
        if methods is None:
            params = {}
        else:
            for method in methods:
                params.pop(f"{method}.mock", None)
        self._write_masks(service, params)

    def _write_masks(self, service: str, params: Mapping[str, str]) -> None:
        if not params:
            self.registry.delete_rule(service, CONFIGURATORS, MASK_RULE)
            return
        text = "# masks written by govrpc.Admin.mask\n" + "".join(f"{k} = {v}\n" for k, v in sorted(params.items()))
        self.set_override(service, MASK_RULE, text)

    def set_switch(self, name: str, value: Any) -> None:
        """Set business switch ``name`` to ``value`` (a JSON value; True/False for on/off) in every
        process watching this registry. Raises ``ConfigurationError`` for a bad name or value."""
        self.registry.put_rule(SWITCH_SERVICE, SWITCHES, check_switch(name), switch_text(value))

    def delete_switch(self, name: str) -> None:
        """Remove switch ``name``: processes fall back to the default their code gives."""
        self.registry.delete_rule(SWITCH_SERVICE, SWITCHES, check_switch(name))

    def switches(self) -> dict[str, Any]:
        """Every switch stored in the registry: name -> value (a node that is not JSON is left out)."""
        values = {}
        for name, text in self.registry.rules(SWITCH_SERVICE, SWITCHES).items():
            try:
                values[name] = json.loads(text)
            except ValueError:
                log.warning("switch %s holds %r, not JSON; left out", name, text)
        return values

    def breakers(self, service: str) -> list[dict[str, Any]]:
        """The open and half-open breakers consumers of ``service`` publish: one document per
        consumer (``consumer``, ``updated``, ``total``, ``breakers``: service, method, address,
        state, since, for, opened, rejected)."""
        documents = []
        for name, text in sorted(self.registry.rules(service, BREAKERS).items()):
            try:
                document = json.loads(text)
            except ValueError:
                log.warning("breaker states %s of %s are not JSON; left out", name, service)
                continue
            if isinstance(document, dict):
                documents.append(document)
        return documents

    def delete_rule(self, service: str, category: str, name: str) -> None:
        self.registry.delete_rule(service, category, name)

    def close(self) -> None:
        if self._owned:
            release_registry(self.registry)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
