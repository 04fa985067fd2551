"""What a lab builds for a config: namespaces, links and VMs, derived from the policy.

Pure: the plan is computed from the policy and a name prefix, and ``topology.py``
carries it out. Every node, host or gateway, gets a namespace joined to the provider
bridge by a veth whose node end carries the node's NVGRE PAs (IP-Rewrite PAs are the
daemon's, never the kernel's). Every port becomes a VM: a namespace of its own into
which the host's daemon's TAP is moved, addressed with the CA of the port's lookup
record. Every TAP of a gateway becomes a corp network (``CorpPlan``): a namespace
into which the gateway's daemon's TAP is moved, the first address of the TAP's
subnet that is not the gateway's own, a route to each of its routing domain's
virtual subnets via the gateway, and a server that answers with the domain's name.
A PA of a VM's lookup record that no node owns is a host that is not ours
(``PeerPlan``): the lab builds it as an Open vSwitch host (``ovs_peer.py``). A
gateway's NAT gets an internet (``InternetPlan``): a namespace into which the
gateway's external TAP is moved, addressed as the NAT's next hop, with servers on that
address, and a far network behind a narrower link that it routes to. A gateway's
tunnel whose endpoint is on the lab's WAN gets an on-prem site (``SitePlan``, planned
in ``sites.py``, built by ``onprem.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from gateway.lab.names import LabError, fit_ifname
from gateway.lab.sites import SitePlan, plan_sites
from gateway.policy import NodeRole, Policy, RecordType, Rule, domains_matching


@dataclass(frozen=True)
class HostPlan:
    node: str
    namespace: str
    interface: str  # the provider veth's host end (the node's provider address interface)
    bridge_port: str  # its other end, on the provider bridge
    addresses: tuple[str, ...]  # "198.18.0.1/24": the NVGRE PAs, kernel addresses


@dataclass(frozen=True)
class VmPlan:
    name: str  # the port (TAP) name, also the VM's name
    namespace: str
    node: str
    vsid: int
    rdid: str
    address: IPv4Interface  # CA with its subnet's prefix length
    gateway: IPv4Address | None  # default route, when the subnet has a gateway CA


@dataclass(frozen=True)
class CorpPlan:
    """An on-premises network behind one of a gateway's TAPs (private cloud)."""

    name: str  # its routing domain's name (its RDID when it has none): what its server says
    namespace: str
    node: str  # the gateway node whose daemon owns the TAP
    tap: str  # the TAP, whose kernel end is moved into the namespace
    rdid: str
    address: IPv4Interface  # the corp side's address on the TAP, with its prefix length
    via: IPv4Address  # the gateway's own address on the TAP
    routes: tuple[IPv4Network, ...]  # the routing domain's virtual subnets, via the gateway


# The far network behind each internet (design.md, "The gateway labs"): a server on a
# documentation address behind a link narrower than the gateway's, so that path-MTU
# discovery through the NAT has something to find.
FAR_NETWORK = IPv4Network("198.51.100.0/24")
FAR_ROUTER = IPv4Interface("198.51.100.1/24")  # the internet's end of the link
FAR_ADDRESS = IPv4Interface("198.51.100.2/24")
FAR_MTU = 1400
FAR_LINK = ("far0", "inet0")  # the veth's ends: in the internet, in the far network


@dataclass(frozen=True)
class InternetPlan:
    """The internet behind a gateway's NAT: its external TAP's kernel end, addressed
    as the NAT's next hop (the router, where the servers listen), and the far network
    it routes to."""

    node: str  # the gateway node whose daemon owns the external TAP
    namespace: str
    tap: str  # the external TAP, whose kernel end is moved into the namespace
    address: IPv4Interface  # the NAT's next hop, with the external subnet's length
    external: tuple[IPv4Address, ...]  # the NAT's addresses (the daemon's own)
    far_namespace: str


@dataclass(frozen=True)
class PeerVmPlan:
    """A VM on a host that is not ours, and where its off-subnet traffic goes: its
    VSID's gateway record (the foreign host's flows send it there as NVGRE; the
    subnet's ``gateway:`` CA is answered by nvgw's hosts only)."""

    vm: VmPlan  # its node is the peer's name; its gateway the gateway record's CA
    mac: str  # "00:00:00:00:00:13", as ip and ovs-ofctl write it
    router_mac: str  # the gateway record's MAC
    router_pa: IPv4Address  # the gateway record's PA: the NVGRE tunnel's remote end


@dataclass(frozen=True)
class PeerPlan:
    """A host that is not ours at a PA no node owns, on the provider network."""

    name: str
    namespace: str
    interface: str  # the provider veth's end in the peer's namespace
    bridge_port: str  # its other end, on the provider bridge
    address: IPv4Interface  # its PA, with the provider network's prefix length
    vms: tuple[PeerVmPlan, ...]


