"""Policy entries as JSON, in the config file's own shape.

What the API returns for an entry is what one would write in the file for it (the
same keys, MACs as ``00-00-00-00-00-11``, rules as ``encap``/``nat``), so a GET's
output can be pasted into a POST or a config file unchanged.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel

from gateway.policy import Policy


def entry_json(model: BaseModel, **extra: Any) -> dict[str, Any]:
    """A model's fields as JSON values (unset optional fields left out)."""
    out: dict[str, Any] = dict(extra)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is not None:
            out[name] = _json(value)
    return out


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(item) for item in value]
    if isinstance(value, BaseModel):
        return entry_json(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)  # addresses, prefixes, Mac


def listing(policy: Policy, kind_name: str) -> list[dict[str, Any]]:
    """Every entry of one kind (a ``Kind.name``) of a running policy, as JSON."""
    if kind_name == "lookup-records":
        return [entry_json(record) for record in policy.lookup_records]
    if kind_name == "customer-routes":
        return [entry_json(route) for route in policy.customer_routes]
    if kind_name == "virtual-subnets":
        return [
            entry_json(subnet, rdid=domain.rdid)
            for domain in policy.routing_domains
            for subnet in domain.virtual_subnets
        ]
    if kind_name == "routing-domains":
        return [
            {
                **entry_json(domain.model_copy(update={"virtual_subnets": ()})),
                "virtual_subnets": [subnet.vsid for subnet in domain.virtual_subnets],
            }
            for domain in policy.routing_domains
        ]
    if kind_name == "provider-addresses":
        return [
            entry_json(address, node=node.name)
            for node in policy.nodes
            for address in node.provider_addresses
        ]
    raise KeyError(kind_name)


def policy_json(policy: Policy) -> dict[str, Any]:
    """A whole running policy in the config file's shape: ``load_policy()`` takes it
    back unchanged, which is how ``nvgw apply --dry-run`` diffs against a live daemon."""
    return {
        "revision": policy.revision,
        "routing_domains": [entry_json(domain) for domain in policy.routing_domains],
        "lookup_records": [entry_json(record) for record in policy.lookup_records],
        "customer_routes": [entry_json(route) for route in policy.customer_routes],
        "nodes": {
            node.name: entry_json(node.model_copy(update={"name": None})) for node in policy.nodes
        },
    }
