"""The gateway role's adapters: what a gateway node opens, reads and writes.

From its plan (``gateway.dataplane.plan``): NVGRE on its PAs as a host has it
(``nvgre.py``: a raw GRE socket per PA, the receive rings), read into
``gateway_from_provider``; and a TAP per ``GatewayTap`` of its tables (``ports.py``),
read into ``gateway_from_tap`` with the TAP it came from (the external TAP of its
NAT too, as a TAP of its own; ``gateway_from_tap`` tells the two apart). Its decisions
go out through one ``FdOutput``. With a NAT, a task ends idle sessions and writes the
translation log once a second (``napt_log.py``). A gateway holds no IP-Rewrite PA,
so it has no provider link socket.

A TAP here is an Ethernet link between the gateway and a corp network: the daemon
holds the gateway's end (its own address on the TAP and its MAC, ``tap_mac``), the
kernel's end is the corp side's NIC (the lab moves it into the corp namespace, as it
moves a VM's TAP into the VM). So the kernel end gets a MAC of its own, never the
gateway's (``corp_mac``: the gateway's with its third byte ``0x43``, "NC", stable
across restarts like it), and an MTU of 1500 (``TAP_MTU``): a plain Ethernet link,
wider than the tenant side (1458), so that what will not fit a VSID is the gateway's
to answer with fragmentation-needed, where path-MTU discovery from the corp side
finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from anyio.abc import TaskGroup

from gateway.dataplane import (
    Counters,
    ExternalTap,
    GatewayNode,
    GatewayTables,
    GatewayTap,
    NodePlan,
    gateway_from_provider,
    gateway_from_tap,
)
from gateway.io.faults import PacketFaults
from gateway.io.napt_log import napt_housekeeping
from gateway.io.nvgre import NvgreSockets
from gateway.io.output import FdOutput
from gateway.io.ports import TapPorts
from gateway.io.readers import Handler, each_batch_for
from gateway.policy import Snapshot

_CORP_MAC_BYTE = 0x43  # "C": the corp side's end of a gateway's TAP ("NG" is the gateway's)


def corp_mac(tap: GatewayTap | ExternalTap) -> bytes:
    """The MAC of the TAP's kernel end, the corp side's NIC: the gateway's own MAC on
    the TAP with its third byte changed, so the two never collide and both stay the
    same for the same TAP name."""
    return tap.mac[:2] + bytes((_CORP_MAC_BYTE,)) + tap.mac[3:]


@dataclass(frozen=True, slots=True)
class _KernelEnd:
    """What the TAP is created with (``ports.TapPort``): the kernel end's MAC and MTU."""

    name: str
    mac: bytes
    mtu: int


def _kernel_ends(taps: Iterable[GatewayTap | ExternalTap]) -> dict[str, _KernelEnd]:
    return {tap.name: _KernelEnd(tap.name, corp_mac(tap), tap.mtu) for tap in taps}


class GatewayServing:
    """One gateway node served: its state (``node``), its provider fds, its TAPs.

    Built as root, before privileges drop (the TAPs in ``start``); if opening fails,
    what was opened is closed again; once built, ``close()`` is the caller's."""

    @staticmethod
    def tables(snapshot: Snapshot, plan: NodePlan, counters: Counters) -> GatewayTables:
        """The node's view of a snapshot, in the store's worker thread (O(policy))."""
        return GatewayTables(snapshot, plan.name, counters)

    def __init__(
        self,
        plan: NodePlan,
        tables: GatewayTables,
        counters: Counters,
        faults: PacketFaults,
        provider_rx: str,
    ) -> None:
        self.plan = plan
        self.nvgre = NvgreSockets(plan, counters, faults, provider_rx)
        self.out = FdOutput(counters.drops, {}, self.nvgre.gre)
        self.taps = TapPorts(faults, self._tap_reader, self.out.flush)
        self.out.tap_fds = self.taps.fds  # the Output's live view of the TAPs
        self.node = GatewayNode(tables.snapshot, plan.name, self.out, counters, tables)

    async def start(self, tg: TaskGroup) -> None:
        """Start the provider readers, then create the TAPs (each with its reader);
        returns once every TAP exists."""
        self.nvgre.start(tg, gateway_from_provider, self.node, self.out.flush)
        await self.taps.open(tg, _kernel_ends(self.node.tables.tap_by_name.values()).values())
        tg.start_soon(napt_housekeeping, self.node)

    async def adopt(self, tables: GatewayTables) -> None:
        """Swap the tables in (between batches), then follow the TAPs: those the
        policy no longer has are closed, new ones created (ApplyError when one could
        not be)."""
        self.node.adopt(tables)
        await self.taps.reconcile(_kernel_ends(tables.tap_by_name.values()))

    def _tap_reader(self, name: str) -> Callable[[], Handler]:
        """The ``for_batch`` of TAP ``name``."""
        node = self.node
        return each_batch_for(gateway_from_tap, node, lambda: node.tables.tap_by_name.get(name))

    def port_names(self) -> list[str]:
        return self.taps.names()

    def kernel_drops(self) -> int:
        return self.nvgre.kernel_drops()

    def close(self) -> None:
        self.taps.close()
        self.nvgre.close()
