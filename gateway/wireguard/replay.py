"""The sliding replay window of RFC 6479, sized as wireguard-go's ``replay`` package.

Transport messages may arrive out of order, so "higher than the highest counter
seen" would drop good packets; a bitmap of the last ``WINDOW_SIZE`` counters accepts
each counter once, in any order, and refuses those behind the window. RFC 6479 keeps
the bitmap as a ring of blocks: moving the window forward clears only the blocks it
moves into, so a big jump costs at most ``RING_BLOCKS`` stores, never a shift of the
whole map.
"""

from __future__ import annotations

from typing import Final

BLOCK_BITS: Final = 64  # bits per block (a machine word in RFC 6479)
RING_BLOCKS: Final = 128  # blocks in the ring (a power of two)
# One block is the one being filled, so the window proper is one block short of the
# ring: (128 - 1) * 64 = 8128 counters behind the newest, as wireguard-go's.
WINDOW_SIZE: Final = (RING_BLOCKS - 1) * BLOCK_BITS
_BLOCK_SHIFT: Final = 6  # log2(BLOCK_BITS)
_BLOCK_MASK: Final = RING_BLOCKS - 1
_BIT_MASK: Final = BLOCK_BITS - 1


class ReplayWindow:
    """Which counters of one keypair were accepted; ``accept`` decides and records."""

    __slots__ = ("last", "ring")

    def __init__(self) -> None:
        self.last = 0  # the highest counter accepted (0 before any)
        self.ring = [0] * RING_BLOCKS

    def accept(self, counter: int, limit: int) -> bool:
        """Whether ``counter`` is new and within the window (and below ``limit``, the
        reject-after-messages bound); if so, it is recorded as seen."""
        if counter >= limit:
            return False
        block = counter >> _BLOCK_SHIFT
        last = self.last
        if counter > last:
            current = last >> _BLOCK_SHIFT
            if block > current:  # into new blocks (once in 64 packets in order): clear them
                ring = self.ring
                for i in range(current + 1, current + 1 + min(block - current, RING_BLOCKS)):
                    ring[i & _BLOCK_MASK] = 0
            self.last = counter
        elif last - counter > WINDOW_SIZE:
            return False
        index = block & _BLOCK_MASK
        bit = 1 << (counter & _BIT_MASK)
        old = self.ring[index]
        if old & bit:
            return False
        self.ring[index] = old | bit
        return True
