"""Network namespaces, veths and bridges for the lab, through pyroute2's netlink.

Everything is created inside the lab's own namespaces: a veth is born in one
namespace with its peer placed straight into another, so nothing ever appears in
the root namespace, not even for a moment. Removing a namespace removes every link
in it, which is what makes teardown complete.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import NetNS, netns

from gateway.netnames import ifname_problem


def exists(name: str) -> bool:
    return name in netns.listnetns()


def create(name: str, *, ipv6: bool = True) -> None:
    """A new namespace with loopback up; ``ipv6=False`` keeps VMs quiet (no RS, MLD, DAD)."""
    netns.create(name)
    with _ns(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
    if not ipv6:
        sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
        sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")


def remove(name: str) -> None:
    """Remove a namespace and with it every link inside; a missing one is not an error."""
    if exists(name):
        netns.remove(name)


def sysctl(namespace: str, key: str, value: str) -> None:
    # Namespaced sysctls are per network namespace: write them from inside it.
    subprocess.run(
        ["ip", "netns", "exec", namespace, "sysctl", "-qw", f"{key}={value}"],
        check=True,
    )


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace, both up."""
    for name in (name_a, name_b):
        check_ifname(name)
    with _ns(ns_a) as ns:
        ns.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": ns_b})
        ns.link("set", index=ns.link_lookup(ifname=name_a)[0], state="up")
    with _ns(ns_b) as ns:
        ns.link("set", index=ns.link_lookup(ifname=name_b)[0], state="up")


def add_bridge(namespace: str, name: str, ports: list[str]) -> None:
    check_ifname(name)
    with _ns(namespace) as ns:
        ns.link("add", ifname=name, kind="bridge")
        bridge = ns.link_lookup(ifname=name)[0]
        for port in ports:
            ns.link("set", index=ns.link_lookup(ifname=port)[0], master=bridge)
        ns.link("set", index=bridge, state="up")


def set_link(namespace: str, ifname: str, *, mac: str, mtu: int) -> None:
    """A link's MAC address and MTU (a VM's own, where no daemon's TAP gives them)."""
    with _ns(namespace) as ns:
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], address=mac, mtu=mtu)


def set_mtu(namespace: str, ifname: str, mtu: int) -> None:
    with _ns(namespace) as ns:
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], mtu=mtu)


def checksum_offload_off(namespace: str, ifname: str) -> None:
    """The kernel computes what it sends out of ``ifname``'s checksums itself, rather
    than leave them to a NIC that a veth does not have: a packet socket at its other
    end (Open vSwitch's userspace datapath) reads them as they are, unfinished."""
    subprocess.run(
        ["ip", "netns", "exec", namespace, "ethtool", "-K", ifname, "tx", "off"],
        check=True,
        capture_output=True,
    )


def add_address(namespace: str, ifname: str, address: str, prefix_length: int) -> None:
    with _ns(namespace) as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=index, address=address, prefixlen=prefix_length)
        ns.link("set", index=index, state="up")


def check_ifname(name: str) -> None:
    """Refuse, before netlink does with a bare EINVAL, a name the kernel would not take."""
    problem = ifname_problem(name)
    if problem is not None:
        raise ValueError(f"interface name {name!r}: {problem[1]}")


@contextmanager
def _ns(name: str) -> Iterator[NetNS]:
    ns = NetNS(name)
    try:
        yield ns
    finally:
        ns.close()


def has_link(namespace: str, ifname: str) -> bool:
    with _ns(namespace) as ns:
        return bool(ns.link_lookup(ifname=ifname))


def move_link(from_ns: str, ifname: str, to_ns: str) -> None:
    """Move an interface to another namespace and bring it up there (a move downs it)."""
    with _ns(from_ns) as ns:
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], net_ns_fd=to_ns)
    with _ns(to_ns) as ns:
        ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")


def add_default_route(namespace: str, gateway: str) -> None:
    add_route(namespace, "0.0.0.0/0", gateway)


def add_route(namespace: str, destination: str, gateway: str) -> None:
    with _ns(namespace) as ns:
        ns.route("add", dst=destination, gateway=gateway)


def add_link_route(namespace: str, destination: str, ifname: str) -> None:
    """A route straight into a link (a tunnel's interface has no next hop to name)."""
    with _ns(namespace) as ns:
        ns.route("add", dst=destination, oif=ns.link_lookup(ifname=ifname)[0])
