"""Running as a dedicated user that keeps CAP_NET_ADMIN and CAP_NET_RAW only.

The daemon starts as root to open what only root may (raw GRE sockets, the receive
ring, TAPs, the API socket in /run), then becomes its own user for the rest of its
life. It keeps exactly two capabilities, because policy changes keep needing them:
CAP_NET_ADMIN to create a TAP when the API moves a VM here, CAP_NET_RAW for the
provider sockets. Every other capability, the supplementary groups, the ambient set
and any way back (no_new_privs) are gone.

Capabilities are per thread in Linux, and ``setresuid`` from root clears them in
every thread unless that thread asked to keep them (PR_SET_KEEPCAPS). Only the
calling thread asks, so threads started earlier (the metrics server, the store's
worker) end up with none, which is all they need; the event loop's thread, where
TAPs are created, gets the two back with ``capset``. glibc has no wrapper for the
capability calls Python lacks, so this uses the raw ones through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
from pathlib import Path
from typing import Final

CAP_NET_ADMIN: Final = 12
CAP_NET_RAW: Final = 13
KEPT: Final = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)

_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
_PR_SET_KEEPCAPS: Final = 8
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4


class PrivilegeError(OSError):
    """The daemon cannot become the user it was asked to run as: the message says why."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def lookup_user(name: str) -> tuple[int, int]:
    """The uid and primary gid of a user name."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            errno.EINVAL, f"no user named {name!r}: create it (useradd --system {name})"
        ) from None
    return entry.pw_uid, entry.pw_gid


TUN: Final = Path("/dev/net/tun")


def check_access(uid: int, gid: int, config: Path, *, api: bool, tun: Path = TUN) -> None:
    """Say at start, not at the first change, what the user will lack: /dev/net/tun
    (every TAP for a VM moved here is opened through it; Debian's udev makes it 0666,
    some containers 0600), and, for a control API that changes the policy, writing
    the database and its directory (SQLite creates its journal beside it)."""
    read_write, enter_write = os.R_OK | os.W_OK, os.W_OK | os.X_OK
    needs = [(tun, read_write, "create TAPs for VMs that move here")]
    if api:
        needs += [
            (config, read_write, "write the policy store"),
            (config.parent, enter_write, "write the policy store"),
        ]
    for path, mode, why in needs:
        if not _may(uid, gid, path, mode):
            raise PrivilegeError(
                errno.EACCES,
                f"uid {uid} could not {why}: it lacks access to {path} "
                f"(mode {path.stat().st_mode & 0o777:o}, owner {path.stat().st_uid})",
            )


def _may(uid: int, gid: int, path: Path, mode: int) -> bool:
    """Whether the user may (``os.access`` modes), as the kernel decides it, ACLs
    included: a child process becomes the user and asks."""
    pid = os.fork()
    if pid == 0:
        allowed = False
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            allowed = os.access(path, mode)
        finally:
            os._exit(0 if allowed else 1)
    _, code = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(code) == 0


def become(uid: int, gid: int) -> None:
    """Switch to ``uid``/``gid`` for good, keeping CAP_NET_ADMIN and CAP_NET_RAW."""
    libc = ctypes.CDLL(None, use_errno=True)
    _prctl(libc, _PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(KEPT, KEPT, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        number = ctypes.get_errno()
        raise PrivilegeError(number, f"capset: {os.strerror(number)}")
    _prctl(libc, _PR_SET_KEEPCAPS, 0)
    _prctl(libc, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)


def _prctl(libc: ctypes.CDLL, option: int, value: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise PrivilegeError(number, f"prctl({option}): {os.strerror(number)}")
