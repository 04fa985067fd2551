"""Parsers for the scalar values of a policy document, used as pydantic validators.

Each parser takes what YAML (or JSON) gives, returns the canonical Python value, and
raises ``PydanticCustomError`` with a message written for an operator, so that the
schema layer reports e.g. "host bits set: did you mean 10.10.10.0/24?" rather than a
pydantic type name. They accept already-parsed values too (an ``IPv4Address`` for an
address), so the models can also be built from Python.

The parsers for what appears 100,000 times in a big policy (addresses, MACs, VSIDs)
have a fast path, because they dominate ``load_policy()``'s time (profiled with
``bench/snapshot_build.py``): an IPv4 address is a regex match plus ``IPv4Address(int)``
rather than ``ipaddress.ip_address(str)``, and address texts are cached, since the
same ones come back in every tenant and every record of a host.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

from pydantic_core import PydanticCustomError

from gateway.netnames import ifname_problem
from gateway.wire import VSID_MAX, VSID_MIN, mac_to_str

# RFC 7637 section 3.2 (and HNV): VSIDs 0..4095 are reserved, and so is 0xFFFFFF
# (VSID_MIN, VSID_MAX come from the wire codec, the one definition).
VSID_RESERVED_MESSAGE = "reserved: usable VSIDs are 4096..16777214"

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


def invalid(kind: str, message: str) -> PydanticCustomError:
    # Without a context pydantic uses the template as it is: braces are safe.
    return PydanticCustomError(kind, message)


class Mac(bytes):
    """A MAC address: 6 bytes (so it is a dict key equal to what the wire parser gives),
    printed as nvgw prints every MAC (``gateway.wire.mac_to_str``: ``00-00-00-00-00-11``)."""

    __slots__ = ()

    def __new__(cls, value: bytes) -> Mac:
        if len(value) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(value)}")
        return super().__new__(cls, value)

    def __str__(self) -> str:
        return mac_to_str(self)

    def __repr__(self) -> str:
        return f"Mac('{self}')"


_MAC_HELP = "expected 6 hex octets: 00-00-00-00-00-11, 00:00:00:00:00:11 or 000000000011"


def parse_mac(value: Any) -> Mac:
    """A unicast MAC, from its text; an int only when its decimal form has 12 digits.

    The int case exists because YAML reads an unquoted ``112233445566`` as a number;
    its digits are still the 12 hex digits the operator wrote. (The file loader keeps
    the text of numbers written with leading zeros, such as ``000000000011``.)
    """
    if isinstance(value, Mac):
        return value
    if type(value) is int and 10**11 <= value < 10**12:
        value = str(value)
    if not isinstance(value, str):
        raise invalid("mac_type", f"not a MAC address: {_MAC_HELP}")
    raw = _mac_bytes(value)
    if raw is None:
        raise invalid("mac_parsing", f"not a MAC address: {_MAC_HELP}")
    if raw[0] & 1:
        raise invalid("mac_group", "a multicast/broadcast MAC (group bit set) cannot be a VM's")
    if not any(raw):
        raise invalid("mac_zero", "00-00-00-00-00-00 is not a usable MAC address")
    return bytes.__new__(Mac, raw)


def _mac_bytes(text: str) -> bytes | None:
    if len(text) == 17:
        separator = text[2]
        if separator not in "-:" or text[2::3] != separator * 5:
            return None
        text = text.replace(separator, "")
    if len(text) != 12:
        return None
    try:
        # 12 characters that make 6 bytes are 12 hex digits (fromhex skips spaces,
        # but then 12 characters would make fewer bytes).
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 6 else None


_HEX = "[0-9a-fA-F]"  # spelt out: IGNORECASE would also admit some non-ASCII letters
_GUID = re.compile(rf"\{{{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\}}")
_GUID_HELP = "expected a GUID in braces: {xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}"


def parse_rdid(value: Any) -> str:
    """A routing domain ID: a braced GUID, canonicalised to lower case (as .NET's
    ``Guid.ToString("B")`` prints it), so that the same RDID written in two cases is
    one RDID."""
    if isinstance(value, dict) and len(value) == 1:
        # YAML reads an unquoted {...} as a flow mapping: say so, it is a common slip.
        (key,) = value
        if isinstance(key, str) and _GUID.fullmatch("{" + key + "}"):
            raise invalid("rdid_unquoted", 'quote the GUID: YAML reads {...} as a mapping: "{...}"')
    if not isinstance(value, str) or _GUID.fullmatch(value) is None:
        raise invalid("rdid_parsing", f"not a routing domain ID: {_GUID_HELP}")
    return value.lower()


def parse_vsid(value: int) -> int:
    """The VSID range check (the int type itself is checked by the schema)."""
    if VSID_MIN <= value <= VSID_MAX:
        return value
    if 0 <= value <= 0xFFFFFF:
        raise invalid("vsid_reserved", VSID_RESERVED_MESSAGE)
    raise invalid("vsid_range", "out of range: a VSID has 24 bits; usable VSIDs are 4096..16777214")


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_IP_HELP = "expected an IPv4 (198.18.0.1) or IPv6 (fd00::1) address"


@lru_cache(maxsize=1 << 16)
def _ip_from_text(text: str) -> IPAddress:
    """Cached: tenants overlap and hosts carry many VMs, so the same address text
    comes back again and again (10.10.10.11 in every tenant, a host PA in every record
    of its VMs). Addresses are immutable, so sharing one object is safe."""
    match = _IPV4.fullmatch(text)
    if match is not None:
        a, b, c, d = match.groups()
        return IPv4Address(int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d))
    if "%" in text:
        raise invalid("ip_scoped", "a scoped IPv6 address (with %zone) is not allowed here")
    if ":" in text:
        try:
            return IPv6Address(text)
        except ValueError:
            pass
    raise invalid("ip_parsing", f"not an IP address: {_IP_HELP}")


def parse_ip(value: Any) -> IPAddress:
    """An IPv4 or IPv6 address written as text (never an int: ``3232235777`` in a
    config is a mistake, not an address)."""
    if type(value) is str:
        return _ip_from_text(value)
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    raise invalid("ip_type", f"not an IP address: {_IP_HELP} (as a string)")


def parse_provider_ip(value: Any) -> IPAddress:
    """A provider address: a unicast address a host can own."""
    if type(value) is str:
        return _provider_ip_from_text(value)
    return _unicast(parse_ip(value))


def _unicast(address: IPAddress) -> IPAddress:
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise invalid("pa_unusable", "a PA must be unicast: not any, loopback or multicast")
    if address == _BROADCAST:
        raise invalid("pa_unusable", "a PA must be unicast: not the broadcast address")
    return address


@lru_cache(maxsize=1 << 14)
def _provider_ip_from_text(text: str) -> IPAddress:
    """Cached: one host PA comes back in every record of the host's VMs."""
    return _unicast(_ip_from_text(text))


