"""A batch of UDP datagrams handed to the kernel as a few large sends (UDP GSO).

Why: each UDP datagram sent costs the kernel a whole trip through its stack, and on
one machine the receiver's trip too (routing, netfilter, the neighbour, the veth,
IP input): measured here with 1432-byte datagrams to a veth peer, about 4 us of
system time each, one ``send`` each, and about 0.5 us each as sends of 44 segments
with ``UDP_SEGMENT`` (the kernel cuts a large send into datagrams of the given size
as late as it can, after that trip; udp(7)). A site-to-site tunnel's datagrams to
one peer are mostly of one size (full-sized packets padded alike), and a reader's
batch gathers many in a row: wireguard-go sends the same way.

``SendBatch`` gathers the datagrams in its slots as before; ``Segments.build``
turns each run of datagrams in a row to one destination, of one size (the last may
be shorter), into one message whose iovecs are those slots and whose control
message gives the size; a datagram alone stays a message of its own, as before. The
runs keep the datagrams' order, and each datagram is sent exactly as gathered:
only the number of trips through the stack changes.

A kernel that takes no ``UDP_SEGMENT`` (before Linux 4.18), or a route that refuses
it, answers the send with an error; ``SendBatch`` then sends that run's datagrams
one by one and gathers no more runs (``segmenting`` off for good).
"""

from __future__ import annotations

import ctypes
import socket
from typing import Final

SOL_UDP: Final = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT: Final = 103  # linux/udp.h: the segment size of a send
# Segments per send: UDP_MAX_SEGMENTS is 64 on the first kernels that have it (128
# later); and at most an IPv4 datagram's payload in all.
MAX_SEGMENTS: Final = 64
MAX_BYTES: Final = 65507


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
_CMSG_STRIDE: Final = ctypes.sizeof(_Cmsg)  # CMSG_SPACE(2)


class Segments:
    """The messages of one batch's runs: ``messages`` mmsghdrs (``mmsghdr`` their
    ctypes type) over the batch's iovecs, each with a control message of its own."""

    __slots__ = ("_cmsgs", "_fields", "_iov_base", "_iov_stride", "_sizes", "base", "stride")

    def __init__(
        self, mmsghdr: type[ctypes.Structure], messages: int, iov_base: int, iov_stride: int
    ) -> None:
        self._iov_base, self._iov_stride = iov_base, iov_stride
        headers = (mmsghdr * messages)()
        cmsgs = (_Cmsg * messages)()
        word = ctypes.sizeof(ctypes.c_size_t)
        self.stride = ctypes.sizeof(mmsghdr)
        for i in range(messages):
            header = headers[i].msg_hdr  # type: ignore[attr-defined]
            header.msg_namelen = ctypes.sizeof(ctypes.c_ubyte * 16)  # a sockaddr_in
            cmsgs[i].cmsg_len = _CMSG_LEN
            cmsgs[i].cmsg_level = SOL_UDP
            cmsgs[i].cmsg_type = UDP_SEGMENT
        self.base = ctypes.addressof(headers)
        self._cmsgs = cmsgs  # kept alive: the kernel reads them
        # Per message, five words written per batch (name, iov, iovlen, control,
        # controllen: the first five of a msghdr but the name's length, which stays),
        # as items of native words; and each control message's segment size.
        raw = (ctypes.c_char * (self.stride * messages)).from_address(self.base)
        self._fields = memoryview(raw).cast("B").cast("N")
        self._fields_keep = headers  # type: ignore[attr-defined]
        self._sizes = (
            memoryview((ctypes.c_char * ctypes.sizeof(cmsgs)).from_buffer(cmsgs))
            .cast("B")
            .cast("H")
        )
        assert self.stride % word == 0 and _CMSG_STRIDE % 2 == 0
