"""Documents for the policy tests, and a YAML writer that says where it put each path.

``base_document()`` is a valid deployment (the routing scenario: Blue with two VSIDs
and gateway CAs, Red with one, two hosts); each test mutates a fresh copy so that it
holds exactly one mistake.

``emit_yaml()`` is an independent oracle for line numbers: it writes block-style YAML
itself, one key or item per line, and records the 1-based line of every path as it
goes. The file loader's ``file:line`` must agree with it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

BLUE = "{11111111-2222-3333-4444-000000005010}"
RED = "{11111111-2222-3333-4444-000000005011}"


def record(vsid: int, ca: str, mac: str, pa: str, rule: str = "encap", **extra: Any) -> dict:
    return {"vsid": vsid, "ca": ca, "mac": mac, "pa": pa, "rule": rule, **extra}


def route(rdid: str, vsid: int, destination: str, next_hop: str, metric: int = 255) -> dict:
    return {
        "rdid": rdid,
        "vsid": vsid,
        "destination": destination,
        "next_hop": next_hop,
        "metric": metric,
    }


def port(name: str, vsid: int, mac: str) -> dict:
    return {"name": name, "vsid": vsid, "mac": mac}


_BASE: dict[str, Any] = {
    "revision": 7,
    "routing_domains": [
        {
            "rdid": BLUE,
            "name": "blue",
            "virtual_subnets": [
                {"vsid": 5010, "prefixes": ["10.10.10.0/24"], "gateway": "10.10.10.1"},
                {"vsid": 5012, "prefixes": ["10.10.20.0/24", "fd00:20::/64"]},
            ],
        },
        {
            "rdid": RED,
            "name": "red",
            "virtual_subnets": [{"vsid": 5011, "prefixes": ["10.10.10.0/24"]}],
        },
    ],
    "lookup_records": [
        record(5010, "10.10.10.11", "00-00-00-00-00-11", "198.18.0.1", vm="blue1"),
        record(5011, "10.10.10.11", "00-00-00-00-00-21", "198.18.0.1", vm="red1"),
        record(5010, "10.10.10.12", "00-00-00-00-00-12", "198.18.0.2", vm="blue2"),
        record(5011, "10.10.10.12", "00-00-00-00-00-22", "198.18.0.2", vm="red2"),
        record(5012, "10.10.20.13", "00-00-00-00-00-13", "198.18.0.2", vm="blue3"),
    ],
    "customer_routes": [
        route(BLUE, 5010, "10.10.10.0/24", "0.0.0.0"),
        route(BLUE, 5012, "10.10.20.0/24", "0.0.0.0"),
        route(RED, 5011, "10.10.10.0/24", "0.0.0.0"),
    ],
    "nodes": {
        "host1": {
            "role": "host",
            "provider_addresses": [{"interface": "pa0", "pa": "198.18.0.1", "prefix_length": 24}],
            "ports": [
                port("blue1", 5010, "00-00-00-00-00-11"),
                port("red1", 5011, "00-00-00-00-00-21"),
            ],
        },
        "host2": {
            "role": "host",
            "provider_addresses": [{"interface": "pa0", "pa": "198.18.0.2", "prefix_length": 24}],
            "ports": [
                port("blue2", 5010, "00-00-00-00-00-12"),
                port("red2", 5011, "00-00-00-00-00-22"),
                port("blue3", 5012, "00-00-00-00-00-13"),
            ],
        },
    },
}


def base_document() -> dict[str, Any]:
    """A fresh, valid document to mutate."""
    return copy.deepcopy(_BASE)


def emit_yaml(document: Any) -> tuple[str, dict[str, int]]:
    """Block-style YAML for ``document`` and the line of every path in it."""
    lines: list[str] = []
    where: dict[str, int] = {}
    _emit(document, "", 0, lines, where)
    return "\n".join(lines) + "\n", where


def _emit(node: Any, path: str, indent: int, lines: list[str], where: dict[str, int]) -> None:
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            child = _child(path, key)
            where[child] = len(lines) + 1
            head = f"{pad}{json.dumps(key) if isinstance(key, str) else key}:"
            if _is_scalar(value) or value in ({}, []):
                lines.append(f"{head} {_scalar(value)}")
            else:
                lines.append(head)
                _emit(value, child, indent + 2, lines, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            child = f"{path}[{index}]"
            where[child] = len(lines) + 1
            if _is_scalar(item) or item in ({}, []):
                lines.append(f"{pad}- {_scalar(item)}")
            elif isinstance(item, dict):
                # The usual style: the first key shares the dash's line.
                first = len(lines)
                _emit(item, child, indent + 2, lines, where)
                lines[first] = f"{pad}- {lines[first][indent + 2 :]}"
            else:
                lines.append(f"{pad}-")
                _emit(item, child, indent + 2, lines, where)
    else:
        lines.append(f"{pad}{_scalar(node)}")


def _child(path: str, key: Any) -> str:
    import re

    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key) if isinstance(key, str) else key}]"


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _scalar(value: Any) -> str:
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a double-quoted YAML scalar is JSON's string syntax
