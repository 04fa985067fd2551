"""ARP resolution for the daemon's own provider addresses (IP-Rewrite).

IP-Rewrite PAs are not kernel addresses (the kernel would reset connections to
them), so the kernel cannot send for them either: the daemon frames rewritten
packets itself, and needs the MAC of each destination PA. This is that table, sans
IO: ``resolve`` answers from it or says to ask (and parks the frame), ``learn``
records what an ARP packet on the provider link told, and hands back the frames
that were waiting. Time is an argument; the table never reads a clock.
"""

from __future__ import annotations

from collections import deque
from typing import Final

# How long a learned MAC is used without asking again (Linux's base_reachable_time
# is 30 s): past it, packets still go to the old MAC while a new request is sent, so
# a moved PA is followed within one round trip and nothing waits meanwhile.
REFRESH_AFTER_S: Final = 30.0
# Frames parked per unresolved PA (Linux's unres_qlen_bytes is ~64 KiB, a few dozen
# frames): enough for a ping or a TCP handshake, bounded against floods.
MAX_PENDING_PER_PA: Final = 16
# An unanswered PA is asked again at most this often, so a dead peer costs one ARP
# request per second, not one per packet.
RETRY_AFTER_S: Final = 1.0


class Neighbors:
    __slots__ = ("_asked", "_learned", "_pending", "max_pending")

    def __init__(self, max_pending: int = MAX_PENDING_PER_PA) -> None:
        self.max_pending = max_pending
        self._learned: dict[bytes, tuple[bytes, float]] = {}  # PA -> (MAC, when learned)
        self._pending: dict[bytes, deque[bytes]] = {}
        self._asked: dict[bytes, float] = {}  # PA -> when we last asked

    def mac(self, pa: bytes) -> bytes | None:
        found = self._learned.get(pa)
        return None if found is None else found[0]

    def resolve(self, pa: bytes, now: float) -> tuple[bytes | None, bool]:
        """(the MAC to send to or None, whether to send an ARP request now)."""
        found = self._learned.get(pa)
        if found is not None:
            mac, learned = found
            return mac, now - learned > REFRESH_AFTER_S and self._may_ask(pa, now)
        return None, self._may_ask(pa, now)

    def park(self, pa: bytes, frame: bytes) -> bool:
        """Keep a frame until ``pa`` resolves; False (not kept) when its queue is full."""
        queue = self._pending.setdefault(pa, deque())
        if len(queue) >= self.max_pending:
            return False
        queue.append(frame)
        return True

    def learn(self, pa: bytes, mac: bytes, now: float) -> list[bytes]:
        """Record ``pa`` at ``mac``; return the frames that were waiting for it."""
        self._learned[pa] = (mac, now)
        self._asked.pop(pa, None)
        waiting = self._pending.pop(pa, None)
        return list(waiting) if waiting else []

    def _may_ask(self, pa: bytes, now: float) -> bool:
        last = self._asked.get(pa)
        if last is not None and now - last < RETRY_AFTER_S:
            return False
        self._asked[pa] = now
        return True
