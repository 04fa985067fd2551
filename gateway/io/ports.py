"""The TAPs a node serves: creating each with its reader, and following policy changes.

Every TAP the daemon owns is one of these, whatever stands behind it (a VM's port
for the host role; a routing domain's TAP or the NAT's external one for the
gateway): one task per TAP creates it, reads it (``readers.read_fd``) and closes it
when cancelled, and ``fds`` is the name -> fd map the Output writes to
(``gateway.dataplane.output`` says why one map serves every role).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from gateway.control import ApplyError
from gateway.io.faults import PacketFaults
from gateway.io.readers import Flush, ForBatch, read_fd
from gateway.io.tap import Tap

log = structlog.get_logger("nvgw")


class TapPort(Protocol):
    """What a TAP is created from (``gateway.dataplane.HostPort`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def mac(self) -> bytes: ...
    @property
    def mtu(self) -> int: ...


class TapPorts:
    """A node's TAPs by name. ``reader_for(name)`` gives the ``for_batch`` of the TAP
    called ``name``: the role decides what its frames go to; ``flush`` ends each of
    its readers' batches (``readers.read``)."""

    def __init__(
        self,
        faults: PacketFaults,
        reader_for: Callable[[str], ForBatch],
        flush: Flush,
    ) -> None:
        self.taps: dict[str, Tap] = {}
        self.fds: dict[str, int] = {}  # the Output's live view: a port gone is port_down
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._faults = faults
        self._reader_for = reader_for
        self._flush = flush
        self._tg: TaskGroup | None = None

    async def open(self, tg: TaskGroup, ports: Iterable[TapPort]) -> None:
        """Create the TAPs of ``ports``, each served by a task of ``tg`` (from then on
        the changes' new TAPs too). Returns once every TAP exists: an error creating
        one is raised, as at start-up nothing is served yet."""
        self._tg = tg
        for port in ports:
            await tg.start(self._serve, port.name, port.mac, port.mtu)

    async def reconcile(self, wanted: Mapping[str, TapPort]) -> None:
        """Close the TAPs of ports gone, create those of ports new. A TAP that cannot
        be created leaves its port unserved (its frames count as port_down) and the
        others served; ApplyError says which, and why."""
        for name in [name for name in self.taps if name not in wanted]:
            self._scopes.pop(name).cancel()  # its task closes the TAP
        failed = []
        for name, port in wanted.items():
            if name not in self.taps:
                assert self._tg is not None, "open() first"
                try:
                    await self._tg.start(self._serve, name, port.mac, port.mtu)
                except OSError as error:
                    failed.append(str(error.strerror or error))
        if failed:
            log.error("ports not served", errors=failed)
            raise ApplyError("; ".join(failed))

    def names(self) -> list[str]:
        return sorted(self.taps)

    def close(self) -> None:
        for tap in self.taps.values():
            tap.close()
        self.taps.clear()
        self.fds.clear()

    async def _serve(
        self,
        name: str,
        mac: bytes,
        mtu: int,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        tap = Tap(name, mac, mtu)
        self.taps[name] = tap
        self.fds[name] = tap.fd
        try:
            with anyio.CancelScope() as scope:
                self._scopes[name] = scope
                task_status.started()
                fault = self._faults.reader(f"port {name}", ethernet=True)
                await read_fd(tap.fd, self._reader_for(name), fault, self._flush)
        finally:
            self.fds.pop(name, None)
            self.taps.pop(name, None)
            tap.close()
