"""A node's NVGRE on its provider addresses, whatever its role: what it opens, reads
and closes.

One raw GRE socket bound to each NVGRE PA (it sends NVGRE, and receives it unless a
ring does: ``provider.py``), and with ``--provider-rx ring`` (the default) one receive
ring per interface that carries NVGRE PAs, filtering for that interface's PAs (which
cannot change while the daemon runs: ``plan_node`` refuses it), with the kernel's IP
stack kept off what the rings read (``ingress_drop.py``); the GRE sockets then only
send (and, open, keep the kernel from answering GRE itself). Each fd gets a
reader that hands the datagrams, outer IPv4 header first, to the role's entry point
(the host's ``from_provider``, the gateway's ``gateway_from_provider``). With
``--provider-tx link`` (the default) NVGRE leaves framed by the daemon on the
provider link once the kernel has resolved where it goes (``link_tx.py``), and the
GRE sockets send only what it has not.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import NamedTuple

import structlog
from anyio.abc import TaskGroup

from gateway.dataplane import Counters, NodePlan
from gateway.io.faults import PacketFaults
from gateway.io.ingress_drop import IngressDrop, IngressDropError
from gateway.io.link_tx import LinkTx
from gateway.io.output import FdOutput
from gateway.io.provider import link_mtu, open_gre_socket
from gateway.io.readers import Node, each_batch, read_ring, read_socket
from gateway.io.ring import ReceiveRing, attach_drop_all

log = structlog.get_logger("nvgw")


class ProviderIo(NamedTuple):
    """How a node takes NVGRE in (``ring``: an AF_PACKET receive ring; ``socket``:
    its raw GRE sockets) and sends it (``link``: framed by the daemon on the link,
    ``link_tx.py``; ``kernel``: its raw GRE sockets)."""

    rx: str = "ring"
    tx: str = "link"


class NvgreSockets:
    """The GRE sockets (``gre``: PA -> socket, the Output's senders) and receive rings
    of one node. Opened as root in the constructor; if that fails, what was opened is
    closed again; once built, ``close()`` is the caller's."""

    def __init__(
        self, plan: NodePlan, counters: Counters, faults: PacketFaults, provider: ProviderIo
    ) -> None:
        self.faults = faults
        self.gre: dict[bytes, socket.socket] = {}
        self.rings: list[ReceiveRing] = []
        self.ingress_drop: IngressDrop | None = None
        self.link_tx = LinkTx() if provider.tx == "link" and plan.nvgre_pas else None
        try:
            for pa in plan.nvgre_pas:
                self.gre[pa] = _bind_or_explain(pa, plan.link_interface)
            if provider.rx == "ring" and plan.nvgre_pas:
                for interface, pas in plan.nvgre_by_interface:
                    fault = faults.reader(f"provider ring {interface}", ethernet=False)
                    mtu = link_mtu(interface)
                    self.rings.append(ReceiveRing(interface, mtu, counters.drops, pas, fault))
                for sock in self.gre.values():
                    attach_drop_all(sock)
                self.ingress_drop = _drop_at_ingress(plan)
        except BaseException:
            self.close()
            raise

    def start(
        self,
        tg: TaskGroup,
        handle: Callable[[Node, memoryview], None],
        node: Node,
        out: FdOutput,
    ) -> None:
        """A reader per receiving fd (the rings, else the GRE sockets), each calling
        ``handle(node, datagram)`` and ``out.flush`` after each batch; and the link's
        refreshes, which ``out`` frames by."""
        flush = out.flush
        if self.link_tx is not None:
            out.wanted = set()
            tg.start_soon(self.link_tx.run, out)
        for ring in self.rings:
            tg.start_soon(read_ring, ring, handle, node, flush)
        if not self.rings:
            for pa, sock in self.gre.items():
                fault = self.faults.reader(f"nvgre {socket.inet_ntoa(pa)}", ethernet=False)
                tg.start_soon(read_socket, sock, each_batch(handle, node), fault, flush)

    def kernel_drops(self) -> int:
        """Frames the kernel dropped before we could read them (ring full)."""
        return sum(ring.read_kernel_drops() for ring in self.rings)

    def close(self) -> None:
        if self.ingress_drop is not None:
            self.ingress_drop.close()
        if self.link_tx is not None:
            self.link_tx.close()
        for sock in self.gre.values():
            sock.close()
        for ring in self.rings:
            ring.close()


def _drop_at_ingress(plan: NodePlan) -> IngressDrop | None:
    """The kernel kept off what the rings take (``ingress_drop.py``), or, if it cannot
    be, said once: the node works as well, at a higher cost per datagram."""
    try:
        return IngressDrop(plan.name, plan.nvgre_by_interface)
    except IngressDropError as error:
        log.warning("kernel also processes nvgre", reason=str(error))
        return None


def _bind_or_explain(pa: bytes, interface: str | None) -> socket.socket:
    try:
        return open_gre_socket(pa)
    except OSError as error:
        address = socket.inet_ntoa(pa)
        raise OSError(
            error.errno,
            f"cannot bind NVGRE PA {address}: {error.strerror}; the PA must be an address "
            f"of this namespace (ip addr add {address}/LEN dev {interface or 'IFACE'})",
        ) from None
