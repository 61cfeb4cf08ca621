"""Tag routes (grey / canary releases): a tagged call goes to providers with that tag.

A call's tag is the ``tag`` attachment (``with govrpc.attachments(tag="gray")``),
else the consumer's ``tag`` option (``client.proxy(..., tag="gray")``). A provider's
tag is its ``tag`` URL parameter (``Server(tags={"tag": "gray"})``), or the tag a
rule assigns to its address::

    kind: tag
    force: false
    tags:
      - name: gray
        addresses: [10.0.0.5:50051, 10.0.0.6:50051]

The decision is Dubbo 2.7's ``TagRouter``: a tagged call keeps the providers of its
tag; when there are none it falls back to untagged providers unless the rule is
``force`` or the call is (attachment ``tag-force: true`` or consumer option
``tag_force=True``). An untagged call keeps untagged providers only. The tag is
passed on to the provider's own outgoing calls only when the provider enables it
(``Server(filters=[TagPassOnFilter()])``).
"""

from __future__ import annotations

from typing import Any, Sequence

from govrpc.context import attachments as attach
from govrpc.invocation import Filter, Invocation, Invoker
from govrpc.router.base import FORCE_KEY, TAG_KEY, Reads, Router
from govrpc.router.rule import RouteRule, Scalar
from govrpc.url import URL

__all__ = ["FORCE_KEY", "TAG_KEY", "TagPassOnFilter", "TagRouter"]

def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _address_in(url: URL, addresses: frozenset[str]) -> bool:
    """A rule's address is ``host:port``, or a bare ``host`` for every port of it."""
    return url.address in addresses or url.host in addresses


class TagRouter(Router):
    """Splits traffic by tag (group ``govrpc.router``, kind ``tag``); one per chain, merging every tag rule."""

    name = "tag"
    reads = Reads(attachments=frozenset({TAG_KEY, FORCE_KEY}))

    def __init__(self, rules: Sequence[RouteRule] = ()) -> None:
        by_tag: dict[str, set[str]] = {}
        owner: dict[str, str] = {}
        for rule in sorted(rules, key=lambda r: r.name):
            for tag, addresses in self.assignments_of(rule):
                for address in addresses:
                    if owner.setdefault(address, tag) == tag:  # an address keeps its first tag
                        by_tag.setdefault(tag, set()).add(address)
        self.has_rule = bool(rules)
        self.force = any(r.force for r in rules)
        self.by_tag = {tag: frozenset(a) for tag, a in by_tag.items()}
        self.addresses = frozenset(owner)
        self.tag_names = frozenset(t for rule in rules for t, _ in self.assignments_of(rule))

    @staticmethod
    def assignments_of(rule: RouteRule) -> list[tuple[str, list[str]]]:
        """(tag, addresses) pairs of a tag rule; raises ``RuleError``."""
        rule.check_keys(("tags",))
        tags = rule.fields.get("tags")
        if not isinstance(tags, list) or not tags:
            raise rule.error("a tag rule needs 'tags:', a list of '- name: TAG' with 'addresses: [host:port, ...]'")
        out = []
        for entry in tags:
            if not isinstance(entry, dict):
                raise rule.error("each item of 'tags:' is 'name: TAG' with 'addresses: [...]'",
                                 getattr(entry, "offset", None))
            for key, value in entry.items():
                if key not in ("name", "addresses"):
                    raise rule.error(f"unknown key {key!r} in a tag (use name and addresses)",
                                     getattr(value, "offset", None))
            name = entry.get("name")
            if not isinstance(name, Scalar) or not name.text:
                raise rule.error("a tag needs 'name: TAG'", getattr(name, "offset", None))
            raw = entry.get("addresses", [])
            items = raw if isinstance(raw, list) else [raw]
            addresses = []
            for item in items:
                for part in item.text.split(","):
                    address = part.strip()
                    if not address:
                        continue
                    host, _, port = address.rpartition(":")
                    if ":" in address and (not host or not port.isdigit()):
                        raise rule.error(f"address {address!r} is not host:port", item.offset)
                    addresses.append(address)
            out.append((name.text, addresses))
        return out

    @classmethod
    def from_rule(cls, rule: RouteRule) -> Sequence[Router]:
        return [cls([rule])]

    def route(self, invokers: Sequence[Invoker], invocation: Invocation,
              consumer: URL) -> tuple[Sequence[Invoker], str]:
        atts = invocation.attachments
        tag = atts.get(TAG_KEY) or consumer.params.get(TAG_KEY) or ""
        force_tag = _truthy(atts.get(FORCE_KEY)) or _truthy(consumer.params.get(FORCE_KEY)) \
            or _truthy(consumer.params.get("tag_force"))
        if not tag:
            result: Sequence[Invoker] = invokers
            if self.addresses:
                result = [i for i in invokers if not _address_in(i.url, self.addresses)]
                if not result:
                    return result, "untagged call; every provider is in a tag group: no provider"
            if self.has_rule:
                names = self.tag_names
                return ([i for i in result if not i.url.params.get(TAG_KEY) or i.url.params[TAG_KEY] not in names],
                        "untagged call: providers outside the rule's tags")
            return [i for i in result if not i.url.params.get(TAG_KEY)], "untagged call: untagged providers"
        addresses = self.by_tag.get(tag)
        if addresses:
            result = [i for i in invokers if _address_in(i.url, addresses)]
            if result or self.force:
                return result, f"tag {tag!r}: providers the rule assigns to it" + (" (force)" if not result else "")
        else:
            result = [i for i in invokers if i.url.params.get(TAG_KEY) == tag]
        if result:
            return result, f"tag {tag!r}: providers tagged {tag!r}"
        if force_tag:
            return result, f"tag {tag!r}: no provider has it and the call forces it: no provider"
        fallback = [i for i in invokers if not i.url.params.get(TAG_KEY) and not _address_in(i.url, self.addresses)]
        return fallback, f"tag {tag!r}: no provider has it; fell back to untagged providers"


class TagPassOnFilter(Filter):
    """Provider filter: a call's ``tag`` travels on with the calls the provider makes while serving it."""

    side = "provider"
    order = 50

    def invoke(self, invoker: Invoker, invocation: Invocation) -> Any:
        tag = invocation.attachments.get(TAG_KEY)
        if not tag:
            return invoker.invoke(invocation)
        values = {TAG_KEY: tag}
        force = invocation.attachments.get(FORCE_KEY)
        if force:
            values["tag_force"] = force
        with attach(**values):
            return invoker.invoke(invocation)
