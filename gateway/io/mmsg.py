"""sendmmsg(2) through ctypes: the C structures a batch of messages is made of
(``send_batch.py`` and ``udp_segments.py`` fill them), laid out as <sys/socket.h>
and <netinet/in.h> say on Linux, and the call itself.

A field of these is written per packet, so the batches write them as items of a
memoryview of native words rather than through ctypes' descriptors (an item costs
about half a ``pack_into``): ``word_index`` says where a field sits in such a view.
"""

from __future__ import annotations

import ctypes
from typing import Final

_libc = ctypes.CDLL(None, use_errno=True)
sendmmsg = _libc.sendmmsg
sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
sendmmsg.restype = ctypes.c_int


class Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", Msghdr), ("msg_len", ctypes.c_uint))


class SockaddrIn(ctypes.Structure):
    _fields_ = (
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),  # network order, written as bytes
        ("sin_addr", ctypes.c_ubyte * 4),  # not c_char: that would stop at a zero byte
        ("sin_zero", ctypes.c_ubyte * 8),
    )


IOV_STRIDE: Final = ctypes.sizeof(Iovec)
MSG_STRIDE: Final = ctypes.sizeof(Mmsghdr)
WORD: Final = ctypes.sizeof(ctypes.c_size_t)  # a size_t, and a pointer: the same size


def word_index(offset: int) -> int:
    """The index of the word at byte ``offset`` in a view of native words (every
    field written so is a pointer or a size_t, word-aligned)."""
    if offset % WORD:
        raise ValueError(f"offset {offset} is not word-aligned")
    return offset // WORD


def msg_field(name: str) -> int:
    """A msghdr field's word in its mmsghdr, as ``word_index`` counts."""
    return word_index(Mmsghdr.msg_hdr.offset + getattr(Msghdr, name).offset)


def words(buffer: ctypes.Array | bytearray) -> memoryview:  # type: ignore[type-arg]
    """``buffer`` as native words, writable."""
    return memoryview(buffer).cast("B").cast("N")
