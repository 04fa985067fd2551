"""A batch of UDP datagrams handed to the kernel as a few large sends (UDP GSO).

Why: each UDP datagram sent costs the kernel a whole trip through its stack, and on
one machine the receiver's trip too (routing, netfilter, the neighbour, the veth,
IP input): measured here with 1432-byte datagrams to a veth peer, about 4 us of
system time each as one ``send`` each, and about 0.5 us each as sends of 44
segments with ``UDP_SEGMENT`` (udp(7): the kernel cuts a large send into datagrams
of the given size as late as it can, after that trip). A site-to-site tunnel's
datagrams to one peer are mostly of one size (full-sized packets, padded alike),
and a reader's batch gathers many in a row; wireguard-go sends the same way.

``SendBatch`` gathers the datagrams in its slots as before; ``Segments.build``
turns each run of datagrams in a row to one destination, of one size (the last may
be shorter), into one message whose iovecs are those slots and whose control
message gives the size; a datagram alone stays a message of its own. The runs keep
the datagrams' order and each datagram is sent exactly as gathered: only the
number of trips through the stack changes.

A kernel without ``UDP_SEGMENT`` (before Linux 4.18) would not fail such a send:
it ignores a control message it does not know and sends the run as one datagram.
So runs are made only where the kernel answers the option's ``getsockopt``
(``kernel_segments``), as wireguard-go and quic-go probe it. A route or device
that refuses a run fails its send; ``SendBatch`` then sends that run's datagrams
one by one, and after a refusal of that kind (``REFUSED``) makes no more runs.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import socket
from typing import Final

from gateway.io.mmsg import MSG_STRIDE, Mmsghdr, SockaddrIn, msg_field, word_index, words

SOL_UDP: Final = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT: Final = 103  # linux/udp.h: the segment size of a send
# Segments per send: UDP_MAX_SEGMENTS is 64 on the first kernels that have it (128
# later); and at most an IPv4 datagram's payload in all.
MAX_SEGMENTS: Final = 64
MAX_BYTES: Final = 65507
# What a kernel or a route answers a segmented send it does not take with: a size
# or count it does not take (EINVAL), no checksum offload on the way (EIO), no such
# option after all (ENOPROTOOPT).
REFUSED: Final = frozenset((errno.EIO, errno.EINVAL, errno.ENOPROTOOPT))


@functools.cache
def kernel_segments() -> bool:
    """Whether this kernel takes ``UDP_SEGMENT``: one that does answers its
    getsockopt (the size a socket segments by, 0 unless set), an older one refuses
    the option."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.getsockopt(SOL_UDP, UDP_SEGMENT)
        except OSError:
            return False
    return True


class _Cmsg(ctypes.Structure):
    """A cmsghdr with its 2-byte payload, padded to CMSG_SPACE(2)."""

    _fields_ = (
        ("cmsg_len", ctypes.c_size_t),
        ("cmsg_level", ctypes.c_int),
        ("cmsg_type", ctypes.c_int),
        ("segment", ctypes.c_uint16),
        ("pad", ctypes.c_ubyte * 6),
    )


_CMSG_LEN: Final = _Cmsg.segment.offset + ctypes.sizeof(ctypes.c_uint16)  # CMSG_LEN(2)
_CMSG_SPACE: Final = ctypes.sizeof(_Cmsg)
_SEGMENT: Final = _Cmsg.segment.offset // ctypes.sizeof(ctypes.c_uint16)  # in u16 items
_MESSAGE: Final = word_index(MSG_STRIDE)
_NAME: Final = msg_field("msg_name")
_IOV: Final = msg_field("msg_iov")
_IOVLEN: Final = msg_field("msg_iovlen")
_CONTROL: Final = msg_field("msg_control")
_CONTROLLEN: Final = msg_field("msg_controllen")


class Segments:
    """The messages for up to ``count`` runs over a batch's iovecs (``iov_base``,
    ``iov_stride`` apart, one per slot), each with a control message of its own."""

    __slots__ = ("_cmsgs", "_fields", "_headers", "_iov_base", "_iov_stride", "_sizes", "base")

    def __init__(self, count: int, iov_base: int, iov_stride: int) -> None:
        self._iov_base, self._iov_stride = iov_base, iov_stride
        self._headers = (Mmsghdr * count)()  # kept alive: the kernel reads them
        self._cmsgs = (_Cmsg * count)()
        for header, cmsg in zip(self._headers, self._cmsgs, strict=True):
            header.msg_hdr.msg_namelen = ctypes.sizeof(SockaddrIn)
            cmsg.cmsg_len, cmsg.cmsg_level, cmsg.cmsg_type = _CMSG_LEN, SOL_UDP, UDP_SEGMENT
        self.base = ctypes.addressof(self._headers)
        self._fields = words(self._headers)
        self._sizes = memoryview(self._cmsgs).cast("B").cast("H")

    def build(self, names: memoryview, lengths: memoryview, count: int) -> list[int]:
        """The messages for the ``count`` datagrams gathered (the i-th to the
        sockaddr at ``names[i]``, ``lengths[i]`` bytes long), from ``base`` on: how
        many datagrams each carries, in order."""
        fields, sizes, runs = self._fields, self._sizes, []
        iov_base, iov_stride = self._iov_base, self._iov_stride
        control = ctypes.addressof(self._cmsgs)
        first = 0
        while first < count:
            name, size = names[first], lengths[first]
            # An empty datagram goes alone: a run of them would be one empty send.
            end = min(count, first + MAX_SEGMENTS, first + MAX_BYTES // size) if size else first
            last = first + 1
            while last < end and names[last] == name and lengths[last] == size:
                last += 1
            if last < end and names[last] == name and 0 < lengths[last] < size:
                last += 1  # a shorter datagram may end a run (an empty one would vanish)
            n = len(runs)
            at = n * _MESSAGE
            fields[at + _NAME] = name
            fields[at + _IOV] = iov_base + first * iov_stride
            fields[at + _IOVLEN] = last - first
            if last - first > 1:
                fields[at + _CONTROL] = control + n * _CMSG_SPACE
                fields[at + _CONTROLLEN] = _CMSG_SPACE
                sizes[n * (_CMSG_SPACE // 2) + _SEGMENT] = size
            else:
                fields[at + _CONTROL] = fields[at + _CONTROLLEN] = 0
            runs.append(last - first)
            first = last
        return runs
