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

from typing import TYPE_CHECKING, Final, NamedTuple

from gateway.policy import CompiledRecord, RecordType, Snapshot
from gateway.wire import IPV4_ADDR_SIZE

if TYPE_CHECKING:  # tables.py builds its lookups here
    from gateway.dataplane.tables import LookupTracer

_WILDCARD_CAS: Final = (bytes(IPV4_ADDR_SIZE), bytes(16))  # 0.0.0.0 and ::, packed


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
    """The anti-spoofing lookups of ``snapshot``, as plain dicts (the snapshot's are
    read-only proxies, slower per lookup), wrapped by ``tracer`` when it is given."""
    record_by_mac = {
        key: record
        for key, record in snapshot.record_by_mac.items()
        if len(record.ca_bytes) == IPV4_ADDR_SIZE
    }
    record_by_rdid_ca = {(r.rdid, r.ca_bytes): r for r in snapshot.records}
    for rdid in set(snapshot.rdid_by_vsid.values()):
        for wildcard in _WILDCARD_CAS:
            record_by_rdid_ca.pop((rdid, wildcard), None)
    gateway_by_rdid_pa = {
        (r.rdid, r.pa_bytes): r for r in reversed(snapshot.records) if r.type is RecordType.GATEWAY
    }
    if tracer is None:
        return SenderTables(record_by_mac, record_by_rdid_ca, gateway_by_rdid_pa)
    return SenderTables(
        tracer.table("record by (VSID, MAC)", record_by_mac),  # type: ignore[arg-type]
        tracer.table("record by (RDID, CA)", record_by_rdid_ca),  # type: ignore[arg-type]
        tracer.table("gateway record by (RDID, PA)", gateway_by_rdid_pa),  # type: ignore[arg-type]
    )
