"""systemd's notify protocol: READY, RELOADING, STOPPING and the watchdog.

Under ``Type=notify`` systemd starts units that depend on nvgw only once it says
READY=1 (its TAPs exist, its API answers), shows STATUS= in ``systemctl status``, and
with ``WatchdogSec=`` restarts it when WATCHDOG=1 stops coming. The watchdog is sent
from the event loop itself, so a loop wedged in a batch stops it, which is the point;
and since it is the event loop, a send never waits: a listener that stops reading
(its queue holds ten datagrams) loses messages rather than stalling the data plane.
Outside systemd (no NOTIFY_SOCKET) every call does nothing.

The protocol is one datagram per message to the socket named in the environment
(a path, or ``@name`` in the abstract namespace); it is small enough that a library
would be a dependency for ten lines.
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send ``FIELD=value`` lines; False when not run by systemd or it is not listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
    try:
        with socket.socket(socket.AF_UNIX, kind) as sock:
            sock.connect(address)
            sock.send("\n".join(fields).encode())
    except OSError:  # gone, unreachable, or its queue full (EAGAIN): never wait for it
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to send WATCHDOG=1 (half the timeout, as sd_watchdog_enabled advises),
    or None when no watchdog is asked of this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
