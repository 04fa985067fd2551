"""A host that is not ours: Open vSwitch with its userspace (netdev) datapath, in a
namespace of its own on the provider network, as a third-party NVGRE host would be.

Its daemons run inside that namespace from a private run directory (their database,
sockets, pid files and logs), so they never meet a system Open vSwitch nor another
lab's. Two bridges, as userspace tunnels need: ``br-phy`` carries the PA (the
datapath routes and resolves tunnel endpoints from it) and holds the provider veth;
``br-int`` holds a VM's veth and a GRE port per gateway PA with ``key=flow``, so the
flows set and match the whole 32-bit key (VSID << 8 | FlowID). The flows are all
this host knows of the policy: what a VM sends to its VSID's gateway MAC leaves as
NVGRE to the gateway's PA; NVGRE of the VM's VSID (any FlowID) to its MAC is
delivered; the VM's ARP for its gateway's CA is answered by a flow; anything else is
dropped.

Starting and recording the daemons is ``topology.py``'s (so ``down`` stops them);
this module says what to run and configures the switch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Final

from gateway.lab.plan import LabError, PeerPlan, PeerVmPlan

TOOLS: Final = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ethtool")
SCHEMA: Final = Path("/usr/share/openvswitch/vswitch.ovsschema")
READY_TIMEOUT_S: Final = 20
INTEGRATION, PHYSICAL = "br-int", "br-phy"


def missing_tools() -> list[str]:
    """What a peer needs and is not installed: Open vSwitch's programs (Debian:
    openvswitch-switch) and ethtool (``netns.checksum_offload_off``)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def gre_port(pa: IPv4Address) -> str:
    """The GRE port toward ``pa``: one per gateway PA, named by its last octets so
    the name stays within an interface name's 15 bytes."""
    return "gre-" + "-".join(str(pa).split(".")[2:])


def flows(peer: PeerPlan) -> list[str]:
    """``br-int``'s OpenFlow table, one ovs-ofctl flow per line (module docstring)."""
    table = []
    for vm in peer.vms:
        table += _vm_flows(vm)
    table.append("priority=0,actions=drop")
    return table


def _vm_flows(vm: PeerVmPlan) -> list[str]:
    port, tunnel = vm.vm.name, gre_port(vm.router_pa)
    key = vm.vm.vsid << 8  # FlowID 0 on the way out; any FlowID on the way in
    # The VM's ARP for its gateway: answered from the policy, as an HNV host answers
    # its VMs, rather than a static neighbour in the VM, which would be no host's doing.
    arp_reply = ",".join(
        [
            "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
            f"mod_dl_src:{vm.router_mac}",
            "load:2->NXM_OF_ARP_OP[]",
            "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]",
            "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
            f"load:0x{vm.router_mac.replace(':', '')}->NXM_NX_ARP_SHA[]",
            f"load:0x{vm.vm.gateway.packed.hex()}->NXM_OF_ARP_SPA[]",  # type: ignore[union-attr]
            "in_port",
        ]
    )
    return [
        f"priority=110,in_port={port},arp,arp_op=1,arp_tpa={vm.vm.gateway},actions={arp_reply}",
        f"priority=100,in_port={port},dl_src={vm.mac},dl_dst={vm.router_mac},"
        f"actions=set_field:{key:#x}->tun_id,output:{tunnel}",
        f"priority=100,in_port={tunnel},tun_id={key:#x}/0xffffff00,dl_dst={vm.mac},"
        f"actions=output:{port}",
    ]


class OvsHost:
    """The Open vSwitch of one peer, run from ``run_dir`` inside its namespace."""

    def __init__(self, peer: PeerPlan, run_dir: Path) -> None:
        self.peer = peer
        self.run_dir = run_dir
        self.env = os.environ | {
            name: str(run_dir)
            for name in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR")
        }

    @property
    def db_socket(self) -> Path:
        return self.run_dir / "db.sock"

    def create_database(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run("ovsdb-tool", "create", str(self.run_dir / "conf.db"), str(SCHEMA), inside=False)

    def server_command(self) -> list[str]:
        return self._inside(
            "ovsdb-server",
            str(self.run_dir / "conf.db"),
            f"--remote=punix:{self.db_socket}",
            f"--unixctl={self.run_dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.run_dir / 'ovsdb-server.log'}",
        )

    def switch_command(self) -> list[str]:
        return self._inside(
            "ovs-vswitchd",
            f"unix:{self.db_socket}",
            f"--unixctl={self.run_dir / 'ovs-vswitchd.ctl'}",
            f"--log-file={self.run_dir / 'ovs-vswitchd.log'}",
        )

    def wait_for_database(self) -> None:
        """Until ovsdb-server listens (it creates its socket once the database is open)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.db_socket.exists():
            if time.monotonic() > deadline:
                raise LabError(
                    f"ovsdb-server of {self.peer.namespace} did not start: see {self.run_dir}"
                )
            time.sleep(0.005)
        self._vsctl("--no-wait", "init")

    def configure(self) -> None:
        """The bridges, ports and flows; ovs-vsctl returns once ovs-vswitchd has applied
        each change, so the bridges' devices exist when it does."""
        peer = self.peer
        for bridge in (PHYSICAL, INTEGRATION):
            self._vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
        self._vsctl("add-port", PHYSICAL, peer.interface)
        for pa in sorted({vm.router_pa for vm in peer.vms}):
            tunnel = gre_port(pa)
            options = ("type=gre", f"options:remote_ip={pa}", "options:key=flow")
            self._vsctl("add-port", INTEGRATION, tunnel, "--", "set", "interface", tunnel, *options)
        for vm in peer.vms:
            self._vsctl("add-port", INTEGRATION, vm.vm.name)
        self._run("ovs-ofctl", "del-flows", INTEGRATION)
        for flow in flows(peer):
            self._run("ovs-ofctl", "add-flow", INTEGRATION, flow)

    def _vsctl(self, *args: str) -> None:
        self._run("ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={READY_TIMEOUT_S}", *args)

    def _inside(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.peer.namespace, *command]

    def _run(self, *command: str, inside: bool = True) -> None:
        argv = self._inside(*command) if inside else list(command)
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, check=False, timeout=60
        )
        if done.returncode != 0:
            raise LabError(f"{' '.join(command)} in {self.peer.namespace}: {done.stderr.strip()}")
