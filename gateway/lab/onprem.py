"""The lab's WAN and on-prem sites (hybrid cloud, ``SitePlan``): keys, links,
wireguard-go.

The keys are the lab's own: at ``up``, before the policy is seeded, it generates the
gateway's private key per listen port its sites use, each site's key pair, and a
preshared key for each tunnel that has one, as files of mode 0600 in a directory of
the state directory (each recorded in the state file before it is written, so
``down`` removes them, also after a crash), and writes a copy of the scenario's
config with their public keys and paths in place of its placeholders: that copy is
what the lab's store is seeded from. No key is ever on a command line: ``wg`` reads
them from their files.

Each site runs wireguard-go (the peer that is not ours) on an interface named with
the lab's prefix: its control socket lives in /var/run/wireguard for the whole
machine, so ``up`` refuses one that exists (another lab's, or a crashed one's), and
records it so that ``down`` removes it when a killed wireguard-go left it behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ruamel.yaml import YAML

from gateway.lab import netns
from gateway.lab.corp_probe import ask
from gateway.lab.plan import LabError, LabPlan
from gateway.lab.probe import Cell
from gateway.lab.sites import WAN_GATEWAY, WAN_LINK, SitePlan

UAPI_DIR: Final = Path("/var/run/wireguard")
SOCKET_TIMEOUT_S: Final = 10.0  # only bounds a failure: wireguard-go makes it in ms


def keys_dir(state_dir: Path, prefix: str) -> Path:
    return state_dir / f"lab-{prefix}-keys"


def gateway_key(keys: Path, node: str, port: int) -> Path:
    return keys / f"{node}-{port}.key"


def site_key(keys: Path, site: SitePlan, suffix: str = "key") -> Path:
    """The site's private key (``key``), or its tunnel's preshared key (``psk``)."""
    return keys / f"site-{site.name}.{suffix}"


def uapi_socket(site: SitePlan) -> Path:
    return UAPI_DIR / f"{site.ifname}.sock"


def wg(*arguments: str, data: bytes | None = None, namespace: str | None = None) -> bytes:
    """``wg`` (wireguard-tools), in ``namespace`` when given; its output."""
    command = ["wg", *arguments]
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout


def write_key(path: Path, key: bytes) -> None:
    """A new key file, owner only from its first byte (never a file already there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)


def public_key(private: Path) -> str:
    return wg("pubkey", data=private.read_bytes()).decode().strip()


def write_keys(plan: LabPlan, keys: Path, record: Callable[[Path], None]) -> None:
    """Generate the keys of ``plan``'s sites into ``keys`` (made already), each
    ``record``ed before it is written; a gateway's key per port is shared by its sites."""
    for site in plan.sites:
        wanted = [(gateway_key(keys, site.node, site.gateway_port), "genkey")]
        wanted.append((site_key(keys, site), "genkey"))
        if site.preshared:
            wanted.append((site_key(keys, site, "psk"), "genpsk"))
        for path, verb in wanted:
            if not path.exists():
                record(path)
                write_key(path, wg(verb))


def keyed_config(config: Path, plan: LabPlan, keys: Path, copy: Path) -> None:
    """``config`` with the keys of ``plan``'s sites written in (their paths, the
    sites' public keys), at ``copy``."""
    yaml = YAML()
    document = yaml.load(config.read_text())
    for site in plan.sites:
        node = document["nodes"][site.node]
        node["tunnel_keys"] = {
            **(node.get("tunnel_keys") or {}),
            site.gateway_port: str(gateway_key(keys, site.node, site.gateway_port)),
        }
        tunnel = next(t for t in document["tunnels"] if t["name"] == site.tunnel)
        tunnel["public_key"] = public_key(site_key(keys, site))
        if site.preshared:
            tunnel["preshared_key_file"] = str(site_key(keys, site, "psk"))
    with open(copy, "w") as out:
        yaml.dump(document, out)


