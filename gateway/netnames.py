"""Names the operator gives the kernel's network things: an interface name and a
HOST:PORT to listen on. One definition of each, for every layer that meets them.

Why a module of its own, below every package: the policy validator checks port and
provider-interface names, the lab its namespace-prefixed veths and bridge, io its TAPs;
telemetry (``--metrics``) and control (``--api-tcp``) both parse HOST:PORT but are
independent siblings under the layering contract (neither may import the other), and
the CLI checks both flags before anything starts. So this sits beside
``gateway.errors`` at the bottom (pyproject.toml's contracts), pure: text in, values
or one typed error out, no socket and no name lookup.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, NamedTuple

__all__ = [
    "DEFAULT_LISTEN_HOST",
    "IFNAME_MAX_BYTES",
    "IFNAMSIZ",
    "PORT_MAX",
    "ListenAddress",
    "ListenAddressError",
    "format_host_port",
    "ifname_problem",
    "ifname_size",
    "parse_listen_address",
]

# include/uapi/linux/if.h: an interface name lives in a char[IFNAMSIZ] with its NUL,
# so it has at most IFNAMSIZ - 1 = 15 bytes. Bytes, not characters: "tap-é" is 6 bytes
# in UTF-8, and the kernel counts those (dev_valid_name() calls strnlen()).
IFNAMSIZ: Final = 16
IFNAME_MAX_BYTES: Final = IFNAMSIZ - 1
_IFNAME_LENGTH_RULE: Final = f"an interface name has 1 to {IFNAME_MAX_BYTES} bytes (Linux IFNAMSIZ)"
_IFNAME_FORBIDDEN: Final = re.compile(r"[/:\s\x00]")
# dev_valid_name() also refuses each byte its isspace() takes, and the kernel's ctype
# is Latin-1 (lib/ctype.c), where 0xA0 is a no-break space: "à" (C3 A0 in UTF-8) and
# "Š" (C5 A0) are refused, "é" (C3 A9) is not.
_KERNEL_SPACES: Final = frozenset(b"\t\n\v\f\r \xa0")


def ifname_size(name: str) -> int:
    """The bytes the kernel counts for ``name`` (UTF-8; a lone surrogate counts as the
    three bytes Python would write for it, so it is measured, not crashed on)."""
    return len(name.encode("utf-8", "surrogatepass"))


def ifname_problem(name: str) -> tuple[str, str] | None:
    """Why the kernel's ``dev_valid_name()`` would refuse ``name``: a short kind (for
    pydantic's error type) and the rule, or None if the name is fine."""
    if not 1 <= ifname_size(name) <= IFNAME_MAX_BYTES:
        return "ifname_length", _IFNAME_LENGTH_RULE
    if name in {".", ".."} or _IFNAME_FORBIDDEN.search(name) is not None:
        return "ifname_chars", "an interface name is not . or .. and has no /, : or space"
    if not _KERNEL_SPACES.isdisjoint(name.encode("utf-8", "surrogatepass")):
        return "ifname_chars", (
            "an interface name has no character whose UTF-8 holds byte 0xA0 (such as "
            "\u00e0): Linux reads that byte as a space"
        )
    return None


# ---------------------------------------------------------------- HOST:PORT

DEFAULT_LISTEN_HOST: Final = "127.0.0.1"  # ":9550" listens on loopback, never everywhere
PORT_MAX: Final = 65535
# RFC 1123 host names: labels of letters, digits and '-', not starting or ending with
# '-'; the last label is not all digits (RFC 3696 sec. 2), so "1.2.3" is refused rather
# than read by inet_aton() as 1.2.0.3.
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"(?:{_LABEL}\.)*(?=[A-Za-z0-9-]*[A-Za-z-]){_LABEL}\.?")


class ListenAddressError(ValueError):
    """A HOST:PORT that cannot be used, naming the flag, the value and the rule."""

    def __init__(self, flag: str, value: str, reason: str) -> None:
        self.flag = flag
        self.value = value
        self.reason = reason
        super().__init__(f"{flag} {value!r}: {reason}")


class ListenAddress(NamedTuple):
    """Where to listen: ``host`` as ``getaddrinfo()`` takes it (an IPv6 address without
    its brackets), ``port`` 0..65535 (0: the kernel picks one)."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_host_port(self.host, self.port)


def format_host_port(host: str, port: int) -> str:
    """HOST:PORT as a person (and ``parse_listen_address``) reads it: IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listen_address(text: str, flag: str) -> ListenAddress:
    """``127.0.0.1:9550``, ``[::1]:9550``, ``localhost:9550`` or ``:9550`` (loopback).

    An IPv6 address must be in brackets: ``::1:9550`` is refused, not guessed at (is
    it ``[::1]:9550`` or ``[::1:9550]`` without a port?). The port is ASCII digits,
    0..65535. ``flag`` names the option in the error (``--metrics``)."""
    host, colon, port = text.rpartition(":")
    if not colon or text.endswith("]"):
        raise ListenAddressError(flag, text, "not HOST:PORT (no port)")
    if not (port.isascii() and port.isdigit()) or int(port) > PORT_MAX:
        raise ListenAddressError(flag, text, f"not HOST:PORT (port 0..{PORT_MAX})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not isinstance(_address(host), IPv6Address):
            raise ListenAddressError(flag, text, "brackets hold an IPv6 address: [::1]:9550")
    elif ":" in host:
        raise ListenAddressError(flag, text, "an IPv6 address goes in brackets: [::1]:9550")
    elif host == "":
        host = DEFAULT_LISTEN_HOST
    elif not isinstance(_address(host), IPv4Address) and _HOSTNAME.fullmatch(host) is None:
        raise ListenAddressError(
            flag, text, f"{host!r} is not an IPv4 address, [IPv6] address or host name"
        )
    return ListenAddress(host, int(port))


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None
