"""The gateway NAT's timekeeping and its translation log, beside the packet path.

The NAPT table is sans IO (``gateway.dataplane.napt``): it ends idle sessions when
``expire(now)`` is called and keeps a bounded buffer of translation records. Once a
second this task calls it (bounded per call, with a checkpoint between calls so a mass
expiry never holds the readers up) and writes the records as structured events (abuse
handling: who held which external address and port, when), only for the routing
domains with ``log: true`` (the table records no others). At shutdown it writes the
sessions still open. Never per packet: the log is batched from the table.

Times in the table are the event loop's clock; each record's are turned into
wall-clock time (UTC, ISO 8601) against the clock read when it is written.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from typing import Final

import anyio
import anyio.lowlevel
import structlog

from gateway.dataplane import EXPIRE_BATCH, GatewayNode, LogRecord

log = structlog.get_logger("nvgw")

NAPT_TICK_S: Final = 1.0  # how often idle sessions are ended and the log written
_EVENTS: Final = {
    "open": "napt session opened",
    "close": "napt session closed",
    "open_at_shutdown": "napt session open at shutdown",
}
_PROTOCOLS: Final = {1: "icmp", 6: "tcp", 17: "udp"}


async def napt_housekeeping(node: GatewayNode) -> None:
    """Run for as long as the node is served (a node without NAT costs a wake-up a
    second); the NAT is read from the node each time, as a reload may replace it."""
    lost = 0
    try:
        while True:
            await anyio.sleep(NAPT_TICK_S)
            napt = node.napt
            if napt is None:
                continue
            now = anyio.current_time()
            while napt.expire(now) == EXPIRE_BATCH:
                await anyio.lowlevel.checkpoint()
            write_records(napt.take_log(), now)
            if napt.log_lost != lost:
                log.warning("napt log records lost", lost=napt.log_lost - lost)
                lost = napt.log_lost
    finally:
        napt = node.napt
        if napt is not None:
            write_records(napt.take_log() + napt.still_open(), anyio.current_time())


def write_records(records: list[LogRecord], now: float) -> None:
    """Each record as one structured event; ``now`` is the table's clock at this
    moment, so ``time.time() - (now - t)`` is when ``t`` happened."""
    wall = time.time()
    for record in records:
        end = None if record.end is None else _wall(wall - (now - record.end))
        log.info(
            _EVENTS[record.event],
            rdid=record.rdid,
            protocol=_PROTOCOLS.get(record.protocol, record.protocol),
            ca=str(ipaddress.IPv4Address(record.ca)),
            ca_port=record.ca_port,
            remote=str(ipaddress.IPv4Address(record.remote)),
            remote_port=record.remote_port,
            external=str(ipaddress.IPv4Address(record.ext_addr)),
            external_port=record.ext_port,
            start=_wall(wall - (now - record.start)),
            end=end,
            out_packets=record.out_packets,
            out_bytes=record.out_bytes,
            in_packets=record.in_packets,
            in_bytes=record.in_bytes,
        )


def _wall(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
