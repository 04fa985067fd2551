"""Who may send a frame from the provider network: the lookups anti-spoofing reads.

RFC 7637 leaves it to the NVE to check that the inner source sits behind the outer
source PA, and every role that receives NVGRE checks it the same way (the host for
its VMs, the gateway for the routing domains it serves): the inner source MAC and CA
are a record of that VSID whose PA is the outer source; a frame routed by a host from
another VSID of the routing domain arrives with the router MAC and is found by its
CA in that routing domain; one routed by a gateway of the routing domain may carry
any source, from the PA of one of its ``gateway`` records (decisions.md, "Anti-spoofing
vs the gateway", "The gateway forwards as the RDID's router"). ``SenderTables`` holds
those lookups, built once per snapshot; each role's tables carry them and the
receive side's verdict (``provider_side._verdict``) reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from gateway.policy import CompiledRecord, Snapshot

if TYPE_CHECKING:  # tables.py builds its lookups here
    from gateway.dataplane.tables import LookupTracer


class SenderTables(NamedTuple):
    # (VSID, MAC) -> the MAC's best IPv4 record. The host and the gateway forward IPv4
    # frames only, and an IPv4 frame must never be judged by a record whose CA is IPv6
    # (a gateway record on an IPv6 CA takes any destination: its IPv6 PA would reach
    # IPv4 header code). The snapshot ranks a MAC's IPv4 records first, so what is
    # left is its best one.
    record_by_mac: dict[tuple[int, bytes], CompiledRecord]
    # (RDID, CA) -> record: a frame routed by its host arrives with the router's MAC
    # as source, so its sender is found by its CA within the routing domain (subnets
    # of one RDID never overlap); 0.0.0.0 and :: are nobody's CA.
    record_by_rdid_ca: dict[tuple[str, bytes], CompiledRecord]
    # (RDID, PA) -> a ``gateway`` record: a frame routed by a gateway of the routing
    # domain, which forwards any source, is accepted from the PA of any of the
    # domain's gateway records (the first in the file, which a trace shows).
    gateway_by_rdid_pa: dict[tuple[str, bytes], CompiledRecord]


def sender_tables(snapshot: Snapshot, tracer: LookupTracer | None = None) -> SenderTables:
    """The anti-spoofing lookups of ``snapshot``: plain dicts (the snapshot's other
    tables are read-only proxies, slower per lookup) that the snapshot builds once and
    a change of records updates (``compile_policy``), shared by every role's tables
    and never changed; wrapped by ``tracer`` when it is given."""
    record_by_mac = snapshot.sender_by_mac
    record_by_rdid_ca = snapshot.sender_by_rdid_ca
    gateway_by_rdid_pa = snapshot.gateway_by_rdid_pa
    if tracer is None:
        return SenderTables(record_by_mac, record_by_rdid_ca, gateway_by_rdid_pa)
    return SenderTables(
        tracer.table("record by (VSID, MAC)", record_by_mac),  # type: ignore[arg-type]
        tracer.table("record by (RDID, CA)", record_by_rdid_ca),  # type: ignore[arg-type]
        tracer.table("gateway record by (RDID, PA)", gateway_by_rdid_pa),  # type: ignore[arg-type]
    )
