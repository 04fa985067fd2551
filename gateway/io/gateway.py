"""The gateway role's adapters: what a gateway node opens, reads and writes.

From its plan (``gateway.dataplane.plan``): NVGRE on its PAs as a host has it
(``nvgre.py``: a raw GRE socket per PA, the receive rings), read into
``gateway_from_provider``; and a TAP per ``GatewayTap`` of its tables (``ports.py``),
read into ``gateway_from_tap`` with the TAP it came from (the external TAP of its
NAT too, as a TAP of its own; ``gateway_from_tap`` tells the two apart). Its decisions
go out through one ``FdOutput``. With a NAT, a task ends idle sessions and writes the
translation log once a second (``napt_log.py``). A gateway holds no IP-Rewrite PA,
so it has no provider link socket.

Site-to-site tunnels: a UDP socket per listen port of its tunnels (bound on every
address of the node's namespace, non-blocking), read in batches with each
datagram's source (``read_socket_from``) into ``gateway_from_tunnel``; sockets
follow the ports a reload adds or removes. A task fires the tunnels' timers every
``TICK_S``. The keys are read from the node's files each time its tables are built
(start and every reload, ``read_tunnel_keys``): a key file that others may read, or
that holds no base64 of 32 bytes, refuses the policy with a ConfigError naming it.
The keys go to the data plane only: never to a log, a metric or the API.

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

import os
import socket
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.abc import TaskGroup

from gateway.dataplane import (
    Counters,
    ExternalTap,
    GatewayNode,
    GatewayTables,
    GatewayTap,
    NodePlan,
    TunnelKeys,
    gateway_from_provider,
    gateway_from_tap,
    gateway_from_tunnel,
    gateway_tunnel_tick,
    new_device,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.io.faults import PacketFaults
from gateway.io.napt_log import napt_housekeeping
from gateway.io.nvgre import NvgreSockets, ProviderIo
from gateway.io.output import FdOutput
from gateway.io.ports import TapPorts
from gateway.io.readers import ForBatch, SourcedHandler, each_batch_for, read_socket_from
from gateway.policy import Policy, Snapshot, decode_key

_CORP_MAC_BYTE = 0x43  # "C": the corp side's end of a gateway's TAP ("NG" is the gateway's)
TICK_S: Final = 0.1  # the tunnels' timers: WireGuard's are seconds, jitter a third of one
_KEY_FILE_MAX: Final = 1024  # a key file is a line of 44 characters: read no further
_OTHERS: Final = 0o077  # group and other permission bits: a key file must have none


def read_tunnel_keys(policy: Policy, node: str) -> TunnelKeys:
    """The gateway node's tunnel keys from the files its policy names: the private
    key per listen port, the preshared key per tunnel served here. ConfigError, with
    every file that will not do, each named with its policy path."""
    gateway = policy.node(node)
    issues: list[ConfigIssue] = []
    private = {}
    for port, path in (gateway.tunnel_keys or {}).items():
        key = _read_key(path, f"nodes.{node}.tunnel_keys.{port}", issues)
        if key is not None:
            private[port] = key
    preshared = {}
    for index, tunnel in enumerate(policy.tunnels):
        if tunnel.node == node and tunnel.preshared_key_file is not None:
            where = f"tunnels[{index}].preshared_key_file"
            key = _read_key(tunnel.preshared_key_file, where, issues)
            if key is not None:
                preshared[tunnel.name] = key
    if issues:
        raise ConfigError(issues)
    return TunnelKeys(private, preshared)


def _read_key(path: str, where: str, issues: list[ConfigIssue]) -> bytes | None:
    """One key file's 32 bytes; None (and an issue naming it) when it will not do.
    A link is followed (secret stores mount keys through links): the mode checked is
    the file's that is read. The file's content is never part of the message."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        issues.append(ConfigIssue(where, path, f"cannot read this key file: {error.strerror}"))
        return None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            issues.append(ConfigIssue(where, path, "a key file must be a regular file"))
            return None
        if mode & _OTHERS:
            message = (
                f"others may read this key file (mode {stat.S_IMODE(mode):04o}): "
                "chmod 600 it (owned by the daemon's user)"
            )
            issues.append(ConfigIssue(where, path, message))
            return None
        text = os.read(fd, _KEY_FILE_MAX)
    except OSError as error:
        issues.append(ConfigIssue(where, path, f"cannot read this key file: {error.strerror}"))
        return None
    finally:
        os.close(fd)
    try:
        return decode_key(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        message = "not a WireGuard key: the file must hold base64 of 32 bytes (wg genkey's)"
        issues.append(ConfigIssue(where, path, message))
        return None


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
        """The node's view of a snapshot, in the store's worker thread (O(policy)),
        with its tunnel keys read again from their files."""
        keys = read_tunnel_keys(snapshot.policy, plan.name)
        return GatewayTables(snapshot, plan.name, counters, tunnel_keys=keys)

    def __init__(
        self,
        plan: NodePlan,
        tables: GatewayTables,
        counters: Counters,
        faults: PacketFaults,
        provider: ProviderIo,
    ) -> None:
        self.plan = plan
        self.faults = faults
        self.nvgre = NvgreSockets(plan, counters, faults, provider)
        self.out = FdOutput(counters.drops, {}, self.nvgre.gre)
        self.taps = TapPorts(faults, self._tap_reader, self.out.flush)
        self.out.tap_fds = self.taps.fds  # the Output's live view of the TAPs
        self.udp: dict[int, tuple[socket.socket, anyio.CancelScope]] = {}
        self._tg: TaskGroup | None = None
        # TAI64N timestamps from the wall clock: its offset from the monotonic ``now``.
        wall_offset_s = time.time() - anyio.current_time()
        self.node = GatewayNode(
            tables.snapshot, plan.name, self.out, counters, tables, new_device(wall_offset_s)
        )
        try:
            self._follow_ports()  # as root: a listen port below 1024 may be bound
        except BaseException:
            self.close()
            raise

    async def start(self, tg: TaskGroup) -> None:
        """Start the provider readers, then create the TAPs (each with its reader);
        returns once every TAP exists."""
        self.nvgre.start(tg, gateway_from_provider, self.node, self.out)
        await self.taps.open(tg, _kernel_ends(self.node.tables.tap_by_name.values()).values())
        tg.start_soon(napt_housekeeping, self.node)
        self._tg = tg
        for port in self.udp:
            self._start_udp(port)
        tg.start_soon(self._tick)

    async def adopt(self, tables: GatewayTables) -> None:
        """Swap the tables in (between batches), then follow the TAPs: those the
        policy no longer has are closed, new ones created (ApplyError when one could
        not be)."""
        self.node.adopt(tables)
        self._follow_ports()
        await self.taps.reconcile(_kernel_ends(tables.tap_by_name.values()))

    def _follow_ports(self) -> None:
        """A socket per listen port of the node's tunnels: new ports opened (and read,
        once started), ports no tunnel uses closed."""
        wanted = set(self.node.tunnel_ports)
        for port in set(self.udp) - wanted:
            sock, scope = self.udp.pop(port)
            self.out.udp.pop(port, None)
            if self._tg is None:
                sock.close()  # never read
            else:
                scope.cancel()  # its reader closes it as it ends (``readiness.py``)
        for port in wanted - set(self.udp):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(("0.0.0.0", port))
            except BaseException:
                sock.close()
                raise
            self.udp[port] = (sock, anyio.CancelScope())
            self.out.udp[port] = sock
            if self._tg is not None:
                self._start_udp(port)

    def _start_udp(self, port: int) -> None:
        assert self._tg is not None
        sock, scope = self.udp[port]
        fault = self.faults.reader(f"tunnel port {port}", ethernet=False)
        node = self.node

        def for_batch(now: float) -> SourcedHandler:
            node.now = now
            return lambda datagram, source: gateway_from_tunnel(node, port, datagram, source)

        async def serve() -> None:
            try:
                with scope:
                    await read_socket_from(sock, for_batch, fault, self.out.flush)
            finally:
                sock.close()

        self._tg.start_soon(serve)

    async def _tick(self) -> None:
        """The tunnels' timers, every ``TICK_S`` (handshake retries, keepalives)."""
        node = self.node
        while True:
            await anyio.sleep(TICK_S)
            node.now = anyio.current_time()
            gateway_tunnel_tick(node)
            self.out.flush()

    def _tap_reader(self, name: str) -> ForBatch:
        """The ``for_batch`` of TAP ``name``."""
        node = self.node
        return each_batch_for(gateway_from_tap, node, lambda: node.tables.tap_by_name.get(name))

    def port_names(self) -> list[str]:
        return self.taps.names()

    def kernel_drops(self) -> int:
        return self.nvgre.kernel_drops()

    def close(self) -> None:
        for sock, scope in self.udp.values():
            scope.cancel()
            sock.close()
        self.udp.clear()
        self.taps.close()
        self.nvgre.close()
