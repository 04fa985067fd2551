"""Thin anyio adapters: TAP devices, provider sockets, the daemon's event loop.

Everything here carries out what ``gateway.dataplane`` decides; no forwarding logic
and no policy decision lives in this package (the node plan is
``gateway.dataplane.plan``). By job: ``daemon.py`` a node's life whatever its role,
``roles.py`` which adapters serve which role (``host.py`` the host's), ``readers.py``
the per-fd readers, ``ports.py`` the TAPs, ``listeners.py`` the API and metrics,
``output.py`` the writes, ``ring.py``/``provider.py``/``tap.py`` the fds themselves.
"""

from __future__ import annotations

from .daemon import Daemon, ready_line
from .listeners import ApiListen

__all__ = ["ApiListen", "Daemon", "ready_line"]
