"""The host role's adapters: what a host node opens, reads and writes.

From its plan (``gateway.dataplane.plan``): NVGRE on its PAs (``nvgre.py``: a raw
GRE socket bound to each NVGRE PA, a receive ring per interface that carries them),
the provider link's packet socket when the node has IP-Rewrite PAs, and a TAP per VM
port (``ports.py``).
Each fd gets a reader (``readers.py``) that hands its frames to the data plane's
entry point for it: ``from_provider`` (ring or GRE socket), ``from_provider_link``,
``from_port`` of the TAP's port. Its decisions go out through one ``FdOutput``.
"""

from __future__ import annotations

import socket

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
from gateway.io.nvgre import NvgreSockets, ProviderIo
from gateway.io.output import FdOutput
from gateway.io.ports import TapPorts
from gateway.io.provider import link_mac, open_link
from gateway.io.readers import ForBatch, each_batch, each_batch_for, read_socket
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
        provider: ProviderIo,
    ) -> None:
        self.plan = plan
        self.faults = faults
        self.nvgre = NvgreSockets(plan, counters, faults, provider)
        self.link: socket.socket | None = None
        self.out = FdOutput(counters.drops, {}, self.nvgre.gre)
        self.ports = TapPorts(faults, self._port_reader, self.out.flush)
        self.out.tap_fds = self.ports.fds  # the Output's live view of the TAPs
        interface = plan.link_interface
        try:
            provider_mac = link_mac(interface) if plan.rewrite_pas and interface else None
            if plan.rewrite_pas and interface:
                self.link = self.out.link = open_link(interface)
        except BaseException:
            self.close()
            raise
        self.node = HostNode(tables.snapshot, plan.name, self.out, counters, provider_mac, tables)

    async def start(self, tg: TaskGroup) -> None:
        """Start a reader per provider fd, then create the TAPs (each with its reader);
        returns once every TAP exists."""
        node = self.node
        self.nvgre.start(tg, from_provider, node, self.out)
        if self.link is not None:
            fault = self.faults.reader(f"provider link {self.plan.link_interface}", ethernet=True)
            reader = each_batch(from_provider_link, node)
            tg.start_soon(read_socket, self.link, reader, fault, self.out.flush)
        await self.ports.open(tg, node.tables.ports)

    async def adopt(self, tables: HostTables) -> None:
        """Swap the tables in (between batches), then follow the ports: ApplyError
        when a new port's TAP could not be created."""
        self.node.adopt(tables)
        await self.ports.reconcile(tables.port_by_name)

    def _port_reader(self, name: str) -> ForBatch:
        """The ``for_batch`` of port ``name``'s TAP."""
        node = self.node
        return each_batch_for(from_port, node, lambda: node.tables.port_by_name.get(name))

    def port_names(self) -> list[str]:
        return self.ports.names()

    def kernel_drops(self) -> int:
        """Frames the kernel dropped before we could read them (ring full)."""
        return self.nvgre.kernel_drops()

    def close(self) -> None:
        self.ports.close()
        self.nvgre.close()
        if self.link is not None:
            self.link.close()
