"""Prometheus metric families read from the data plane's plain-int counters.

``collect()`` runs on every scrape (in the metrics server's thread) and walks the
counters the packet loop bumps; the loop itself never touches prometheus_client.
Reading an int another thread increments is safe under the GIL, and a scrape that
lands mid-batch sees a count a few packets old, which is all a counter promises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.dataplane import (
    TUNNEL_TOTALS,
    Counters,
    DomainCounters,
    GatewayTables,
    HostTables,
    PortCounters,
)
from gateway.errors import Drop
from gateway.wireguard import Reason


class DataplaneCollector(Collector):
    """Metrics of one node's data plane, whatever its role; ``tables`` is called per
    scrape so that a policy swap shows up at once (ports' VSID labels, the routing
    domains a gateway serves, the policy revision). A host has ports, a gateway
    routing domains: each family is there for both, empty where the role has none."""

    def __init__(
        self,
        node: str,
        counters: Counters,
        tables: Callable[[], HostTables | GatewayTables],
        kernel_drops: Callable[[], int] = lambda: 0,
        reloads: Callable[[], dict[str, int]] = dict,
        changes: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self._node = node
        self._counters = counters
        self._tables = tables
        self._kernel_drops = kernel_drops
        self._reloads = reloads
        self._changes = changes

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters = self._counters
        tables = self._tables()
        drops = CounterMetricFamily(
            "nvgw_drops", "Packets dropped, by reason (README: drop reasons)", labels=["reason"]
        )
        snapshot = list(counters.drops)
        for reason in Drop:
            drops.add_metric([reason.label], snapshot[reason])
        yield drops
        for name, help_text in Counters.TOTALS:
            yield CounterMetricFamily(f"nvgw_{name}", help_text, value=getattr(counters, name))
        per_port = [
            (name, CounterMetricFamily(f"nvgw_port_{name}", help_text, labels=["port", "vsid"]))
            for name, help_text in PortCounters.TOTALS
        ]
        ports = tables.ports if isinstance(tables, HostTables) else ()
        for port in ports:
            values = [port.name, str(port.vsid)]
            for name, family in per_port:
                family.add_metric(values, getattr(port.counters, name))
        for _, family in per_port:
            yield family
        yield from _per_domain(tables)
        yield from _napt(tables)
        yield from _tunnels(tables)
        info = GaugeMetricFamily(
            "nvgw_policy_revision", "Revision of the policy in force", labels=["node"]
        )
        info.add_metric([self._node], tables.snapshot.revision)
        yield info
        yield GaugeMetricFamily(
            "nvgw_ports", "VM network adapters this node serves", value=len(ports)
        )
        yield _by_result(
            "nvgw_policy_reloads",
            "Policy reloads (SIGHUP), by result: applied, or refused (the old policy kept)",
            self._reloads(),
        )
        yield _by_result(
            "nvgw_policy_changes",
            "Policy changes through the control API, by result: applied, or refused "
            "(invalid, stale revision, nothing to remove; the policy kept)",
            self._changes(),
        )
        yield CounterMetricFamily(
            "nvgw_kernel_rx_drops",
            "Provider frames the kernel dropped before nvgw could read them (receive ring full)",
            value=self._kernel_drops(),
        )


def _per_domain(tables: HostTables | GatewayTables) -> Iterator[CounterMetricFamily]:
    """What crossed a gateway per routing domain it serves, each way, labelled by RDID
    and the domain's name (its RDID when it has none)."""
    domains = tables.domains.values() if isinstance(tables, GatewayTables) else ()
    per_domain = [
        (name, CounterMetricFamily(f"nvgw_domain_{name}", text, labels=["rdid", "routing_domain"]))
        for name, text in DomainCounters.TOTALS
    ]
    for domain in domains:
        values = [domain.rdid, domain.name]
        for name, family in per_domain:
            family.add_metric(values, getattr(domain.counters, name))
    for _, family in per_domain:
        yield family


