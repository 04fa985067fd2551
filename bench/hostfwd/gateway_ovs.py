"""Anchor B: Open vSwitch's userspace (netdev) datapath decapsulating NVGRE into a TAP,
in the host namespace, pinned to the receiver core (the anchors' B, built here).

br-phy (netdev) takes the host veth as an ordinary port (an AF_PACKET socket polled
by the main thread) and holds the PA and the MAC the sender targets (the veth gets
another MAC, so the namespace's own IP stack ignores the frames); br-int has ``gre0``
(``type=gre``, ``key=flow``, remote 198.18.0.1) and a ``type=tap`` port named as the
gateway's TAP, which OVS creates itself; one OpenFlow rule sends the VSID's frames
(any FlowID) from gre0 to the TAP. OVS runs from a private directory in the scratch
directory, no systemd. Stopping it gives the host veth its MAC and PA back.
"""

from __future__ import annotations

import os
import signal
import time

from .common import (
    HOST_DEV,
    HOST_MAC,
    HOST_PA,
    NS_HOST,
    PA_PREFIX,
    RCV_CPU,
    SCRATCH,
    SND_PA,
    VSID,
    BenchError,
    ipn,
    nsx,
    run,
)
from .counters import netdev
from .gateway_setup import CORP_MAC, GW_TAP, drop_ipv4_at_ingress, sink_provider_side

OVS = SCRATCH / "ovs"
PORT_MAC = "02:00:00:00:00:22"  # the host veth's while OVS holds the PA on br-phy
OVS_DEVICES = ("br-phy", "br-int", "ovs-netdev", "gre_sys", GW_TAP)


def _env() -> dict[str, str]:
    where = str(OVS)
    return dict(os.environ, OVS_RUNDIR=where, OVS_LOGDIR=where, OVS_DBDIR=where)


def _ovs(*cmd: str) -> str:
    with_env = ["env", *(f"{k}={v}" for k, v in _env().items() if k.startswith("OVS_"))]
    return run(nsx(NS_HOST, *with_env, *cmd), timeout=20)


def vsctl(*args: str) -> str:
    return _ovs("ovs-vsctl", f"--db=unix:{OVS}/db.sock", "--timeout=15", *args)


def _daemon(name: str, *args: str) -> None:
    pin = ["taskset", "-c", str(RCV_CPU)]
    files = [f"--pidfile={OVS}/{name}.pid", f"--log-file={OVS}/{name}.log"]
    _ovs(*pin, name, *args, *files, f"--unixctl={OVS}/{name}.ctl", "--detach")


def read_pid(name: str) -> int | None:
    try:
        return int((OVS / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def ovs_start() -> int:
    """OVS up and forwarding the VSID from gre0 to the TAP; returns ovs-vswitchd's pid."""
    run(["rm", "-rf", str(OVS)])
    OVS.mkdir(parents=True)
    schema = "/usr/share/openvswitch/vswitch.ovsschema"
    run(["ovsdb-tool", "create", str(OVS / "conf.db"), schema])
    _daemon("ovsdb-server", str(OVS / "conf.db"), f"--remote=punix:{OVS}/db.sock")
    vsctl("--no-wait", "init")
    _daemon("ovs-vswitchd", f"unix:{OVS}/db.sock")
    ipn(NS_HOST, "addr", "flush", "dev", HOST_DEV)
    ipn(NS_HOST, "link", "set", HOST_DEV, "down")
    ipn(NS_HOST, "link", "set", HOST_DEV, "address", PORT_MAC, "up")
    hwaddr = f"other-config:hwaddr={HOST_MAC}"
    netdev_bridge = ["--", "set", "bridge"]
    vsctl("add-br", "br-phy", *netdev_bridge, "br-phy", "datapath_type=netdev", hwaddr)
    vsctl("add-port", "br-phy", HOST_DEV)
    ipn(NS_HOST, "addr", "add", f"{HOST_PA}/{PA_PREFIX}", "dev", "br-phy")
    ipn(NS_HOST, "link", "set", "br-phy", "up")
    gre = ["type=gre", f"options:remote_ip={SND_PA}", "options:key=flow"]
    vsctl("add-br", "br-int", *netdev_bridge, "br-int", "datapath_type=netdev")
    vsctl("add-port", "br-int", "gre0", "--", "set", "interface", "gre0", *gre)
    vsctl("add-port", "br-int", GW_TAP, "--", "set", "interface", GW_TAP, "type=tap")
    ipn(NS_HOST, "link", "set", GW_TAP, "address", CORP_MAC, "up")
    drop_ipv4_at_ingress(NS_HOST, GW_TAP)
    _ovs("ovs-ofctl", "del-flows", "br-int")
    rule = f"priority=100,in_port=gre0,tun_id={VSID << 8:#x}/0xffffff00,actions=output:{GW_TAP}"
    _ovs("ovs-ofctl", "add-flow", "br-int", rule)
    _ovs("ovs-ofctl", "add-flow", "br-int", "priority=0,actions=drop")
    pid = read_pid("ovs-vswitchd")
    if pid is None:
        raise BenchError(f"ovs-vswitchd wrote no pid file (see {OVS}/ovs-vswitchd.log)")
    run(["taskset", "-a", "-p", "-c", str(RCV_CPU), str(pid)])
    appctl = ["ovs-appctl", "-t", f"{OVS}/ovs-vswitchd.ctl"]
    t_end = time.monotonic() + 10  # until the tunnel port knows the local address
    while "gre_sys" not in _ovs(*appctl, "tnl/ports/show") or HOST_PA not in _ovs(
        *appctl, "ovs/route/show"
    ):
        if time.monotonic() > t_end:
            raise BenchError("OVS: the GRE port did not come up within 10 s")
        time.sleep(0.2)
    return pid


def ovs_stop() -> None:
    """Stop OVS (by its pid files: only the daemons this run started) and give the
    host veth its MAC, its PA and the sink neighbour back."""
    for name in ("ovs-vswitchd", "ovsdb-server"):
        pid = read_pid(name)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        t_end = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < t_end:
            time.sleep(0.1)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
        (OVS / f"{name}.pid").unlink(missing_ok=True)
    devices = netdev(NS_HOST)
    for device in OVS_DEVICES:
        if device in devices:
            run(["ip", "-n", NS_HOST, "link", "del", device], check=False)
    ipn(NS_HOST, "addr", "flush", "dev", HOST_DEV)
    ipn(NS_HOST, "link", "set", HOST_DEV, "down")
    ipn(NS_HOST, "link", "set", HOST_DEV, "address", HOST_MAC, "up")
    ipn(NS_HOST, "addr", "add", f"{HOST_PA}/{PA_PREFIX}", "dev", HOST_DEV)
    sink_provider_side()
