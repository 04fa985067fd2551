"""Keep the kernel's IP stack off the NVGRE that a receive ring already took.

Why: a packet tap (the ring) gets its copy of a frame before the kernel's receive path
goes on, so without this every NVGRE datagram also runs through the IP stack (routing,
the raw GRE sockets and their drop-all filter, the GRE demultiplexer) on whichever
core received it, for nothing: in ``make bench`` that core is the sender's, and it
spends 3.5 us per datagram with the drop against 4.1 without. The daemon drops GRE to
the ring's PAs at each provider interface's ingress with an nftables table of its own
(netdev family), which the kernel runs after the packet taps and before IP.

The table has nftables' ``owner`` flag: it belongs to the netlink socket that created
it, and the kernel deletes it when that socket closes, so a daemon that is killed
leaves no rule behind to blackhole NVGRE. That is why it goes through libnftables (the
``nft`` command's library, Debian's libnftables1) by ctypes: a library context keeps
its socket open for as long as the daemon holds it, where the ``nft`` command's
socket, and with it the table, would go when the command exits. Closing a socket needs
no capability, so a daemon that gave up root (``--user``) still ends its table.

Without libnftables or nf_tables' netdev family the daemon says so once and goes on:
the kernel then does the redundant work, as it does with ``--provider-rx socket``.
Every GRE datagram to those PAs is the daemon's (the ring's filter takes all of them),
so a kernel GRE tunnel must not share an NVGRE PA.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterable
from typing import Final

_LIBRARY: Final = "libnftables.so.1"


class IngressDropError(OSError):
    """The table could not be made: the message says why (the library, the kernel)."""


class IngressDrop:
    """The node's table, alive as long as this object is (``close()`` ends it).

    ``interfaces`` are (interface, packed PAs) pairs: the receive rings' filters."""

    def __init__(self, node: str, interfaces: Iterable[tuple[str, Iterable[bytes]]]) -> None:
        self.table = f"nvgw-{node}"
        try:
            self._lib = ctypes.CDLL(_LIBRARY)
        except OSError as error:
            message = f"{_LIBRARY} not found (apt install libnftables1): {error}"
            raise IngressDropError(message) from None
        lib = self._lib
        try:  # all of them since libnftables 0.9.1 (2019)
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        except AttributeError as error:
            raise IngressDropError(f"{_LIBRARY} is too old (libnftables 0.9.1+): {error}") from None
        self._ctx: int | None = lib.nft_ctx_new(0)
        if not self._ctx:
            raise IngressDropError("nft_ctx_new failed")
        lib.nft_ctx_buffer_error(self._ctx)
        ruleset = ingress_ruleset(self.table, interfaces)
        if lib.nft_run_cmd_from_buffer(self._ctx, ruleset.encode()) != 0:
            said = (lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
            self.close()
            reason = "; ".join(line.strip() for line in said.splitlines() if line.strip())
            raise IngressDropError(f"nftables refused table {self.table}: {reason}")

    def close(self) -> None:
        """Free the context: its socket closes and the kernel deletes the table."""
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def ingress_ruleset(table: str, interfaces: Iterable[tuple[str, Iterable[bytes]]]) -> str:
    """The table in nft's syntax: a chain per interface, hooked at its ingress,
    dropping IPv4 GRE to that interface's PAs and accepting the rest."""
    chains = []
    for n, (interface, pas) in enumerate(interfaces):
        addresses = ", ".join(sorted(socket.inet_ntoa(pa) for pa in pas))
        chains.append(
            f"  chain ring{n} {{\n"
            f'    type filter hook ingress device "{interface}" priority 0; policy accept;\n'
            f"    meta protocol ip ip protocol gre ip daddr {{ {addresses} }} drop\n"
            "  }\n"
        )
    return f"table netdev {table} {{\n  flags owner\n{''.join(chains)}}}\n"
