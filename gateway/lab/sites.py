"""The on-prem sites of a hybrid lab (``SitePlan``), planned from the policy: pure,
as ``plan.py`` is (``onprem.py`` builds them). A gateway's tunnel whose endpoint is on
the lab's WAN gets a site: a namespace on the WAN bridge at that endpoint, running
wireguard-go with the gateway as its peer and the site's services on the tunnel's
allowed IPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, ip_address

from gateway.lab.names import LabError, fit_ifname
from gateway.policy import Policy

# The WAN toward on-prem sites (design.md, "The gateway labs"): a bridge in PREFIX-wan,
# the gateway's wan0 a kernel address on it (the daemon's tunnel sockets listen on
# every address). A tunnel whose endpoint is on it gets a site at that address.
WAN_NETWORK = IPv4Network("192.0.2.0/24")
WAN_GATEWAY = IPv4Interface("192.0.2.1/24")
WAN_LINK = "wan0"  # its name in the gateway's namespace and in each site's
# A site's services, on its tunnel's first allowed prefix: (name, protocol, host
# number in the prefix, port). Each answers with the site's name (``corp_server.py``).
SITE_SERVICES = (("directory", "tcp", 10, 389), ("dns", "udp", 11, 53), ("sql", "tcp", 12, 1433))


@dataclass(frozen=True)
class SitePlan:
    """An on-prem site behind a gateway's tunnel (hybrid cloud), on the WAN."""

    name: str  # its routing domain's name (numbered as corps are): what its servers say
    namespace: str
    node: str  # the gateway node that serves its tunnel
    tunnel: str
    rdid: str
    ifname: str  # wireguard-go's interface: its control socket is the machine's, so named
    wan: IPv4Interface  # the tunnel's endpoint, on the WAN
    listen_port: int  # wireguard-go's (the endpoint's port)
    gateway_port: int  # the tunnel's listen port on the gateway's WAN address
    preshared: bool  # whether the tunnel has a preshared key (the lab generates it)
    services: tuple[tuple[str, str, IPv4Interface, int], ...]  # name, protocol, address, port
    routes: tuple[IPv4Network, ...]  # the routing domain's virtual subnets, into the tunnel


def plan_sites(policy: Policy, prefix: str) -> list[SitePlan]:
    """A site per tunnel whose endpoint is on the WAN (not the gateway's own address),
    named after its routing domain (``PREFIX-onprem-NAME``, numbered when a domain has
    several); wireguard-go's interface ``PREFIX-wN``, N in tunnel order."""
    tunnels = []
    for tunnel in policy.tunnels:
        if tunnel.endpoint is None:
            continue  # roaming: the lab cannot know where the site is
        host, _, port = tunnel.endpoint.rpartition(":")
        address = ip_address(host.strip("[]"))
        if address in WAN_NETWORK and address != WAN_GATEWAY.ip:
            tunnels.append((tunnel, IPv4Interface(f"{address}/{WAN_NETWORK.prefixlen}"), int(port)))
    if len({tunnel.node for tunnel, _, _ in tunnels}) > 1:
        raise LabError(
            f"the lab's WAN has one gateway ({WAN_GATEWAY.ip}): the tunnels with an endpoint "
            f"in {WAN_NETWORK} must all be served by one node"
        )
    sites = []
    for index, (tunnel, wan, port) in enumerate(tunnels):
        domain = policy.routing_domain(tunnel.rdid)
        name = domain.name or domain.rdid.strip("{}")
        if sum(1 for t, _, _ in tunnels if t.rdid == tunnel.rdid) > 1:
            name = f"{name}-{1 + sum(1 for t, _, _ in tunnels[:index] if t.rdid == tunnel.rdid)}"
        prefixes = [p for p in tunnel.allowed_ips if p.version == 4]
        services = tuple(
            (service, protocol, IPv4Interface(f"{prefixes[0][host]}/{prefixes[0].prefixlen}"), at)
            for service, protocol, host, at in SITE_SERVICES
            if prefixes and host < prefixes[0].num_addresses - 1
        )
        routes = tuple(p for s in domain.virtual_subnets if (p := s.prefix_for(4)) is not None)
        sites.append(
            SitePlan(
                name,
                f"{prefix}-onprem-{name}",
                tunnel.node,
                tunnel.name,
                domain.rdid,
                fit_ifname(prefix, f"-w{index}"),
                wan,
                port,
                tunnel.listen_port,
                tunnel.preshared_key_file is not None,
                services,
                routes,  # type: ignore[arg-type]
            )
        )
    return sites
