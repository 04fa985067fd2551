"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

IPv4, ICMP, TCP and UDP share one checksum: the one's complement of the one's complement
sum of 16-bit words. The gateway rewrites addresses and ports (IP-Rewrite, NAT) and
decrements TTLs far more often than it builds packets, and RFC 1624 lets it fix a
checksum from the old and new words alone, without reading the payload again.

Why ``int.from_bytes`` and a modulus: 2**16 is 1 modulo 0xFFFF, so a big-endian number
is congruent to the sum of its 16-bit words modulo 0xFFFF, which is exactly one's
complement addition. One C-level conversion replaces a Python loop over the words; the
only subtlety is that one's complement has two zeros (see ``ones_complement_sum``).
"""

from __future__ import annotations

from typing import Final

from gateway.wire._types import Buffer

_WORD_MASK: Final = 0xFFFF

# RFC 768: an IPv4 UDP checksum of 0 means "not computed", so a computed 0 is sent as
# its other one's complement form, 0xFFFF.
_UDP_NO_CHECKSUM: Final = 0x0000
_UDP_ZERO_CHECKSUM_SENT_AS: Final = 0xFFFF


def ones_complement_sum(data: Buffer, initial: int = 0) -> int:
    """The folded 16-bit one's complement sum of ``data`` plus ``initial`` (a prior sum).

    Returns 0 only when everything summed is zero; any other sum that is 0 modulo
    0xFFFF comes out as 0xFFFF ("negative zero"), as end-around-carry addition gives.
    That distinction is what makes an all-zero datagram's checksum 0xFFFF, not 0.
    An odd-length ``data`` is padded with one zero byte (RFC 1071 sec. 4.1), so only the
    last chunk of a chained sum may be odd.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    total = value + initial
    if total == 0:
        return 0
    folded = total % _WORD_MASK
    return folded if folded else _WORD_MASK


def internet_checksum(data: Buffer, initial: int = 0) -> int:
    """The RFC 1071 checksum to store in a header whose checksum field is zero in ``data``.

    ``initial`` is a partial sum of bytes not in ``data``, e.g. a TCP/UDP pseudo-header
    from ``ones_complement_sum``.
    """
    return ~ones_complement_sum(data, initial) & _WORD_MASK


def checksum_ok(data: Buffer, initial: int = 0) -> bool:
    """Whether ``data``, checksum field included, sums to 0xFFFF (RFC 1071 sec. 1 (3))."""
    return ones_complement_sum(data, initial) == _WORD_MASK


def checksum_update(old_checksum: int, old: int | Buffer, new: int | Buffer) -> int:
    """The checksum after ``old`` was replaced by ``new`` (RFC 1624 eqn. 3).

    ``old``/``new`` are either one 16-bit word each, or equal-length, even-length byte
    strings taken at a 16-bit aligned position (an address, a port, the TTL word).
    Eqn. 3, HC' = ~(~HC + ~m + m'), is used rather than eqn. 2 because eqn. 2 can
    produce 0x0000 where a full recomputation gives 0xFFFF (RFC 1624 sec. 3); with
    eqn. 3 the result equals a full recomputation for every datagram whose covered
    bytes are not all zero, which an IP, TCP or UDP header never is. A UDP caller must
    still map a result of 0 to 0xFFFF (the rewrites in l4 do).
    """
    if isinstance(old, int) and isinstance(new, int):
        old_sum, new_sum = old & _WORD_MASK, new & _WORD_MASK
    elif not isinstance(old, int) and not isinstance(new, int):
        if len(old) != len(new) or len(old) & 1:
            raise ValueError("checksum_update needs equal, even-length replacements")
        old_sum, new_sum = ones_complement_sum(old), ones_complement_sum(new)
    else:
        raise TypeError("old and new must both be words or both be bytes")
    total = (~old_checksum & _WORD_MASK) + (~old_sum & _WORD_MASK) + new_sum
    while total > _WORD_MASK:
        total = (total & _WORD_MASK) + (total >> 16)
    # A sum of exactly 0 needs HC = 0xFFFF, m = 0xFFFF, m' = 0 (a UDP checksum that
    # was sent as 0xFFFF). Its true value is negative zero, as a full sum would give.
    return ~(total or _WORD_MASK) & _WORD_MASK
