"""ARP resolution for the daemon's own provider addresses (IP-Rewrite).

IP-Rewrite PAs are not kernel addresses (the kernel would reset connections to
them), so the kernel cannot send for them either: the daemon frames rewritten
packets itself, and needs the MAC of each destination PA. This is that table, sans
IO: ``resolve`` answers from it or says to ask (and parks the frame), ``learn``
records the answer to a request it asked for, and hands back the frames that were
waiting. Time is an argument; the table never reads a clock.

Only answers are believed: whoever claims a PA on the provider network decides
where a tenant's packets go, so an ARP reply nobody asked for (or asked too long
ago, or answered already) is refused. A claim refused may still be a PA that really
moved (its new host announces it): ``doubt`` makes the next send ask again, so a
move is followed within one round trip and a spoofer gains nothing.
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
# A reply is the answer to our request only this soon after it (Linux gives up on an
# unanswered entry after retrans_time 1 s x mcast_solicit 3).
ANSWER_WITHIN_S: Final = 3.0
# PAs asked for and not yet answered (Linux's gc_thresh3 bounds its table at 1024):
# past it, asks older than ANSWER_WITHIN_S are forgotten, and a new PA waits its turn.
MAX_ASKED: Final = 1024
_STALE: Final = float("-inf")  # a refresh time that any ``now`` has passed


class Neighbors:
    """``source_mac`` is the MAC the node sends from on this link: each learned entry
    holds the 12 bytes a frame to that neighbour starts with."""

    __slots__ = ("_asked", "_pending", "learned", "max_asked", "max_pending", "source_mac")

    def __init__(
        self,
        source_mac: bytes,
        max_pending: int = MAX_PENDING_PER_PA,
        max_asked: int = MAX_ASKED,
    ) -> None:
        self.source_mac = source_mac
        self.max_pending = max_pending
        self.max_asked = max_asked
        # PA -> (MAC, when to ask again, MAC + source_mac). Public for reading only:
        # the gateway's per-packet code reads a fresh entry here itself, and writes
        # its addresses in one go (a call to ``resolve`` costs as much as the rest of
        # its work on that packet); every change goes through the methods.
        self.learned: dict[bytes, tuple[bytes, float, bytes]] = {}
        self._pending: dict[bytes, deque[bytearray]] = {}
        self._asked: dict[bytes, float] = {}  # PA -> when we last asked

    def mac(self, pa: bytes) -> bytes | None:
        found = self.learned.get(pa)
        return None if found is None else found[0]

    def resolve(self, pa: bytes, now: float) -> tuple[bytes | None, bool]:
        """(the MAC to send to or None, whether to send an ARP request now)."""
        found = self.learned.get(pa)
        if found is not None:
            return found[0], now > found[1] and self._may_ask(pa, now)
        return None, self._may_ask(pa, now)

    def park(self, pa: bytes, frame: bytearray) -> bool:
        """Keep a frame until ``pa`` resolves; False (not kept) when its queue is full,
        or when as many addresses as may be asked for at once have frames waiting
        already (a scan of a TAP's subnet would otherwise park frames without bound;
        ``resolve`` forgets the oldest unanswered ones, and their frames, in turn)."""
        pending = self._pending
        queue = pending.get(pa)
        if queue is None:
            if len(pending) >= self.max_asked:
                return False
            queue = pending[pa] = deque()
        if len(queue) >= self.max_pending:
            return False
        queue.append(frame)
        return True

    def learn(self, pa: bytes, mac: bytes, now: float) -> list[bytearray] | None:
        """A reply says ``pa`` is at ``mac``: recorded only as the answer to our own
        request for ``pa`` (asked within ANSWER_WITHIN_S, not answered yet), and then
        the frames that were waiting for it. None: not an answer, refused."""
        asked = self._asked.get(pa)
        if asked is None or now - asked > ANSWER_WITHIN_S:
            return None
        del self._asked[pa]
        self.learned[pa] = (mac, now + REFRESH_AFTER_S, mac + self.source_mac)
        waiting = self._pending.pop(pa, None)
        return list(waiting) if waiting else []

    def doubt(self, pa: bytes, mac: bytes) -> None:
        """Someone claimed ``pa`` at ``mac`` unasked: if that is not what we know, the
        next ``resolve`` asks again (within the retry window) while still sending to
        the known MAC, whose owner answers if it still has the PA."""
        found = self.learned.get(pa)
        if found is not None and found[0] != mac:
            self.learned[pa] = (found[0], _STALE, found[2])

    def _may_ask(self, pa: bytes, now: float) -> bool:
        asked = self._asked
        last = asked.get(pa)
        if last is not None and now - last < RETRY_AFTER_S:
            return False
        if last is None and len(asked) >= self.max_asked:
            for old in [p for p, t in asked.items() if now - t > ANSWER_WITHIN_S]:
                del asked[old]
                self._pending.pop(old, None)  # no answer will come for them now
            if len(asked) >= self.max_asked:
                return False  # more PAs unanswered than the bound: asked on a later send
        asked[pa] = now
        return True