@dataclass(frozen=True)
class LabPlan:
    prefix: str
    provider_namespace: str
    bridge: str
    hosts: tuple[HostPlan, ...]
    vms: tuple[VmPlan, ...]
    corps: tuple[CorpPlan, ...] = ()
    peers: tuple[PeerPlan, ...] = ()
    internets: tuple[InternetPlan, ...] = ()
    sites: tuple[SitePlan, ...] = ()

    @property
    def wan_namespace(self) -> str:
        return f"{self.prefix}-wan"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace the lab creates, provider network first."""
        hosts = [h.namespace for h in self.hosts]
        vms = [v.namespace for v in self.vms]
        peers = [n for p in self.peers for n in (p.namespace, *(v.vm.namespace for v in p.vms))]
        internets = [n for i in self.internets for n in (i.namespace, i.far_namespace)]
        corps = [c.namespace for c in self.corps]
        wan = [self.wan_namespace, *(s.namespace for s in self.sites)] if self.sites else []
        return [self.provider_namespace, *hosts, *vms, *corps, *peers, *internets, *wan]

    @property
    def every_vm(self) -> list[VmPlan]:
        """The hosts' VMs, then those of the hosts that are not ours."""
        return [*self.vms, *(vm.vm for peer in self.peers for vm in peer.vms)]

    def peer_vm(self, name: str) -> PeerVmPlan:
        for peer in self.peers:
            for vm in peer.vms:
                if vm.vm.name == name:
                    return vm
        raise KeyError(name)

    def corp(self, name: str) -> CorpPlan:
        for corp in self.corps:
            if corp.name == name:
                return corp
        raise KeyError(name)

    def site(self, name: str) -> SitePlan:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def vm(self, name: str) -> VmPlan:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def host(self, node: str) -> HostPlan:
        for host in self.hosts:
            if host.node == node:
                return host
        raise KeyError(node)


def plan_lab(policy: Policy, prefix: str) -> LabPlan:
    rewrite = {r.pa for r in policy.lookup_records if r.rule is Rule.IP_REWRITE}
    hosts = []
    for index, node in enumerate(policy.nodes):
        interface = node.provider_addresses[0].interface if node.provider_addresses else "pa0"
        addresses = tuple(
            f"{pa.pa}/{pa.prefix_length}" for pa in node.provider_addresses if pa.pa not in rewrite
        )
        bridge_port = fit_ifname(prefix, f"-p{index}")
        hosts.append(
            HostPlan(node.name, f"{prefix}-{node.name}", interface, bridge_port, addresses)
        )
    vms = []
    for node in policy.nodes:
        for port in node.ports:
            record = next(
                r for r in policy.lookup_records if r.vsid == port.vsid and r.mac == port.mac
            )
            subnet = policy.virtual_subnet(port.vsid)
            prefix_v4 = subnet.prefix_for(4)
            if prefix_v4 is None or not isinstance(record.ca, IPv4Address):
                continue  # forwarding is IPv4-only for now
            vms.append(
                VmPlan(
                    port.name,
                    f"{prefix}-{port.name}",
                    node.name,
                    port.vsid,
                    policy.rdid_of(port.vsid),
                    IPv4Interface(f"{record.ca}/{prefix_v4.prefixlen}"),
                    subnet.gateway if isinstance(subnet.gateway, IPv4Address) else None,
                )
            )
    corps = tuple(_corps(policy, prefix))
    peers = tuple(_peers(policy, prefix))
    internets = tuple(_internets(policy, prefix))
    sites = tuple(plan_sites(policy, prefix))
    plan = LabPlan(
        prefix, f"{prefix}-pnet", "br0", tuple(hosts), tuple(vms), corps, peers, internets, sites
    )
    _check_unique(plan)
    return plan


def _corps(policy: Policy, prefix: str) -> list[CorpPlan]:
    """A corp network per IPv4 TAP of each gateway node, named after its routing
    domain (``PREFIX-corp-NAME``, numbered when a domain has several TAPs)."""
    corps = []
    for node in policy.nodes:
        if node.role is not NodeRole.GATEWAY:
            continue
        for key, served in (node.routing_domains or {}).items():
            domain = domains_matching(key, policy.routing_domains)[0]  # valid: exactly one
            name = domain.name or domain.rdid.strip("{}")
            taps = [tap for tap in served.taps if tap.address.version == 4]
            for index, tap in enumerate(taps):
                own = tap.address.ip
                corp = next(host for host in tap.address.network.hosts() if host != own)
                routes = tuple(
                    prefix_v4
                    for subnet in domain.virtual_subnets
                    if (prefix_v4 := subnet.prefix_for(4)) is not None
                )
                suffix = f"-{index + 1}" if len(taps) > 1 else ""
                corps.append(
                    CorpPlan(
                        f"{name}{suffix}",
                        f"{prefix}-corp-{name}{suffix}",
                        node.name,
                        tap.name,
                        domain.rdid,
                        IPv4Interface(f"{corp}/{tap.address.network.prefixlen}"),
                        own,  # type: ignore[arg-type]
                        routes,  # type: ignore[arg-type]
                    )
                )
    return corps