_BROADCAST = IPv4Address("255.255.255.255")


def parse_prefix(value: Any) -> IPNetwork:
    """A prefix ``address/length`` whose host bits are zero."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    bad = "not a prefix: expected address/length, like 10.10.10.0/24"
    address_text = _slash_form(value, "prefix_parsing", bad)
    try:
        network = ip_network(value, strict=False)
    except ValueError:
        raise invalid("prefix_parsing", bad) from None
    if network.network_address != ip_address(address_text):
        raise invalid("prefix_host_bits", f"host bits set: did you mean {network}?")
    return network


def parse_interface_address(value: Any) -> IPInterface:
    """An address on an interface with its prefix length, ``172.16.0.1/24`` (a TAP's
    own address, so its host bits are the point; whether it is a host address of its
    subnet is the gateway checks' to say, with the reason)."""
    if isinstance(value, IPv4Interface | IPv6Interface):
        return value
    bad = "not an interface address: expected address/length, like 172.16.0.1/24"
    _slash_form(value, "interface_parsing", bad)
    try:
        return ip_interface(value)
    except ValueError:
        raise invalid("interface_parsing", bad) from None


def _slash_form(value: Any, kind: str, bad: str) -> str:
    """The address part of ``address/length`` text; refuses a netmask after the slash
    (``/255.255.255.0``: one spelling) and a scope id."""
    if type(value) is not str or "/" not in value:
        raise invalid(kind, bad)
    address_text, _, length_text = value.partition("/")
    if not (length_text.isascii() and length_text.isdigit()) or "%" in address_text:
        raise invalid(kind, bad)
    return address_text


def parse_prefixes(value: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    """A virtual subnet's prefixes: one or two, at most one per family (HNV's model)."""
    if not 1 <= len(value) <= 2:
        raise invalid("prefix_count", "a virtual subnet needs 1 or 2 prefixes: one IPv4, one IPv6")
    if len(value) == 2 and value[0].version == value[1].version:
        raise invalid(
            "prefix_family", f"two IPv{value[0].version} prefixes: at most one per family"
        )
    return value


def parse_ifname(value: Any) -> str:
    """A Linux interface name, as the kernel's ``dev_valid_name()`` accepts it
    (``gateway.netnames``: 15 bytes, not characters)."""
    if not isinstance(value, str):
        raise invalid("ifname_type", "an interface name must be a string")
    problem = ifname_problem(value)
    if problem is not None:
        raise invalid(*problem)
    return value


NODE_NAME_RULE = "a node name is 1 to 32 of a-z, 0-9 and '-', not starting with '-'"
_NODE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def parse_node_name(value: Any) -> str:
    """A node name: lower-case letters, digits and '-', not leading '-' (it would read
    as an option in ``nvgw run --node``), at most 32 characters (``nvgw-`` + name is
    also a network namespace name)."""
    if not isinstance(value, str) or _NODE_NAME.fullmatch(value) is None:
        raise invalid("node_name", NODE_NAME_RULE)
    return value


def parse_label(value: Any) -> str:
    """A free-form name (routing domain, VM): printable, 1 to 64 characters."""
    if not isinstance(value, str):
        raise invalid("label_type", "must be a string")
    if not 1 <= len(value) <= 64 or not value.isprintable() or value != value.strip():
        raise invalid("label", "a name is 1 to 64 printable characters, no leading/trailing space")
    return value


# RFC 879 / RFC 1122 sec. 3.3.3: every IPv4 host takes a 576-byte datagram, so an MSS
# of 576 - 40 = 536 always fits; IPv4's largest datagram is 65535, so 65535 - 40 is the
# largest MSS that can mean anything. A clamp outside these would break TCP, not fix it.
MSS_MIN, MSS_MAX = 536, 65535 - 40
MSS_CLAMP_RULE = f"expected auto (from the path MTU), off, or an MSS of {MSS_MIN}..{MSS_MAX}"


def parse_mss_clamp(value: Any) -> str | int:
    """A gateway's TCP MSS clamp: ``auto``, ``off`` or a number of bytes."""
    if value in ("auto", "off"):
        return str(value)
    if type(value) is int and MSS_MIN <= value <= MSS_MAX:
        return value
    raise invalid("mss_clamp", MSS_CLAMP_RULE)


class NextHopKind(enum.Enum):
    """Where a gateway's node route sends a packet."""

    TAP = "tap"  # on-link on a TAP of the routing domain: ``tap:NAME``
    ADDRESS = "address"  # a neighbour inside one of the routing domain's TAP subnets
    NAT = "nat"  # internet egress (issue 12)
    TUNNEL = "tunnel"  # a site-to-site tunnel (issue 13): ``tunnel:NAME``


@dataclass(frozen=True, slots=True)
class NextHop:
    """A node route's next hop; prints as it is written in a config file."""

    kind: NextHopKind
    name: str | None = None  # the TAP's or the tunnel's
    address: IPAddress | None = None  # for ``ADDRESS``

    def __str__(self) -> str:
        if self.kind is NextHopKind.ADDRESS:
            return str(self.address)
        if self.name is None:
            return self.kind.value
        return f"{self.kind.value}:{self.name}"


NEXT_HOP_RULE = "expected tap:NAME, an address inside one of the TAP subnets, nat or tunnel:NAME"


def parse_next_hop(value: Any) -> NextHop:
    """A node route's next hop, from its text (see ``NextHop``)."""
    if isinstance(value, NextHop):
        return value
    if type(value) is not str:
        raise invalid("next_hop_type", f"must be a string: {NEXT_HOP_RULE}")
    if value == "nat":
        return NextHop(NextHopKind.NAT)
    kind, colon, name = value.partition(":")
    if colon and kind == "tap":
        return NextHop(NextHopKind.TAP, parse_ifname(name))
    if colon and kind == "tunnel":
        return NextHop(NextHopKind.TUNNEL, parse_label(name))
    try:
        return NextHop(NextHopKind.ADDRESS, address=_ip_from_text(value))
    except PydanticCustomError:
        raise invalid("next_hop", f"not a next hop: {NEXT_HOP_RULE}") from None
