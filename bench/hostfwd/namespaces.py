"""The benchmark's two namespaces and the veth between them (the root namespace is
never touched); removed at the end, and by the next run after a killed one."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from .common import (
    HOST_DEV,
    HOST_MAC,
    HOST_PA,
    NAMESPACES,
    NS_HOST,
    NS_SND,
    OWNED_NAMESPACES,
    PA_PREFIX,
    SND_DEV,
    SND_MAC,
    SND_PA,
    STARTED,
    WG_GW,
    WG_SITE,
    ipn,
    log,
    nsx,
    run,
    start,
    stop,
)

HOLD: dict[str, int] = {}  # namespace -> pid of a process living in it (for /proc/<pid>/net)


def make_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    ipn(ns, "link", "set", "lo", "up")
    # no IPv6 anywhere here: no router solicitations or MLD on the veth or the TAP
    run(nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
    run(nsx(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
    HOLD[ns] = start(nsx(ns, "sleep", "infinity")).pid


def build_topology() -> None:
    for ns in NAMESPACES:
        make_namespace(ns)
    veth = ["ip", "link", "add", SND_DEV, "netns", NS_SND, "address", SND_MAC, "type", "veth"]
    run([*veth, "peer", "name", HOST_DEV, "netns", NS_HOST, "address", HOST_MAC])
    ipn(NS_SND, "addr", "add", f"{SND_PA}/{PA_PREFIX}", "dev", SND_DEV)
    ipn(NS_HOST, "addr", "add", f"{HOST_PA}/{PA_PREFIX}", "dev", HOST_DEV)
    ipn(NS_SND, "link", "set", SND_DEV, "up")
    ipn(NS_HOST, "link", "set", HOST_DEV, "up")


def cleanup() -> None:
    for proc in list(STARTED):
        try:
            stop(proc, timeout=5)
        except Exception as error:
            log(f"cleanup: pid {proc.pid}: {error}")
    HOLD.clear()
    existing = run(["ip", "netns", "list"], check=False).split()
    for ns in OWNED_NAMESPACES:
        if ns in existing:
            # processes an earlier, killed run of this script left in its own namespaces
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", ns], check=False)
    for ifname in (WG_SITE, WG_GW):  # a killed wireguard-go leaves its control socket
        Path(f"/var/run/wireguard/{ifname}.sock").unlink(missing_ok=True)
