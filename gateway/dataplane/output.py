"""Where the data plane's decisions go: a protocol the io layer implements.

The data plane never writes a packet itself; it calls these, and the io layer carries
them out on real fds (``gateway.io.output.FdOutput``) while the tests collect them.

One Output for every role, with a method per *kind of carrier* rather than per role's
name for a destination, because that is what the io layer has to tell apart:

| method | carrier | host role | gateway role (later issues) |
| --- | --- | --- | --- |
| ``to_tap`` | a TAP the daemon owns | a VM's port | a domain's TAP, the NAT's external TAP |
| ``to_provider`` | NVGRE, outer IP by the kernel | to another host's PA | to a host's PA |
| ``to_provider_link`` | Ethernet on the provider link | IP-Rewrite and its ARP | |
| ``to_udp`` | a UDP socket on a listen port | | a site-to-site tunnel's datagrams |

A VM's port, a routing domain's TAP (private cloud) and the NAT's external TAP are the
same thing to the io layer: a TAP device the daemon created, written one frame per
``write()``, its interface name unique in the daemon's namespace. So they share
``to_tap``, whose argument is anything that says a TAP by its name (``NamedTap``:
``HostPort`` today), and ``FdOutput`` keeps one name -> fd map for all of them: a role
that adds TAPs adds entries, not a method or a second map. What the gateway does add
is a carrier of its own, the site-to-site tunnel (``to_udp``, a UDP socket per
listen port, the kernel adding the outer IP and UDP headers), as one more method
here: one Output per node whatever its role, so that the one fabric (tests, trace,
replay) carries every role's outputs the same way.
"""

from __future__ import annotations

from typing import Protocol


class NamedTap(Protocol):
    """A destination behind a TAP the daemon owns, known by its interface name."""

    @property
    def name(self) -> str: ...


class Output(Protocol):
    """Where decided packets go. The io layer writes them at once; tests collect them."""

    def to_tap(self, tap: NamedTap, frame: memoryview | bytes) -> None:
        """Write a whole Ethernet frame to one of the daemon's TAPs (a VM's port)."""

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        """Send NVGRE: the kernel adds the outer IP header (src_pa -> dst_pa, protocol 47)
        in front of the 8-byte GRE header and the inner frame."""

    def to_provider_link(self, frame: memoryview | bytes) -> None:
        """Send a whole Ethernet frame on the provider link: IP-Rewritten packets, and
        ARP for the rewrite PAs, which are the daemon's rather than the kernel's."""

    def to_udp(
        self, port: int, endpoint: tuple[str, int], datagram: bytes | bytearray | memoryview
    ) -> None:
        """Send a UDP datagram from the node's socket on ``port`` to ``endpoint``
        (address, port): a tunnel's WireGuard messages. Copy the datagram to keep it
        past the call."""
