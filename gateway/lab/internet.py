"""The lab's internet behind a gateway's NAT (``InternetPlan``), made with netlink.

The far network hangs off the internet by a veth of MTU ``FAR_MTU``, narrower than
the gateway's external TAP, so that path-MTU discovery through the NAT has something
to find; the internet routes between the two (forwarding on in its own namespace
only). Neither namespace rate-limits its ICMP errors, so that every probe of a
traceroute gets its answer however fast the probes come.
"""

from __future__ import annotations

from gateway.lab import netns
from gateway.lab.plan import FAR_ADDRESS, FAR_LINK, FAR_MTU, FAR_ROUTER, InternetPlan


def link_far(internet: InternetPlan) -> None:
    """The far network's link and routes (both namespaces exist already)."""
    inner, far = FAR_LINK
    netns.add_veth(internet.namespace, inner, internet.far_namespace, far)
    for namespace, ifname, address in (
        (internet.namespace, inner, FAR_ROUTER),
        (internet.far_namespace, far, FAR_ADDRESS),
    ):
        netns.set_mtu(namespace, ifname, FAR_MTU)
        netns.add_address(namespace, ifname, str(address.ip), address.network.prefixlen)
        netns.sysctl(namespace, "net.ipv4.icmp_ratelimit", "0")
    netns.add_default_route(internet.far_namespace, str(FAR_ROUTER.ip))
    netns.sysctl(internet.namespace, "net.ipv4.ip_forward", "1")


def servers(internet: InternetPlan) -> list[tuple[str, str]]:
    """Where the lab runs ``internet_server.py``: (namespace, address) for the
    internet's router address and for the far network's."""
    return [
        (internet.namespace, str(internet.address.ip)),
        (internet.far_namespace, str(FAR_ADDRESS.ip)),
    ]
