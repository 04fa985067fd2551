"""Where the data plane's decisions go: a protocol the io layer implements.

The data plane never writes a packet itself; it calls these, and the io layer carries
them out on real fds (``gateway.io.output.FdOutput``) while the tests collect them.
"""

from __future__ import annotations

from typing import Protocol

from gateway.dataplane.tables import HostPort


class Output(Protocol):
    """Where decided packets go. The io layer batches them; tests collect them."""

    def to_port(self, port: HostPort, frame: memoryview | bytes) -> None:
        """Write a whole Ethernet frame to a local VM's TAP."""

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        """Send NVGRE: the kernel adds the outer IP header (src_pa -> dst_pa, protocol 47)
        in front of the 8-byte GRE header and the inner frame."""

    def to_provider_link(self, frame: memoryview | bytes) -> None:
        """Send a whole Ethernet frame on the provider link: IP-Rewritten packets, and
        ARP for the rewrite PAs, which are the daemon's rather than the kernel's."""