def link_wan(plan: LabPlan) -> None:
    """The WAN bridge and its links: the gateway's ``wan0`` (its WAN address, a kernel
    address of its namespace) and each site's (all namespaces exist already)."""
    node = plan.sites[0].node  # one gateway on the WAN (``plan._sites``)
    ends = [(f"{plan.prefix}-{node}", "gw0", WAN_GATEWAY)]
    ends += [(site.namespace, f"site{index}", site.wan) for index, site in enumerate(plan.sites)]
    for namespace, port, address in ends:
        netns.add_veth(namespace, WAN_LINK, plan.wan_namespace, port)
        netns.add_address(namespace, WAN_LINK, str(address.ip), address.network.prefixlen)
    netns.add_bridge(plan.wan_namespace, "br0", [port for _, port, _ in ends])


def wireguard_command(site: SitePlan) -> list[str]:
    """wireguard-go in the foreground in the site's namespace (its TUN is made there)."""
    return ["ip", "netns", "exec", site.namespace, "wireguard-go", "-f", site.ifname]


def wait_for_socket(site: SitePlan, process: subprocess.Popen[bytes]) -> None:
    """Until wireguard-go's control socket exists: its readiness to be configured."""
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while not uapi_socket(site).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"wireguard-go of {site.namespace} made no {uapi_socket(site)}")
        time.sleep(0.01)


def configure(site: SitePlan, keys: Path) -> None:
    """The site's wireguard-go: its key and port, the gateway its one peer
    (``set_peer``); the site's services' addresses on its interface, and routes to
    the tenant's subnets into it."""
    own = ["listen-port", str(site.listen_port), "private-key", str(site_key(keys, site))]
    wg("set", site.ifname, *own, namespace=site.namespace)
    set_peer(site, keys)
    for _, _, address, _ in site.services:
        netns.add_address(site.namespace, site.ifname, str(address.ip), address.network.prefixlen)
    for route in site.routes:
        netns.add_link_route(site.namespace, str(route), site.ifname)


def set_peer(site: SitePlan, keys: Path) -> None:
    """The gateway as the site's one peer: at the gateway's WAN address, allowed IPs
    the tenant's virtual subnets, the tunnel's preshared key if it has one."""
    peer = ["peer", public_key(gateway_key(keys, site.node, site.gateway_port))]
    peer += ["endpoint", f"{WAN_GATEWAY.ip}:{site.gateway_port}"]
    peer += ["allowed-ips", ",".join(str(route) for route in site.routes)]
    if site.preshared:
        peer += ["preshared-key", str(site_key(keys, site, "psk"))]
    wg("set", site.ifname, *peer, namespace=site.namespace)


def forget_sessions(site: SitePlan, keys: Path) -> None:
    """The site forgets its sessions with the gateway, as a restarted site would: its
    peer removed and set again (what starts the next handshake is then traffic)."""
    gateway = public_key(gateway_key(keys, site.node, site.gateway_port))
    wg("set", site.ifname, "peer", gateway, "remove", namespace=site.namespace)
    set_peer(site, keys)


def server_arguments(site: SitePlan) -> list[str]:
    """``corp_server``'s arguments for the site's services: its name, then each
    service as PROTOCOL:ADDRESS:PORT."""
    endpoints = [f"{protocol}:{address.ip}:{port}" for _, protocol, address, port in site.services]
    return [site.name, site.namespace, *endpoints]


def site_connectivity(plan: LabPlan) -> list[Cell]:
    """Each VM asks every service address of the sites (once per address: the sites
    may share them) over its protocol and port; a cell per VM and site says whether
    that site answered every service. Expected: the site of the VM's own routing
    domain (its tunnel's allowed IPs route those addresses into it), and no other."""
    cells = []
    services = {
        (str(a.ip), protocol, port) for s in plan.sites for _, protocol, a, port in s.services
    }
    for vm in plan.vms:
        said = {service: ask(vm, *service) for service in sorted(services)}
        for site in plan.sites:
            mine = [said[str(a.ip), protocol, port] for _, protocol, a, port in site.services]
            answered = site.name if mine and all(name == site.name for name in mine) else None
            cells.append(
                Cell(vm.name, site.name, answered, site.name if site.rdid == vm.rdid else None)
            )
    return cells