def _napt(tables: HostTables | GatewayTables) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """A gateway's NAT per routing domain it serves (its tenant of the node's table):
    sessions held and the limit, sessions opened (an external port allocated or a
    forward's taken), ended for idleness, and new ones refused, by reason."""
    labels = ["rdid", "routing_domain"]
    held = GaugeMetricFamily("nvgw_napt_sessions", "NAT sessions held", labels=labels)
    limit = GaugeMetricFamily(
        "nvgw_napt_session_limit", "NAT sessions the routing domain may hold", labels=labels
    )
    opened = CounterMetricFamily("nvgw_napt_sessions_opened", "NAT sessions opened", labels=labels)
    expired = CounterMetricFamily(
        "nvgw_napt_sessions_expired", "NAT sessions ended, idle past their timeout", labels=labels
    )
    refused = CounterMetricFamily(
        "nvgw_napt_sessions_refused",
        "New NAT sessions refused: tenant limit, table full, or no external port left",
        labels=[*labels, "reason"],
    )
    domains = tables.domains.values() if isinstance(tables, GatewayTables) else ()
    for domain in domains:
        tenant = domain.tenant
        if tenant is None:
            continue
        values = [domain.rdid, domain.name]
        held.add_metric(values, tenant.sessions)
        limit.add_metric(values, tenant.max_sessions)
        opened.add_metric(values, tenant.opened)
        expired.add_metric(values, tenant.expired)
        for reason, count in list(tenant.refused.items()):
            refused.add_metric([*values, reason.label], count)
    yield from (held, limit, opened, expired, refused)


def _tunnels(
    tables: HostTables | GatewayTables,
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """A gateway's site-to-site tunnels: per tunnel (its name and RDID; one series
    each, gone with the tunnel), what its peer counts and when the latest handshake
    was (seconds since the epoch, 0 before the first, as ``wg show``); per listen
    port, the cookie replies sent and the datagrams refused by reason (those that
    name no peer until they authenticate: under load, forged, malformed)."""
    labels = ["tunnel", "rdid"]
    latest = GaugeMetricFamily(
        "nvgw_tunnel_latest_handshake_seconds",
        "When the latest handshake with the tunnel's peer completed, in seconds since "
        "the epoch (0: none yet)",
        labels=labels,
    )
    per_tunnel = [
        (name, CounterMetricFamily(f"nvgw_tunnel_{name}", text, labels=labels))
        for name, text in TUNNEL_TOTALS
    ]
    cookies = CounterMetricFamily(
        "nvgw_tunnel_port_cookie_replies_sent",
        "Cookie replies a tunnel listen port sent to handshakes without a cookie, under load",
        labels=["listen_port"],
    )
    refused = CounterMetricFamily(
        "nvgw_tunnel_port_refused",
        "Datagrams a tunnel listen port refused and packets it dropped, by WireGuard reason",
        labels=["listen_port", "reason"],
    )
    tunnels = tables.to_tunnel.values() if isinstance(tables, GatewayTables) else ()
    ports = {}
    for action in tunnels:
        tunnel = action.tunnel
        values = [tunnel.name, tunnel.domain.rdid]
        latest.add_metric(values, tunnel.latest_handshake())
        for name, family in per_tunnel:
            family.add_metric(values, 0 if tunnel.peer is None else getattr(tunnel.peer, name))
        if tunnel.port is not None:
            ports[tunnel.port.listen_port] = tunnel.port.device
    for listen_port, device in sorted(ports.items()):
        cookies.add_metric([str(listen_port)], device.cookie_replies_sent)
        counts = list(device.refused)
        for reason in Reason:
            refused.add_metric([str(listen_port), reason.label], counts[reason])
    yield latest
    for _, family in per_tunnel:
        yield family
    yield from (cookies, refused)


def _by_result(name: str, help_text: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=["result"])
    for result, count in sorted(counts.items()):
        family.add_metric([result], count)
    return family
