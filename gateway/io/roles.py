"""Which adapters serve a node, by the role its config gives it.

The daemon (``daemon.py``) knows no role: it reads the node's plan
(``gateway.dataplane.plan_node``), looks its role up in ``ROLES``, and asks the
class it finds for the rest. Each role brings its own class (the host's
``host.py``, the gateway's ``gateway.py``), built from the shared pieces
(``nvgre.py``, ``readers.py``, ``ports.py``, ``output.py``), never a subclass of
another role's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from anyio.abc import TaskGroup

from gateway.dataplane import Counters, NodePlan
from gateway.io.faults import PacketFaults
from gateway.io.gateway import GatewayServing
from gateway.io.host import HostServing
from gateway.io.nvgre import ProviderIo
from gateway.policy import NodeRole, Snapshot


class Serving(Protocol):
    """One node served, as the daemon drives it (``HostServing`` is the host's)."""

    node: Any  # the role's data-plane state: its ``tables`` are the policy in force

    @staticmethod
    def tables(snapshot: Snapshot, plan: NodePlan, counters: Counters) -> Any:
        """The node's tables for a new policy, in the store's worker thread: pure and
        O(policy), so never on the event loop."""

    def __init__(
        self,
        plan: NodePlan,
        tables: Any,
        counters: Counters,
        faults: PacketFaults,
        provider: ProviderIo,
    ) -> None:
        """Open, as root, every fd the plan needs but the TAPs."""

    async def start(self, tg: TaskGroup) -> None:
        """Start the readers in ``tg`` and create the TAPs; return once they exist."""

    async def adopt(self, tables: Any) -> None:
        """Swap in new tables between batches and follow them (ports, TAPs); raise
        ApplyError for what could not follow (the tables are in force all the same)."""

    def port_names(self) -> list[str]:
        """The TAPs served, for the ready line and systemd's status."""

    def kernel_drops(self) -> int:
        """Frames the kernel dropped before the readers saw them."""

    def close(self) -> None:
        """Close every fd: the TAPs and the provider sockets."""


ROLES: Final[Mapping[NodeRole, type[Serving]]] = {
    NodeRole.HOST: HostServing,
    NodeRole.GATEWAY: GatewayServing,
}
