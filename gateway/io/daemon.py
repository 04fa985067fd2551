"""The host-role daemon: the data plane's fds, its event loop, reloads and signals.

One anyio task group holds one reader task per provider socket and per TAP, the
signal handler and the drop-summary logger; it runs the same on asyncio and trio.
Each reader tries its fd first and waits for readiness only when it would block
(``_drain``): a whole batch is read, decided and written synchronously, so there is
no await per packet, and one ``checkpoint()`` per full batch lets the other tasks
(reloads, other ports) in under load.

A reload (SIGHUP) reads and validates the whole file, then swaps the snapshot
between batches: the event loop runs one task at a time, so no batch ever sees half
a policy. A refused file is logged with every problem and the old policy stays.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import anyio
import structlog
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry

from gateway.control.api import build_api, counters_json
from gateway.control.api_server import (
    ApiListenError,
    bind_tcp,
    bind_unix,
    hand_over_socket,
    protect,
    tls_context,
)
from gateway.control.api_server import serve as serve_api
from gateway.control.api_token import read_token
from gateway.control.store import ApplyError, PolicyStore
from gateway.dataplane import (
    Counters,
    HostNode,
    HostTables,
    from_port,
    from_provider,
    from_provider_link,
)
from gateway.errors import ConfigError, ConfigIssue, Drop
from gateway.io.faults import Fault, PacketFaults
from gateway.io.output import FdOutput
from gateway.io.privileges import become, check_access, lookup_user
from gateway.io.provider import link_mac, link_mtu, open_gre_socket, open_link
from gateway.io.ring import ReceiveRing, attach_drop_all
from gateway.io.systemd import notify, watchdog_interval
from gateway.io.tap import Tap
from gateway.policy import Node, Policy, Rule, Snapshot, compile_policy
from gateway.telemetry import DataplaneCollector, serve_metrics

# Frames handled per readiness before other tasks get a turn (wireguard-go's
# IdealBatchSize is 128; 64 keeps a TAP from starving the others on 2 cores).
BATCH: Final = 64
MAX_DATAGRAM: Final = 65535  # an IPv4 datagram's largest size: never truncate
DROP_SUMMARY_INTERVAL_S: Final = 10.0
PROVIDER_RX: Final = ("ring", "socket")  # how NVGRE is received: AF_PACKET ring, raw socket
CAPABILITIES_KEPT: Final = ("CAP_NET_ADMIN", "CAP_NET_RAW")  # io/privileges.py says why

log = structlog.get_logger("nvgw")


@dataclass(frozen=True)
class ApiListen:
    """Where the control API listens: a Unix socket (0600), and TCP with a token,
    over TLS with a certificate and its key (which loopback may do without)."""

    socket: Path
    tcp: str | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


Handler = Callable[[memoryview], None]


def _discard(frame: memoryview) -> None:
    del frame


NodePas = tuple[list[bytes], list[bytes]]  # NVGRE PAs, IP-Rewrite PAs (packed)


def node_plan(policy: Policy, node_name: str) -> NodePas:
    """This node's NVGRE PAs (kernel addresses) and IP-Rewrite PAs (the daemon's own).

    Raises ConfigError, as ``nvgw check`` would, when the file has no such node or
    asks this node for what the daemon cannot forward yet (IPv6 CAs and PAs): such
    a config is refused with each entry named, never accepted and then ignored.
    """
    try:
        node = policy.node(node_name)
    except KeyError:
        known = ", ".join(n.name for n in policy.nodes) or "none"
        raise ConfigError(
            [ConfigIssue("nodes", node_name, f"no such node (nodes: {known})")]
        ) from None
    issues = [
        ConfigIssue(f"nodes.{node_name}.provider_addresses[{i}].pa", str(pa.pa), _IPV4_ONLY)
        for i, pa in enumerate(node.provider_addresses)
        if pa.pa.version != 4
    ]
    ports = {(port.vsid, bytes(port.mac)) for port in node.ports}
    issues += [
        ConfigIssue(f"lookup_records[{i}].ca", str(record.ca), _IPV4_ONLY)
        for i, record in enumerate(policy.lookup_records)
        if record.ca.version != 4 and (record.vsid, bytes(record.mac)) in ports
    ]
    if issues:
        raise ConfigError(issues)
    rewrite = {r.pa.packed for r in policy.lookup_records if r.rule is Rule.IP_REWRITE}
    pas = [pa.pa.packed for pa in node.provider_addresses]
    return [pa for pa in pas if pa not in rewrite], [pa for pa in pas if pa in rewrite]


_IPV4_ONLY = "the host role forwards IPv4 only so far: this node cannot serve it"


def prepare_node(policy: Policy, node_name: str) -> tuple[Snapshot, NodePas]:
    """What a node swaps in: the compiled snapshot, and its planned PAs (``node_plan``
    refuses what this node cannot serve)."""
    return compile_policy(policy), node_plan(policy, node_name)


class HostDaemon:
    def __init__(
        self,
        config: Path,
        node: str,
        metrics_listen: str = "127.0.0.1:0",
        provider_rx: str = "ring",
        api: ApiListen | None = None,
        user: str | None = None,
    ) -> None:
        if provider_rx not in PROVIDER_RX:
            raise ValueError(f"provider_rx is one of {', '.join(PROVIDER_RX)}")
        self.config = config
        self.node = node
        self.metrics_listen = metrics_listen
        self.provider_rx = provider_rx
        self.api = api
        self.user = user
        self.store = PolicyStore(config, self._prepare, self._commit)
        self.rings: list[ReceiveRing] = []
        self.reloads = {"applied": 0, "refused": 0}
        self.counters = Counters()
        self.faults = PacketFaults(self.counters.drops)  # the readers' barrier (faults.py)
        self.taps: dict[str, Tap] = {}
        self.tap_fds: dict[str, int] = {}
        self.gre: dict[bytes, socket.socket] = {}
        self._port_scopes: dict[str, anyio.CancelScope] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._pas: NodePas = ([], [])
        self._token: str | None = None
        self._tls: ssl.SSLContext | None = None  # the TCP API's, loaded while still root
        self._serving = False  # set once the data plane runs: commits swap from then on
        self._first: HostTables | None = None
        self.dataplane: HostNode
        self.out: FdOutput
        self.link: socket.socket | None = None

    # ---------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: TaskStatus[dict] = anyio.TASK_STATUS_IGNORED) -> None:
        ids = lookup_user(self.user) if self.user else None
        if ids is not None:
            check_access(*ids, self.store.path, api=self.api is not None)
        await self.store.load()
        tables, self._first = self._first, None
        assert tables is not None
        snapshot = tables.snapshot
        encap_pas, rewrite_pas = self._pas
        node = snapshot.policy.node(self.node)
        interface = node.provider_addresses[0].interface if node.provider_addresses else None
        provider_mac = link_mac(interface) if rewrite_pas and interface else None
        self.out = FdOutput(self.counters.drops, self.tap_fds, self.gre)
        self.dataplane = HostNode(
            snapshot, self.node, self.out, self.counters, provider_mac, tables
        )
        for pa in encap_pas:
            self.gre[pa] = _bind_or_explain(pa, interface)
        if self.provider_rx == "ring" and encap_pas:
            self._open_rings(node)
        if rewrite_pas and interface:
            self.link = self.out.link = open_link(interface)
        registry = CollectorRegistry()
        registry.register(
            DataplaneCollector(
                self.node,
                self.counters,
                lambda: self.dataplane.tables,
                self._kernel_drops,
                lambda: self.reloads,
                lambda: self.store.changes,
            )
        )
        listeners = self._api_listeners()
        metrics = serve_metrics(registry, self.metrics_listen)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for ring in self.rings:
                    tg.start_soon(self._read_ring, ring)
                if not self.rings:
                    for pa, sock in self.gre.items():
                        fault = self.faults.reader(f"nvgre {socket.inet_ntoa(pa)}", ethernet=False)
                        tg.start_soon(self._read_socket, sock, self._provider_handler, fault)
                if self.link is not None:
                    fault = self.faults.reader(f"provider link {interface}", ethernet=True)
                    tg.start_soon(self._read_socket, self.link, self._link_handler, fault)
                for port in self.dataplane.tables.ports:
                    await tg.start(self._serve_port, port.name, port.mac, port.mtu)
                if ids is not None:  # everything only root may open is open: drop it
                    self._become(*ids)
                await tg.start(self._signals, tg.cancel_scope)  # SIGHUP handled from "ready" on
                tg.start_soon(self._drop_summaries)
                app = build_api(self.store, self.node, lambda: counters_json(self.counters))
                for sock in listeners:
                    served, tls = protect(app, sock, self._token, self._tls)
                    tg.start_soon(serve_api, served, sock, tls)
                self._serving = True
                ready = {
                    "node": self.node,
                    "pid": os.getpid(),
                    "metrics": f"{metrics.host}:{metrics.port}",
                    "ports": sorted(self.taps),
                    "revision": snapshot.revision,
                    "api": str(self.api.socket) if self.api else None,
                    "api_tcp": _tcp_address(listeners),
                    "uid": os.getuid(),
                }
                log.info("ready", **ready)
                notify("READY=1", self._status(), f"MAINPID={os.getpid()}")
                interval = watchdog_interval()
                if interval is not None:
                    tg.start_soon(self._watchdog, interval)
                task_status.started(ready)
        finally:
            metrics.close()
            self._close_all()
            for sock in listeners:
                sock.close()
            self._unlink_api_socket()
            log.info("stopped", drops=_nonzero_drops(self.counters.drops))

    def _close_all(self) -> None:
        for tap in self.taps.values():
            tap.close()
        self.taps.clear()
        self.tap_fds.clear()
        for sock in self.gre.values():
            sock.close()
        for ring in self.rings:
            ring.close()
        if self.link is not None:
            self.link.close()

    def _open_rings(self, node: Node) -> None:
        """One receive ring per interface that carries an NVGRE PA, filtering for that
        interface's PAs (which cannot change while the daemon runs: ``_prepare``
        refuses it); the GRE sockets then only send (and, open, keep the kernel from
        answering GRE itself)."""
        encap = set(self._pas[0])
        pas_of: dict[str, list[bytes]] = {}
        for address in node.provider_addresses:
            if address.pa.packed in encap:
                pas_of.setdefault(address.interface, []).append(address.pa.packed)
        for interface, pas in sorted(pas_of.items()):
            fault = self.faults.reader(f"provider ring {interface}", ethernet=False)
            mtu = link_mtu(interface)
            self.rings.append(ReceiveRing(interface, mtu, self.counters.drops, pas, fault))
        for sock in self.gre.values():
            attach_drop_all(sock)

    def _status(self) -> str:
        policy = self.dataplane.tables.snapshot.policy
        return f"STATUS=node {self.node}: policy revision {policy.revision}, {len(self.taps)} ports"

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop: if a batch ever wedges it, systemd knows."""
        while True:
            notify("WATCHDOG=1")
            await anyio.sleep(interval)

    def _kernel_drops(self) -> int:
        """Frames the kernel dropped before we could read them (ring or socket full)."""
        return sum(ring.read_kernel_drops() for ring in self.rings)

    async def _signals(
        self,
        scope: anyio.CancelScope,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Started before the daemon says it is ready: until the receiver is open, a
        SIGHUP (systemd's ExecReload right after READY=1) would kill it."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for received in signals:
                if received == signal.SIGHUP:
                    notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
                    await self.reload()
                    notify("READY=1", self._status())
                else:
                    log.info("stopping", signal=signal.Signals(received).name)
                    notify("STOPPING=1")
                    scope.cancel()
                    return

    async def reload(self) -> bool:
        """Re-read the config (SIGHUP); swap it in whole, or keep the old policy and say why.

        Nothing a reload raises stops the daemon. A file gone (deleted, renamed away
        mid-save, a dangling link) or unreadable is a ConfigError naming it, like an
        invalid one; anything else (a bug, a file pathological enough to exhaust the
        parser) is refused all the same, with its traceback in the log.
        """
        try:
            await self.store.load()
        except ApplyError:  # in force, but a port unserved: logged where it failed
            self.reloads["applied"] += 1
            return False
        except ConfigError as error:
            reasons = [str(issue) for issue in error.issues]
            log.error("policy refused", file=str(self.config), errors=reasons)
        except Exception as error:  # never the signal task's death, and the daemon's with it
            reason = f"{type(error).__name__}: {error}"
            log.error("policy refused", file=str(self.config), errors=[reason], exc_info=True)
        else:
            self.reloads["applied"] += 1
            return True
        self.reloads["refused"] += 1
        return False

    def _prepare(self, policy: Policy) -> tuple[HostTables, NodePas]:
        """Runs in the store's worker thread: compile, refuse what this node cannot
        apply while running, and build its tables (O(policy): never on the loop)."""
        snapshot, pas = prepare_node(policy, self.node)
        if self._serving and pas != self._pas:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"nodes.{self.node}.provider_addresses",
                        "changed",
                        "this node's provider addresses cannot change while it runs: "
                        "restart the daemon to apply them",
                    )
                ]
            )
        return HostTables(snapshot, self.node, self.counters), pas

    async def _commit(self, prepared: tuple[HostTables, NodePas]) -> None:
        tables, pas = prepared
        snapshot = tables.snapshot
        if not self._serving:  # start-up: run() builds the data plane from it
            self._first, self._pas = tables, pas
            return
        self.dataplane.adopt(tables)
        await self._reconcile_ports(tables)
        log.info(
            "policy applied",
            revision=snapshot.revision,
            port_names=sorted(self.taps),
            **snapshot.policy.counts(),
        )

    def _api_listeners(self) -> list[socket.socket]:
        """Bound before the data plane starts, so a taken socket stops start-up. TCP's
        token and TLS are read first (as root: the daemon's user may not read them),
        so a refused TCP listen leaves nothing bound."""
        api = self.api
        if api is None:
            return []
        tcp = None
        if api.tcp is None:
            if api.token_file or api.tls_cert or api.tls_key:
                raise ApiListenError(
                    errno.EINVAL, "--api-token-file and --api-tls-* go with --api-tcp only"
                )
        else:
            if api.token_file is None:
                raise ApiListenError(errno.EINVAL, "--api-tcp needs --api-token-file")
            if (api.tls_cert is None) != (api.tls_key is None):
                raise ApiListenError(errno.EINVAL, "--api-tls-cert and --api-tls-key go together")
            if api.tls_cert is not None and api.tls_key is not None:
                self._tls = tls_context(api.tls_cert, api.tls_key)
            self._token = read_token(api.token_file)
            tcp = bind_tcp(api.tcp, tls=self._tls is not None)
        try:
            unix = bind_unix(api.socket)
        except OSError:
            if tcp is not None:
                tcp.close()
            raise
        return [unix] if tcp is None else [unix, tcp]

    def _become(self, uid: int, gid: int) -> None:
        if self.api is not None:
            hand_over_socket(self.api.socket, uid, gid)  # by fd: never through a link
        become(uid, gid)
        log.info("privileges dropped", user=self.user, uid=uid, capabilities=CAPABILITIES_KEPT)

    def _unlink_api_socket(self) -> None:
        if self.api is not None:
            # As the daemon's user it may not own the directory: the next start clears it.
            with contextlib.suppress(PermissionError):
                self.api.socket.unlink(missing_ok=True)

    async def _reconcile_ports(self, tables: HostTables) -> None:
        """Close the TAPs of ports gone, create those of ports new. A TAP that cannot
        be created leaves its port unserved (its frames count as port_down) and the
        others served; the caller hears which, and why."""
        wanted = tables.port_by_name
        for name in [name for name in self.taps if name not in wanted]:
            self._port_scopes.pop(name).cancel()  # its task closes the TAP
        failed = []
        for name, port in wanted.items():
            if name not in self.taps:
                assert self._tg is not None
                try:
                    await self._tg.start(self._serve_port, name, port.mac, port.mtu)
                except OSError as error:
                    failed.append(str(error.strerror or error))
        if failed:
            log.error("ports not served", errors=failed)
            raise ApplyError("; ".join(failed))

    # ---------------------------------------------------------------- readers

    async def _serve_port(
        self,
        name: str,
        mac: bytes,
        mtu: int,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        tap = Tap(name, mac, mtu)
        self.taps[name] = tap
        self.tap_fds[name] = tap.fd
        try:
            with anyio.CancelScope() as scope:
                self._port_scopes[name] = scope
                task_status.started()
                fault = self.faults.reader(f"port {name}", ethernet=True)
                await self._read_fd(tap.fd, self._port_handler(name), fault)
        finally:
            self.tap_fds.pop(name, None)
            self.taps.pop(name, None)
            tap.close()

    # Each handler is looked up once per batch: the policy may be swapped between
    # batches, never within one, and a lookup per packet would cost for nothing.

    def _port_handler(self, name: str) -> Callable[[], Handler]:
        def for_batch() -> Handler:
            node = self.dataplane
            node.now = anyio.current_time()
            port = node.tables.port_by_name.get(name)
            if port is None:  # removed by a reload; its task is being cancelled
                return _discard
            return partial(from_port, node, port)

        return for_batch

    def _provider_handler(self) -> Handler:
        node = self.dataplane
        node.now = anyio.current_time()
        return partial(from_provider, node)

    def _link_handler(self) -> Handler:
        node = self.dataplane
        node.now = anyio.current_time()
        return partial(from_provider_link, node)

    async def _read_socket(
        self, sock: socket.socket, for_batch: Callable[[], Handler], on_fault: Fault
    ) -> None:
        await self._read(sock, sock.recv_into, for_batch, on_fault)

    async def _read_fd(self, fd: int, for_batch: Callable[[], Handler], on_fault: Fault) -> None:
        readv = os.readv
        await self._read(fd, lambda buffer: readv(fd, (buffer,)), for_batch, on_fault)

    async def _read(
        self,
        waitable: socket.socket | int,
        read_into: Callable[[bytearray], int],
        for_batch: Callable[[], Handler],
        on_fault: Fault,
    ) -> None:
        """Try the fd, drain up to a batch into one preallocated buffer (each frame
        handled before the next read), and wait for readiness only when it ran dry.

        The barrier: a frame the handler raises on goes to ``on_fault`` and the batch
        goes on. The ``try`` wraps the handler alone, so that a read that fails (a
        broken fd) still ends the reader rather than spin; it costs nothing per frame
        until it catches (Python 3.11's exceptions are zero-cost)."""
        buffer = bytearray(MAX_DATAGRAM)
        view = memoryview(buffer)
        while True:
            handled = 0
            handle = for_batch()
            try:
                while handled < BATCH:
                    size = read_into(buffer)
                    handled += 1
                    try:
                        handle(view[:size])
                    except Exception as error:  # a bug costs this frame, not the node
                        on_fault(error, view[:size])
            except BlockingIOError:
                pass
            if handled < BATCH:
                await anyio.wait_readable(waitable)
            else:
                await anyio.lowlevel.checkpoint()

    async def _read_ring(self, ring: ReceiveRing) -> None:
        drain = ring.drain
        while True:
            node = self.dataplane
            node.now = anyio.current_time()
            if drain(from_provider, node, BATCH) < BATCH:
                await anyio.wait_readable(ring)
            else:
                await anyio.lowlevel.checkpoint()

    async def _drop_summaries(self) -> None:
        """A log event when drops rose, at most every few seconds: never one per packet."""
        last = list(self.counters.drops)
        while True:
            await anyio.sleep(DROP_SUMMARY_INTERVAL_S)
            now = list(self.counters.drops)
            rose = {Drop(i).label: now[i] - last[i] for i in range(len(now)) if now[i] != last[i]}
            if rose:
                log.info("drops", interval_s=DROP_SUMMARY_INTERVAL_S, **rose)
            last = now


def _nonzero_drops(drops: list[int]) -> dict[str, int]:
    return {Drop(i).label: count for i, count in enumerate(drops) if count}


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


def _tcp_address(listeners: list[socket.socket]) -> str | None:
    """Where the API listens on TCP (the port the kernel chose, for port 0)."""
    for sock in listeners:
        if sock.family != socket.AF_UNIX:
            host, port = sock.getsockname()[:2]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return None


def ready_line(ready: dict) -> bytes:
    return (json.dumps(ready, sort_keys=True) + "\n").encode()
