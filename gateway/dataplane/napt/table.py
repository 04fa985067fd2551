"""The NAT connection table, sans IO: sessions keyed both ways, limits, expiry, the
translation log, port forwards. ``now`` is always an argument (``neighbors.py`` is
the model); nothing here reads a clock, logs, or touches a socket.

Keys: a session is found going out by (RDID, protocol, CA, port, remote address,
remote port) and coming in by (protocol, external address, external port, remote
address, remote port); ICMP echo uses its identifier as the port and 0 as the remote
port. The RDID is part of the outbound key, so two tenants with the same CA and
source port hold two mappings, two external ports, and never see each other's
replies. Keys are made by ``session.out_key`` and ``session.in_key`` (addresses as
ints). (Mappings and filtering: ``session.py``.)

Bounds: a session is opened only while its tenant holds fewer than its
``max_sessions`` and the table fewer than its own ``max_sessions``; a mapping exists
only while a session (or a port forward) holds it, and a port only while a mapping
does; the log buffer holds at most ``log_capacity`` records and counts what it had
to refuse. So a flood of new flows from one VM costs at most its tenant's limit in
memory, and other tenants keep opening theirs.

Expiry: one queue per state (an insertion-ordered dict), each session at the place
of its last refresh (refreshed again at the same ``now``, in the same batch, it keeps
its place: its deadline is the same). Every session in a queue has the same idle
timeout, so each queue is in deadline order and ``expire`` reads heads only, up to
``limit`` sessions a call. A session found past its deadline by a packet is ended
there and then, so the verdict never depends on when ``expire`` last ran.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from gateway.dataplane.napt.ports import DYNAMIC_PORTS, AddressPool
from gateway.dataplane.napt.session import InKey, LogRecord, Mapping, OutKey, Session, Tenant
from gateway.dataplane.napt.states import STATE_COUNT, Timeouts
from gateway.errors import Drop
from gateway.wire import IPPROTO_TCP, IPPROTO_UDP

# Sessions the whole table holds (Linux sizes nf_conntrack_max from memory; 65,536
# sessions are tens of MB here: the benchmark reports the bytes per session).
MAX_SESSIONS: Final = 65_536
# Sessions one routing domain may hold unless configured: a sixteenth of the table,
# so one tenant's flood leaves room for fifteen more at their limit.
TENANT_MAX_SESSIONS: Final = MAX_SESSIONS // 16
# Translation log records waiting for the io side, which drains them every batch.
LOG_CAPACITY: Final = 4_096
# Port forwards as ``set_forwards`` takes them: (protocol, external address, port) ->
# (tenant, CA, CA port).
ForwardTargets = dict[tuple[int, bytes, int], tuple[Tenant, bytes, int]]
# Sessions ``expire`` ends or looks at per call: the rest wait for the next call, so
# a mass expiry never holds the packet loop up for long.
EXPIRE_BATCH: Final = 256


class Napt:
    """Source NAPT for every tenant of one gateway, over one pool of addresses."""

    __slots__ = (
        "by_in",
        "by_out",
        "count",
        "ended",
        "forwards",
        "log",
        "log_capacity",
        "log_lost",
        "mappings",
        "max_sessions",
        "opened",
        "pool",
        "queues",
        "tenants",
        "timeout_of",
        "timeouts",
        "withdrawn",
    )

    def __init__(
        self,
        addresses: Sequence[bytes],
        *,
        max_sessions: int = MAX_SESSIONS,
        timeouts: Timeouts | None = None,
        ports: tuple[int, int] = DYNAMIC_PORTS,
        log_capacity: int = LOG_CAPACITY,
        seed: int | None = None,
    ) -> None:
        if max_sessions < 1 or log_capacity < 0:
            raise ValueError("max_sessions must be positive and log_capacity not negative")
        self.pool = AddressPool(addresses, ports, seed)
        self.max_sessions = max_sessions
        self.timeouts = timeouts or Timeouts()
        self.timeout_of = self.timeouts.by_state()
        self.log_capacity = log_capacity
        # Read by the per-packet code (translate.py); changed only by the methods.
        # Keyed by ``session.out_key`` and ``session.in_key`` (addresses as ints).
        self.by_out: dict[OutKey, Session] = {}
        self.by_in: dict[InKey, Session] = {}
        self.forwards: dict[tuple[int, bytes, int], tuple[Tenant, Mapping]] = {}
        # Withdrawn forwards' mappings whose sessions still run, by external endpoint.
        self.withdrawn: dict[tuple[int, bytes, int], Mapping] = {}
        self.mappings: dict[tuple[str, int, bytes, int], Mapping] = {}
        self.queues: tuple[OrderedDict[Session, None], ...] = tuple(
            OrderedDict() for _ in range(STATE_COUNT)
        )
        self.tenants: dict[str, Tenant] = {}
        self.count = 0  # sessions held
        self.opened = 0  # sessions ever opened
        self.ended = 0  # sessions ever ended (timed out)
        self.log: list[LogRecord] = []
        self.log_lost = 0  # records refused because the buffer was full

    def configure(self, max_sessions: int, timeouts: Timeouts) -> None:
        """New limits for a running table (a policy reload): a lower limit ends
        nothing (no session opens until the table is back under it), and a session
        takes its new timeout at its next packet or state change."""
        if max_sessions < 1:
            raise ValueError("max_sessions must be positive")
        self.max_sessions = max_sessions
        self.timeouts = timeouts
        self.timeout_of = timeouts.by_state()

    def tenant(
        self, rdid: str, max_sessions: int = TENANT_MAX_SESSIONS, log: bool = False
    ) -> Tenant:
        """The routing domain's share, made or updated (a lower limit ends nothing:
        the tenant opens no session until it is back under it)."""
        if max_sessions < 0:
            raise ValueError("a session limit is not negative")
        found = self.tenants.get(rdid)
        if found is None:
            found = self.tenants[rdid] = Tenant(rdid, max_sessions, log)
        found.max_sessions, found.log = max_sessions, log
        return found

    # -- port forwards ------------------------------------------------------------

    def forward(
        self, protocol: int, ext_addr: bytes, ext_port: int, tenant: Tenant, ca: bytes, ca_port: int
    ) -> None:
        """Publish ``tenant``'s ``ca:ca_port`` on ``ext_addr:ext_port``: what comes in
        there opens a session to it, and its replies (and, endpoint-independently,
        anything it opens from that port) leave from there. One forward per external
        endpoint and one per internal endpoint: ValueError otherwise, or when a
        session's mapping holds the port (keep forwards out of the dynamic range)."""
        ext_addr, ca = bytes(ext_addr), bytes(ca)
        if protocol not in (IPPROTO_TCP, IPPROTO_UDP):
            raise ValueError("a port forward is TCP or UDP")
        allocator = self.pool.allocators.get((ext_addr, protocol))
        if allocator is None:
            raise ValueError(f"{ext_addr.hex()} is not an external address of the NAT")
        external = (protocol, ext_addr, ext_port)
        if external in self.forwards:
            raise ValueError(f"port {ext_port} is forwarded already")
        key = (tenant.rdid, protocol, ca, ca_port)
        mapping = self.mappings.get(key)
        if mapping is not None and mapping.pinned:
            raise ValueError("that tenant endpoint is forwarded already")
        withdrawn = self.withdrawn.pop(external, None)
        if mapping is not None and mapping is withdrawn:
            pass  # the same forward back: its mapping, still in use, is taken back
        elif withdrawn is not None:
            withdrawn.owns_port = False  # the port's reservation passes to the new forward
            mapping = self.mappings[key] = Mapping(key, ext_addr, ext_port, reserved=True)
        else:
            allocator.reserve(ext_port)
            mapping = self.mappings[key] = Mapping(key, ext_addr, ext_port, reserved=True)
        mapping.pinned = True
        self.forwards[external] = (tenant, mapping)

    def unforward(self, protocol: int, ext_addr: bytes, ext_port: int) -> None:
        """Withdraw a forward: new connections to it are refused; sessions already
        open through it run until they end, and the port is free after them."""
        external = (protocol, bytes(ext_addr), ext_port)
        _, mapping = self.forwards.pop(external)
        mapping.pinned = False
        if mapping.sessions:
            self.withdrawn[external] = mapping  # holds its port until its sessions end
        else:
            self._free(mapping)

    def set_forwards(self, wanted: ForwardTargets) -> None:
        """Make ``wanted`` (external (protocol, address, port) -> the tenant, CA and
        port it leads to) the table's port forwards, by delta (a policy reload): a
        forward that stays as it was keeps its mapping, one gone or changed is
        withdrawn (its open sessions run on), a new one is added."""
        for key, (tenant, mapping) in list(self.forwards.items()):
            target = wanted.get(key)
            if target is None or target[0] is not tenant or mapping.key[2:] != target[1:]:
                self.unforward(*key)
        for key, (tenant, ca, ca_port) in wanted.items():
            if key not in self.forwards:
                self.forward(*key, tenant, ca, ca_port)

    # -- sessions -----------------------------------------------------------------

    def open(
        self,
        tenant: Tenant,
        protocol: int,
        ca: bytes,
        ca_port: int,
        remote: bytes,
        remote_port: int,
        state: int,
        now: float,
    ) -> Session | Drop:
        """A session the tenant opens toward ``remote``, through the endpoint's
        mapping (made, with a new external port, if it has none)."""
        full = self._full(tenant)
        if full is not None:
            return full
        key = (tenant.rdid, protocol, ca, ca_port)
        mapping = self.mappings.get(key)
        if mapping is None:
            ext_addr, ext_port = self.pool.allocate(tenant.rdid, ca, protocol)
            if ext_port < 0:
                tenant.refused[Drop.NAPT_PORTS_EXHAUSTED] += 1
                return Drop.NAPT_PORTS_EXHAUSTED
            mapping = self.mappings[key] = Mapping(key, ext_addr, ext_port)
        session = Session(tenant, mapping, protocol, remote, remote_port, state, 0, now)
        self._add(session, now)
        return session

    def open_forwarded(
        self,
        tenant: Tenant,
        mapping: Mapping,
        remote: bytes,
        remote_port: int,
        state: int,
        now: float,
    ) -> Session | Drop:
        """A session a remote end opens through a port forward's mapping."""
        full = self._full(tenant)
        if full is not None:
            return full
        session = Session(tenant, mapping, mapping.key[1], remote, remote_port, state, 1, now)
        if session.out_key in self.by_out:
            # The forwarded endpoint holds a session to that same remote endpoint
            # through an older mapping (opened before the forward was added).
            return Drop.NAPT_NO_SESSION
        self._add(session, now)
        return session

    def _full(self, tenant: Tenant) -> Drop | None:
        """Why ``tenant`` may open no session now (its own limit first, so a tenant at
        its limit is told so whatever the table holds), counted; None if it may."""
        if tenant.sessions >= tenant.max_sessions:
            reason = Drop.NAPT_TENANT_LIMIT
        elif self.count >= self.max_sessions:
            reason = Drop.NAPT_TABLE_FULL
        else:
            return None
        tenant.refused[reason] += 1
        return reason

    def _add(self, session: Session, now: float) -> None:
        session.expires = now + self.timeout_of[session.state]
        session.mapping.sessions += 1
        self.by_out[session.out_key] = session
        self.by_in[session.in_key] = session
        self.queues[session.state][session] = None
        tenant = session.tenant
        tenant.sessions += 1
        tenant.opened += 1
        self.count += 1
        self.opened += 1
        if tenant.log:
            self._record("open", session, None)

    def set_state(self, session: Session, state: int, now: float) -> None:
        """Move ``session`` to ``state`` (maybe the same) and restart its idle timer."""
        queues = self.queues
        if state == session.state:
            queues[state].move_to_end(session)
        else:
            del queues[session.state][session]
            queues[state][session] = None
            session.state = state
        session.expires = now + self.timeout_of[state]

    def end(self, session: Session, at: float) -> None:
        """Remove ``session`` (``at``: when it ended, for the log); its mapping and
        port go with its last session."""
        del self.by_out[session.out_key]
        del self.by_in[session.in_key]
        del self.queues[session.state][session]
        tenant = session.tenant
        tenant.sessions -= 1
        tenant.expired += 1
        self.count -= 1
        self.ended += 1
        mapping = session.mapping
        mapping.sessions -= 1
        if not mapping.sessions and not mapping.pinned:
            self._free(mapping)
        if tenant.log:
            self._record("close", session, at)

    def _free(self, mapping: Mapping) -> None:
        if self.mappings.get(mapping.key) is mapping:
            del self.mappings[mapping.key]
        if not mapping.owns_port:
            return  # a newer forward holds its port
        allocator = self.pool.allocators[mapping.ext_addr, mapping.key[1]]
        if mapping.reserved:
            self.withdrawn.pop((mapping.key[1], mapping.ext_addr, mapping.ext_port), None)
            allocator.unreserve(mapping.ext_port)
        else:
            allocator.release(mapping.ext_port)

    def expire(self, now: float, limit: int = EXPIRE_BATCH) -> int:
        """End up to ``limit`` sessions idle past their timeout; how many it ended.
        Each is logged as ending at its deadline, not at the call's ``now``."""
        ended = 0
        for queue in self.queues:
            while queue and ended < limit:
                session = next(iter(queue))
                if session.expires > now:
                    break
                self.end(session, session.expires)
                ended += 1
        return ended

    def next_expiry(self) -> float | None:
        """When the earliest session times out (None: no session): when ``expire``
        has work, as aioquic's ``get_timer``."""
        heads = [next(iter(queue)).expires for queue in self.queues if queue]
        return min(heads) if heads else None

    # -- the translation log ------------------------------------------------------

    def _record(self, event: str, session: Session, end: float | None) -> None:
        if len(self.log) >= self.log_capacity:
            self.log_lost += 1
            return
        self.log.append(LogRecord.of(event, session, end))

    def take_log(self) -> list[LogRecord]:
        """The records written since the last call, oldest first (at most
        ``log_capacity``; ``log_lost`` counts those there was no room for)."""
        records, self.log = self.log, []
        return records

    def still_open(self) -> list[LogRecord]:
        """A record for each open session of a tenant that logs: at shutdown, so the
        log says who still held which port when the gateway stopped."""
        return [
            LogRecord.of("open_at_shutdown", session, None)
            for session in self.by_out.values()
            if session.tenant.log
        ]
