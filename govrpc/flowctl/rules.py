"""Flow settings as configurators: what ``Admin.set_flow`` and ``govrpc flow`` write and read.

Flow settings live in ordinary configurators, one per scope: ``flow`` (every
provider of the service), ``flow-address-HOST_PORT`` (one provider) and
``flow-application-APP`` (the consumers of one application). Each holds only
flow keys (``govrpc.flowctl.settings``), so an operator's other overrides are
never rewritten.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from govrpc.configurator import _ADDRESS, parse_configurator
from govrpc.exceptions import ConfigurationError
from govrpc.flowctl.settings import FLOW_KEYS
from govrpc.options import check_options, split_method_key

__all__ = ["flow_params", "flow_rule_name", "render_flow_rule"]

_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def flow_rule_name(application: str = "", address: str = "") -> str:
    """The configurator that holds the flow settings of one scope."""
    if application and address:
        raise ConfigurationError("a flow rule is for one provider address or one consumer application, not both")
    if address:
        if not _ADDRESS.match(address):
            raise ConfigurationError(f"address {address!r} is not host:port")
        return "flow-address-" + _NAME_SAFE.sub("_", address)
    if application:
        return "flow-application-" + _NAME_SAFE.sub("_", application)
    return "flow"


def check_flow_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``settings`` as text, refusing a key that is not a flow key (named) and bad values."""
    for key in settings:
        if not isinstance(key, str) or split_method_key(key)[1] not in FLOW_KEYS:
            raise ConfigurationError(f"{key!r} is not a flow key; keys: {', '.join(sorted(FLOW_KEYS))} "
                                     f"(also per method as method.key)")
    return check_options(settings)


def flow_params(text: str) -> dict[str, str]:
    """The flow settings a stored configurator holds (other keys left out)."""
    rule = parse_configurator(text)
    return {k: v for k, v in rule.params.items() if split_method_key(k)[1] in FLOW_KEYS}


def render_flow_rule(params: Mapping[str, str], application: str = "", address: str = "") -> str:
    """The configurator text for ``params`` in one scope (checked before anything is stored)."""
    lines = ["# flow control, written by govrpc flow / Admin.set_flow"]
    if address:
        lines.append(f"address = {address}")
    if application:
        lines.append(f"application = {application}")
    lines += [f"{key} = {value}" for key, value in sorted(params.items())]
    text = "\n".join(lines) + "\n"
    parse_configurator(text)
    return text
