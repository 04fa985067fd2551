"""The host role's adapters: what a host node opens, reads and writes.

From its plan (``gateway.dataplane.plan``): a raw GRE socket bound to each NVGRE PA
(it sends NVGRE, and receives it unless a ring does), a receive ring per interface
that carries NVGRE PAs (``--provider-rx ring``, the default), the provider link's
packet socket when the node has IP-Rewrite PAs, and a TAP per VM port (``ports.py``).
Each fd gets a reader (``readers.py``) that hands its frames to the data plane's
entry point for it: ``from_provider`` (ring or GRE socket), ``from_provider_link``,
``from_port`` of the TAP's port. Its decisions go out through one ``FdOutput``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial

import anyio
from anyio.abc import TaskGroup

from gateway.dataplane import (
    Counters,
    HostNode,
    HostTables,
    NodePlan,
    from_port,
    from_provider,
    from_provider_link,
)
from gateway.io.faults import PacketFaults
from gateway.io.output import FdOutput
from gateway.io.ports import TapPorts
from gateway.io.provider import link_mac, link_mtu, open_gre_socket, open_link
from gateway.io.readers import Handler, discard, each_batch, read_ring, read_socket
from gateway.io.ring import ReceiveRing, attach_drop_all
from gateway.policy import Snapshot


class HostServing:
    """One host node served: its state (``node``), its fds, its TAPs.

    Built as root, before privileges drop: everything only root may open is opened
    here (the TAPs in ``start``). If that fails, what was opened is closed again;
    once built, ``close()`` is the caller's."""

    @staticmethod
    def tables(snapshot: Snapshot, plan: NodePlan, counters: Counters) -> HostTables:
        """The node's view of a snapshot, in the store's worker thread (O(policy))."""
        return HostTables(snapshot, plan.name, counters)

    def __init__(
        self,
        plan: NodePlan,
        tables: HostTables,
        counters: Counters,
        faults: PacketFaults,
        provider_rx: str,
    ) -> None:
        self.plan = plan
        self.faults = faults
        self.gre: dict[bytes, socket.socket] = {}
        self.rings: list[ReceiveRing] = []
        self.link: socket.socket | None = None
        self.ports = TapPorts(faults, self._port_reader)
        self.out = FdOutput(counters.drops, self.ports.fds, self.gre)
        interface = plan.link_interface
        provider_mac = link_mac(interface) if plan.rewrite_pas and interface else None
        self.node = HostNode(tables.snapshot, plan.name, self.out, counters, provider_mac, tables)
        try:
            for pa in plan.nvgre_pas:
                self.gre[pa] = _bind_or_explain(pa, interface)
            if provider_rx == "ring" and plan.nvgre_pas:
                self._open_rings(plan, counters)
            if plan.rewrite_pas and interface:
                self.link = self.out.link = open_link(interface)
        except BaseException:
            self.close()
            raise

    def _open_rings(self, plan: NodePlan, counters: Counters) -> None:
        """One receive ring per interface that carries an NVGRE PA, filtering for that
        interface's PAs (which cannot change while the daemon runs: ``plan_node``
        refuses it); the GRE sockets then only send (and, open, keep the kernel from
        answering GRE itself)."""
        for interface, pas in plan.nvgre_by_interface:
            fault = self.faults.reader(f"provider ring {interface}", ethernet=False)
            mtu = link_mtu(interface)
            self.rings.append(ReceiveRing(interface, mtu, counters.drops, pas, fault))
        for sock in self.gre.values():
            attach_drop_all(sock)

    async def start(self, tg: TaskGroup) -> None:
        """Start a reader per provider fd, then create the TAPs (each with its reader);
        returns once every TAP exists."""
        node = self.node
        for ring in self.rings:
            tg.start_soon(read_ring, ring, from_provider, node)
        if not self.rings:
            for pa, sock in self.gre.items():
                fault = self.faults.reader(f"nvgre {socket.inet_ntoa(pa)}", ethernet=False)
                tg.start_soon(read_socket, sock, each_batch(from_provider, node), fault)
        if self.link is not None:
            fault = self.faults.reader(f"provider link {self.plan.link_interface}", ethernet=True)
            tg.start_soon(read_socket, self.link, each_batch(from_provider_link, node), fault)
        await self.ports.open(tg, node.tables.ports)

    async def adopt(self, tables: HostTables) -> None:
        """Swap the tables in (between batches), then follow the ports: ApplyError
        when a new port's TAP could not be created."""
        self.node.adopt(tables)
        await self.ports.reconcile(tables.port_by_name)

    def _port_reader(self, name: str) -> Callable[[], Handler]:
        """The ``for_batch`` of port ``name``'s TAP: its port is looked up once per
        batch, since a swap replaces the ports between batches."""
        node = self.node

        def for_batch() -> Handler:
            node.now = anyio.current_time()
            port = node.tables.port_by_name.get(name)
            if port is None:  # removed by a reload; its task is being cancelled
                return discard
            return partial(from_port, node, port)

        return for_batch

    def port_names(self) -> list[str]:
        return self.ports.names()

    def kernel_drops(self) -> int:
        """Frames the kernel dropped before we could read them (ring full)."""
        return sum(ring.read_kernel_drops() for ring in self.rings)

    def close(self) -> None:
        self.ports.close()
        for sock in self.gre.values():
            sock.close()
        for ring in self.rings:
            ring.close()
        if self.link is not None:
            self.link.close()


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
