"""The daemon: one node of a deployment, whatever its role, on asyncio or trio.

What it owns is the node's life, never a packet: the policy store (read at start,
seeded from ``--config`` if empty, re-read on SIGHUP, changed through the API, and
followed: when a database another daemon writes may have moved, its revision is
asked and a new one read, ``PolicyStore.moves``), the role's adapters (``roles.py``: what
the node opens, reads and writes), the listeners (``listeners.py``), privileges,
signals, systemd's notify and watchdog, and the drop summaries. One anyio task group
holds all of it: the role's readers, one per fd, never await per packet
(``readers.py``), and a full batch yields once so the other tasks get a turn.

A change (SIGHUP or the API) is read, validated and compiled, and the node's tables
built, in the store's worker thread; then swapped in between batches: the event
loop runs one task at a time, so no batch ever sees half a policy. A refused file
is logged with every problem and the old policy stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Final

import anyio
import structlog
from anyio.abc import TaskStatus

from gateway.control import (
    ApplyError,
    PolicyStore,
    build_api,
    counters_json,
    load_config,
    node_sessions,
    node_tunnels,
)
from gateway.dataplane import Counters, NodePlan, prepare_node
from gateway.errors import ConfigError, Drop
from gateway.io.faults import PacketFaults
from gateway.io.listeners import ApiListen, ApiListeners, open_metrics
from gateway.io.nvgre import ProviderIo
from gateway.io.privileges import become, check_access, lookup_user
from gateway.io.readiness import event_loop_name
from gateway.io.roles import ROLES, Serving
from gateway.io.systemd import notify, watchdog_interval
from gateway.netnames import format_host_port
from gateway.policy import Policy

DROP_SUMMARY_INTERVAL_S: Final = 10.0
PROVIDER_RX: Final = ("ring", "socket")  # how NVGRE is received: AF_PACKET ring, raw socket
PROVIDER_TX: Final = ("link", "kernel")  # how it is sent: framed on the link, raw socket
CAPABILITIES_KEPT: Final = ("CAP_NET_ADMIN", "CAP_NET_RAW")  # io/privileges.py says why

log = structlog.get_logger("nvgw")


class Daemon:
    def __init__(
        self,
        store: Path | str,
        node: str,
        metrics_listen: str = "127.0.0.1:0",
        provider_rx: str = "ring",
        api: ApiListen | None = None,
        user: str | None = None,
        seed: Path | None = None,
        provider_tx: str = "link",
    ) -> None:
        """``store`` is a store URL (``sqlite:PATH``, ``etcd://...``, ``file:PATH``) or a config
        file's path (``file:``); ``seed`` a config that fills an empty database."""
        if provider_rx not in PROVIDER_RX:
            raise ValueError(f"provider_rx is one of {', '.join(PROVIDER_RX)}")
        if provider_tx not in PROVIDER_TX:
            raise ValueError(f"provider_tx is one of {', '.join(PROVIDER_TX)}")
        self.seed = seed
        self.node = node
        self.metrics_listen = metrics_listen
        self.provider = ProviderIo(provider_rx, provider_tx)
        self.api = api
        self.user = user
        self.store = PolicyStore(store, self._prepare, self._commit)
        self.config = self.store.path  # the file that holds the policy
        self.reloads = {"applied": 0, "refused": 0}
        self.counters = Counters()
        self.faults = PacketFaults(self.counters.drops)  # the readers' barrier (faults.py)
        self.plan: NodePlan | None = None  # what the node opened at start
        self.serving: Serving | None = None
        self._first: Any = None  # the tables read at start, until run() serves them

    # ---------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: TaskStatus[dict] = anyio.TASK_STATUS_IGNORED) -> None:
        ids = lookup_user(self.user) if self.user else None
        seed = None
        if self.seed is not None:
            seed = (await anyio.to_thread.run_sync(load_config, self.seed), str(self.seed))
        try:
            await self.store.load(seed)
            if ids is not None:  # a store on a server (etcd: no path) is no file to write
                writes = self.api is not None and self.store.backend.writable
                check_access(*ids, self.store.path, api=writes and self.store.path is not None)
        except BaseException:
            self.store.close()
            raise
        tables, self._first = self._first, None
        assert self.plan is not None and tables is not None
        with contextlib.ExitStack() as cleanup:
            serving = ROLES[self.plan.role](
                self.plan, tables, self.counters, self.faults, self.provider
            )
            cleanup.callback(serving.close)
            listeners = ApiListeners(self.api)  # bound before anything is served
            cleanup.callback(listeners.close)
            metrics = open_metrics(
                self.metrics_listen,
                self.node,
                self.counters,
                lambda: serving.node.tables,
                serving.kernel_drops,
                lambda: self.reloads,
                lambda: self.store.changes,
            )
            cleanup.callback(metrics.close)
            try:
                async with anyio.create_task_group() as tg:
                    await serving.start(tg)
                    if ids is not None:  # everything only root may open is open: drop it
                        listeners.hand_over(*ids)
                        become(*ids)
                        log.info(
                            "privileges dropped",
                            user=self.user,
                            uid=ids[0],
                            capabilities=CAPABILITIES_KEPT,
                        )
                    await tg.start(self._signals, tg.cancel_scope)  # SIGHUP from "ready" on
                    tg.start_soon(self._drop_summaries)
                    if self.store.backend.follows:
                        tg.start_soon(self._follow)
                    app = build_api(
                        self.store,
                        self.node,
                        lambda: counters_json(self.counters),
                        nat_sessions=lambda: node_sessions(serving.node),
                        tunnels=lambda: node_tunnels(serving.node),
                    )
                    listeners.serve(tg, app)
                    self.serving = serving  # commits swap from now on
                    ready = {
                        "node": self.node,
                        "pid": os.getpid(),
                        "metrics": format_host_port(metrics.host, metrics.port),
                        "ports": serving.port_names(),
                        "revision": tables.snapshot.revision,
                        "api": listeners.unix_path(),
                        "api_tcp": listeners.tcp_address(),
                        "uid": os.getuid(),
                        "event_loop": event_loop_name(),
                    }
                    log.info("ready", **ready)
                    notify("READY=1", self._status(), f"MAINPID={os.getpid()}")
                    interval = watchdog_interval()
                    if interval is not None:
                        tg.start_soon(self._watchdog, interval)
                    task_status.started(ready)
            finally:
                cleanup.close()
                self.store.close()
                log.info("stopped", drops=_nonzero_drops(self.counters.drops))

    def _status(self) -> str:
        assert self.serving is not None
        revision = self.serving.node.tables.snapshot.revision
        ports = len(self.serving.port_names())
        return f"STATUS=node {self.node}: policy revision {revision}, {ports} ports"

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop: if a batch ever wedges it, systemd knows."""
        while True:
            notify("WATCHDOG=1")
            await anyio.sleep(interval)

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

    async def _follow(self) -> None:
        """Ask the store's revision whenever another writer may have committed
        (``PolicyStore.moves``); read one another daemon committed. A revision this
        node refused (a policy it cannot serve) is not read again until the store
        moves past it; a store that cannot be read is logged once per reason."""
        refused: int | None = None
        failing = ""
        async with self.store.moves() as moved:
            while True:
                await moved()
                try:
                    revision = await self.store.committed_revision()
                except Exception as error:  # a disk error: keep forwarding, say so once
                    if str(error) != failing:
                        failing = str(error)
                        log.error("policy store unreadable", store=self.store.url, reason=failing)
                    continue
                failing = ""
                running = self.store.policy
                if revision is None or running is None or revision in (running.revision, refused):
                    continue
                refused = None if await self.reload(moved_only=True) else revision

    async def reload(self, *, moved_only: bool = False) -> bool:
        """Re-read the store (SIGHUP, or another daemon's write); swap it in whole, or
        keep the old policy and say why. ``moved_only``: not if the store is at the
        running revision by the time its lock is ours (this daemon's own change,
        committed while the follower polled): no reload, none counted.

        Nothing a reload raises stops the daemon. A file gone (deleted, renamed away
        mid-save, a dangling link) or unreadable is a ConfigError naming it, like an
        invalid one; anything else (a bug, a file pathological enough to exhaust the
        parser) is refused all the same, with its traceback in the log.
        """
        try:
            if await self.store.load(moved_only=moved_only) is None:
                return True
        except ApplyError:  # in force, but a port unserved: logged where it failed
            self.reloads["applied"] += 1
            return False
        except ConfigError as error:
            reasons = [str(issue) for issue in error.issues]
            log.error("policy refused", store=self.store.url, errors=reasons)
        except Exception as error:  # never the signal task's death, and the daemon's with it
            reason = f"{type(error).__name__}: {error}"
            log.error("policy refused", store=self.store.url, errors=[reason], exc_info=True)
        else:
            self.reloads["applied"] += 1
            return True
        self.reloads["refused"] += 1
        return False

    def _prepare(self, policy: Policy) -> tuple[NodePlan, Any, dict[str, int]]:
        """Runs in the store's worker thread: compile, plan the node (refusing what it
        cannot serve, or cannot change while running) and build its tables; and the
        counts the change's log line gives (a pass over every record: 10^5 on a
        gateway, here rather than on the event loop)."""
        running = self.plan if self.serving is not None else None
        # The snapshot in force, which a change of records alone updates (the
        # store's lock keeps it the one of the revision the change starts from).
        previous = self.serving.node.tables.snapshot if self.serving is not None else None
        snapshot, plan = prepare_node(policy, self.node, running, previous)
        counts = policy.counts() if self.serving is not None else {}  # start: no line
        return plan, ROLES[plan.role].tables(snapshot, plan, self.counters), counts

    async def _commit(self, prepared: tuple[NodePlan, Any, dict[str, int]]) -> None:
        plan, tables, counts = prepared
        if self.serving is None:  # start-up: run() serves it
            self.plan, self._first = plan, tables
            for port, ca in plan.ipv6_not_forwarded:  # decisions.md, "IPv6"
                log.warning(
                    "ipv6 not forwarded",
                    port=port,
                    ca=ca,
                    detail="a dual-stack port: its IPv4 is forwarded, its IPv6 frames "
                    "are dropped and counted as unsupported (IPv4 only so far)",
                )
            return
        await self.serving.adopt(tables)
        snapshot = tables.snapshot
        log.info(
            "policy applied",
            revision=snapshot.revision,
            port_names=self.serving.port_names(),
            **counts,
        )

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


def ready_line(ready: dict) -> bytes:
    return (json.dumps(ready, sort_keys=True) + "\n").encode()
