"""The seed's labs in network namespaces: hosts, VMs and a provider network on one
Linux machine, with host-role daemons doing what Hyper-V hosts do; and ``nvgw replay``
(scapy reads and writes its captures). Loaded on first use (``gateway._lazy``): the
CLI imports the lab's commands only for ``nvgw lab`` and the help's list of commands.
"""

from __future__ import annotations

from gateway._lazy import lazy_exports

# Imported now, not lazily: ``replay`` shares its name with its module, which, imported
# later, would shadow a lazy export of that name (scapy itself loads on first use).
from .replay import read_frames, replay, summary, write_frames

_EXPORTS = {"lab_app": ".commands"}
__all__ = ["lab_app", "read_frames", "replay", "summary", "write_frames"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