def _internets(policy: Policy, prefix: str) -> list[InternetPlan]:
    """An internet per gateway node with an IPv4 NAT (``PREFIX-internet`` and
    ``PREFIX-far``, suffixed with the node's name when several nodes have one)."""
    nats = [
        (node.name, node.nat)
        for node in policy.nodes
        if node.nat is not None and isinstance(node.nat.next_hop, IPv4Address)
    ]
    internets = []
    for name, nat in nats:
        suffix = f"-{name}" if len(nats) > 1 else ""
        length = nat.addresses[0].network.prefixlen
        internets.append(
            InternetPlan(
                name,
                f"{prefix}-internet{suffix}",
                nat.tap,
                IPv4Interface(f"{nat.next_hop}/{length}"),
                tuple(address.ip for address in nat.addresses),  # type: ignore[misc]
                f"{prefix}-far{suffix}",
            )
        )
    return internets


def _peers(policy: Policy, prefix: str) -> list[PeerPlan]:
    """A host that is not ours per PA of a named VM's encap record that no node owns
    and that lies in a node's provider network (``PREFIX-ovsN``, in PA order), with
    each such VM whose VSID has a gateway record to send its off-subnet traffic to."""
    owned = [
        IPv4Interface(f"{pa.pa}/{pa.prefix_length}")
        for node in policy.nodes
        for pa in node.provider_addresses
        if pa.pa.version == 4
    ]
    routers = {r.vsid: r for r in policy.lookup_records if r.type is RecordType.GATEWAY}
    by_pa: dict[IPv4Interface, list[PeerVmPlan]] = {}
    for record in policy.lookup_records:
        router = routers.get(record.vsid)
        networks = [pa.network for pa in owned if record.pa in pa.network]
        prefix_v4 = policy.virtual_subnet(record.vsid).prefix_for(4)
        if (
            record.vm is None
            or record.rule is not Rule.ENCAP
            or record.type is not RecordType.STATIC
            or any(record.pa == pa.ip for pa in owned)
            or not networks
            or router is None
            or prefix_v4 is None
            or not isinstance(record.ca, IPv4Address)
        ):
            continue
        pa = IPv4Interface(f"{record.pa}/{networks[0].prefixlen}")
        vm = VmPlan(
            record.vm,
            f"{prefix}-{record.vm}",
            "",  # named below, once the peers are numbered
            record.vsid,
            policy.rdid_of(record.vsid),
            IPv4Interface(f"{record.ca}/{prefix_v4.prefixlen}"),
            router.ca,  # type: ignore[arg-type]
        )
        mac = str(record.mac).replace("-", ":").lower()
        router_mac = str(router.mac).replace("-", ":").lower()
        by_pa.setdefault(pa, []).append(PeerVmPlan(vm, mac, router_mac, router.pa))  # type: ignore[arg-type]
    peers = []
    for index, (pa, vms) in enumerate(sorted(by_pa.items())):
        name = f"ovs{index + 1}"
        named = tuple(replace(v, vm=replace(v.vm, node=name)) for v in vms)
        bridge_port = fit_ifname(prefix, f"-o{index}")
        peers.append(PeerPlan(name, f"{prefix}-{name}", "pa0", bridge_port, pa, named))
    return peers


def _check_unique(plan: LabPlan) -> None:
    """Hosts, VMs and the provider network share one namespace per name, but the
    policy keeps port names unique per node only: refuse what the lab cannot build."""
    owners: dict[str, list[str]] = {}
    owners.setdefault(plan.provider_namespace, []).append("the provider network")
    for host in plan.hosts:
        owners.setdefault(host.namespace, []).append(f"node {host.node}")
    for vm in plan.vms:
        owners.setdefault(vm.namespace, []).append(f"port {vm.name} of {vm.node}")
    for corp in plan.corps:
        owners.setdefault(corp.namespace, []).append(f"the corp network behind TAP {corp.tap}")
    for peer in plan.peers:
        owners.setdefault(peer.namespace, []).append(f"the host that is not ours at {peer.address}")
        for vm in peer.vms:
            owners.setdefault(vm.vm.namespace, []).append(f"VM {vm.vm.name} of {peer.name}")
    for internet in plan.internets:
        owners.setdefault(internet.namespace, []).append(f"the internet of {internet.node}")
        owners.setdefault(internet.far_namespace, []).append(f"the far network of {internet.node}")
    if plan.sites:
        owners.setdefault(plan.wan_namespace, []).append("the WAN")
    for site in plan.sites:
        owners.setdefault(site.namespace, []).append(f"the on-prem site of tunnel {site.tunnel}")
    clashes = [f"{name} ({' and '.join(who)})" for name, who in owners.items() if len(who) > 1]
    if clashes:
        raise LabError(
            "the lab names each host, VM and the provider network's namespace "
            f"PREFIX-NAME, and these would share one: {'; '.join(clashes)}; "
            "rename the ports so that every VM name is unique and no node or 'pnet'"
        )
