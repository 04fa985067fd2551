"""Parsers for the values of a site-to-site tunnel's config (``tunnels:``, a gateway
node's ``tunnel_keys:``), used as pydantic validators like ``_values.py``'s.

Keys are written as ``wg`` writes them: the base64 of 32 bytes (44 characters, one
``=``). A public key is policy (the peer's, no secret); a private or preshared key is
never in the policy, only the path of the file on the node that holds it, read by the
daemon (decisions.md, "Tunnels").
"""

from __future__ import annotations

import base64
import binascii
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from pydantic_core import PydanticCustomError

from gateway.wireguard import KEY_SIZE

from ._values import _ip_from_text, invalid

WG_KEY_TEXT_SIZE: Final = 44  # base64 of 32 bytes: 43 characters and one '='
_KEY_HELP = "expected a WireGuard key: base64 of 32 bytes, as `wg genkey` / `wg pubkey` print"
_ENDPOINT_HELP = "expected address:port, like 192.0.2.11:51820 or [2001:db8::1]:51820"
PORT_MIN, PORT_MAX = 1, 65535


def decode_key(text: str) -> bytes:
    """The 32 bytes of a key written as ``wg`` writes it; ``ValueError`` if it is not."""
    if len(text) != WG_KEY_TEXT_SIZE:
        raise ValueError(_KEY_HELP)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(_KEY_HELP) from None
    if len(raw) != KEY_SIZE:
        raise ValueError(_KEY_HELP)
    return raw


def parse_wg_key(value: Any) -> str:
    """A WireGuard public key, as its base64 text (kept as written: it is canonical)."""
    if not isinstance(value, str):
        raise invalid("wg_key_type", _KEY_HELP)
    try:
        decode_key(value)
    except ValueError:
        raise invalid("wg_key", _KEY_HELP) from None
    return value


def parse_port(value: Any) -> int:
    """A UDP port: 1..65535 (0 would be "any port", which a peer cannot reach)."""
    if type(value) is int and PORT_MIN <= value <= PORT_MAX:
        return value
    raise invalid("port", f"expected a UDP port, {PORT_MIN}..{PORT_MAX}")


def parse_port_key(value: Any) -> int:
    """A UDP port as a mapping's key: an int in YAML, its digits in JSON."""
    if type(value) is str and value.isascii() and value.isdigit() and value[0] != "0":
        value = int(value)
    return parse_port(value)


def parse_key_file(value: Any) -> str:
    """The path of a key file on the node: an absolute path (the daemon's working
    directory is no place to guess from)."""
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise invalid("key_file", "expected the absolute path of a key file on the node")
    return value


def parse_endpoint(value: Any) -> str:
    """A peer's endpoint, ``address:port`` (IPv6 in brackets), as canonical text. An
    address, not a host name: the daemon resolves no names on its data path."""
    if not isinstance(value, str):
        raise invalid("endpoint_type", _ENDPOINT_HELP)
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets: its port is ambiguous
    if not colon or not host or not (port.isascii() and port.isdigit()):
        raise invalid("endpoint", _ENDPOINT_HELP)
    try:
        address = _ip_from_text(host)
        number = parse_port(int(port))
    except PydanticCustomError:
        raise invalid("endpoint", _ENDPOINT_HELP) from None
    if address.is_unspecified or address.is_multicast:
        raise invalid("endpoint", "an endpoint is one peer's unicast address")
    return f"[{address}]:{number}" if isinstance(address, IPv6Address) else f"{address}:{number}"


def endpoint_pair(text: str) -> tuple[str, int]:
    """A parsed endpoint's (address, port), as a UDP socket gives a source."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def is_ipv4_endpoint(text: str) -> bool:
    """Whether the endpoint's address is IPv4 (the tunnels' WAN is IPv4 so far)."""
    return isinstance(_ip_from_text(endpoint_pair(text)[0]), IPv4Address)
