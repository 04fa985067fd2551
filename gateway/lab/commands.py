"""``nvgw lab``: build the seed's labs in network namespaces, look at them, tear down.

Everything a person would do by hand (bring up hosts and VMs, ping across, watch a
live migration) with output meant to be read: a table per step, and an exit status
that says whether the lab behaved as the policy says it must.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.control import ApiError
from gateway.errors import ConfigError
from gateway.lab.corp_probe import PROTOCOLS, corp_connectivity
from gateway.lab.onprem import site_connectivity
from gateway.lab.plan import FAR_ADDRESS, FAR_MTU, LabPlan
from gateway.lab.probe import ROUTED, Cell, PingStream, connectivity
from gateway.lab.sites import WAN_GATEWAY
from gateway.lab.topology import Lab, LabError

# The scenarios' configs are package data (gateway/lab/configs, a link to the
# project's configs/ that a wheel stores as files): found through the installed
# package, so the lab runs from any install and any directory.
CONFIGS = files(__package__) / "configs"
SCENARIOS = ("single-host", "ip-rewrite", "two-hosts", "routing", "gateway", "hybrid")
MAX_MIGRATION_LOSS_S = 1.0  # the bound for a ping running across a migration

lab_app = typer.Typer(
    name="lab", help="The seed's labs in network namespaces.", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)

Prefix = Annotated[str, typer.Option(help="Name prefix of the lab's namespaces.")]
Scenario = Annotated[str, typer.Option(help=f"One of: {', '.join(SCENARIOS)}.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="A config of your own instead.")
]
Backend = Annotated[str, typer.Option(help="The daemons' event loop: asyncio or trio.")]
Store = Annotated[
    str,
    typer.Option(
        help="The daemons' policy store: sqlite (a database beside the lab's state) or "
        "etcd (a real etcd in the provider namespace, 198.18.0.250:2379)."
    ),
]


@contextmanager
def _config(scenario: str, config: Path | None) -> Iterator[Path]:
    """The file to bring up: the caller's, or the scenario's shipped config."""
    if config is not None:
        yield config
        return
    if scenario not in SCENARIOS:
        raise LabError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    with as_file(CONFIGS / f"{scenario}.yaml") as path:
        yield path


def _store(store: str) -> str:
    if store not in ("sqlite", "etcd"):
        raise LabError(f"--store is sqlite or etcd, not {store!r}")
    return store


def _needs_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces: run it as root")


def _fail(error: Exception) -> typer.Exit:
    console.print(f"nvgw lab: {error}", markup=False, style="red")
    return typer.Exit(1)


@lab_app.command()
def up(
    scenario: Scenario = "two-hosts",
    config: ConfigOpt = None,
    backend: Backend = "asyncio",
    prefix: Prefix = "nvgw",
    store: Store = "sqlite",
) -> None:
    """Bring a lab up and leave it running to explore."""
    try:
        _needs_root()
        lab = Lab(prefix, store=_store(store))
        with _config(scenario, config) as path:
            plan = lab.up(path, scenario, backend)
    except (LabError, ConfigError, OSError, ApiError) as error:
        raise _fail(error) from None
    _show_plan(plan)
    console.print("\nEach host's daemon serves its control API on its own socket:")
    for line in daemon_hints(lab, plan):
        console.print(f"  {line}", markup=False)
    first = plan.vms[0]
    others = [vm for vm in plan.vms if vm.vsid == first.vsid and vm is not first]
    if others:
        console.print(f"\nTry: ip netns exec {first.namespace} ping {others[0].address.ip}")
    if plan.corps:
        corp = plan.corps[0].address.ip
        console.print(f"Try: ip netns exec {first.namespace} traceroute -n {corp}")
        for peer in plan.peers:  # a host that is not ours reaches it through the gateway
            console.print(f"Try: ip netns exec {peer.vms[0].vm.namespace} ping {corp}")
    for internet in plan.internets:  # behind the gateway's NAT, and beyond it
        server = internet.address.ip
        console.print(f"Try: ip netns exec {first.namespace} curl -s http://{server}/")
        console.print(f"Try: ip netns exec {first.namespace} tracepath -n {FAR_ADDRESS.ip}")
    for site in plan.sites:  # over the site's tunnel, and back from it
        vm = next(vm for vm in plan.vms if vm.rdid == site.rdid)
        address = site.services[0][2].ip
        console.print(f"Try: ip netns exec {vm.namespace} ping {address}")
        console.print(f"Try: ip netns exec {site.namespace} ping {vm.address.ip}")
        console.print(f"Try: ip netns exec {site.namespace} wg show {site.ifname}")
    console.print(f"Then: nvgw lab status --prefix {prefix};  nvgw lab down --prefix {prefix}")


def daemon_hints(lab: Lab, plan: LabPlan) -> list[str]:
    """How to talk to each host's daemon: ``nvgw``'s verbs use /run/nvgw/nvgw.sock
    unless told otherwise, and no lab daemon listens there (each has its own socket,
    the lab's daemons share one filesystem), so a newcomer's first verb would fail."""
    lines = []
    for host in plan.hosts:
        socket = lab.api_socket(host.node)
        lines.append(
            f"{host.node}: nvgw lookup-record get --api {socket}   "
            f"(or for a shell: export NVGW_API={socket})"
        )
    return lines


@lab_app.command()
def down(prefix: Prefix = "nvgw") -> None:
    """Remove everything a lab created (also after a crash)."""
    try:
        _needs_root()
        state = Lab(prefix).down()
    except (LabError, OSError) as error:
        raise _fail(error) from None
    if state is None:
        console.print(f"no lab with prefix {prefix!r} was up")
    else:
        console.print(
            f"removed {len(state.namespaces)} namespaces and "
            f"{len(state.processes)} processes (daemons, servers) of lab {prefix!r}"
        )


@lab_app.command()
def status(prefix: Prefix = "nvgw") -> None:
    """The lab's VMs and daemons, with each daemon's counters."""
    try:
        lab = Lab(prefix)
        state = lab.state()
        _, plan = lab.plan()
    except (LabError, ConfigError) as error:
        raise _fail(error) from None
    _show_plan(plan)
    table = Table("node", "pid", "metrics", "revision", "drops", title="daemons")
    for process in state.processes:
        if not process.node:
            continue
        try:
            samples = lab.metrics(process.node)
        except Exception as error:  # a dead daemon is what status must show, not crash on
            table.add_row(process.node, str(process.pid), "unreachable", "", str(error)[:60])
            continue
        revision = next(v for (name, _), v in samples.items() if name == "nvgw_policy_revision")
        drops = {
            dict(labels)["reason"]: int(v)
            for (name, labels), v in samples.items()
            if name == "nvgw_drops_total" and v
        }
        table.add_row(
            process.node,
            str(process.pid),
            process.metrics,
            str(int(revision)),
            ", ".join(f"{k}={v}" for k, v in drops.items()) or "none",
        )
    console.print(table)


@lab_app.command()
def migrate(vm: str, host: str, prefix: Prefix = "nvgw") -> None:
    """Live-migrate VM to HOST through HOST's control API: its records take HOST's PA
    and its port moves there in one change."""
    try:
        _needs_root()
        revision = Lab(prefix).migrate(vm, host)
    except (LabError, ConfigError, OSError, ApiError) as error:
        raise _fail(error) from None
    console.print(f"{vm} now runs on {host} (policy revision {revision})")


@lab_app.command("run")
def run_lab(
    scenario: Scenario = "two-hosts",
    config: ConfigOpt = None,
    backend: Backend = "asyncio",
    prefix: Prefix = "nvgw",
    migrate_vm: Annotated[
        str | None, typer.Option("--migrate", help="VM:HOST to live-migrate under a ping.")
    ] = None,
    store: Store = "sqlite",
) -> None:
    """Bring a lab up, show who reaches whom, optionally migrate a VM, tear it down."""
    try:
        _needs_root()
        lab = Lab(prefix, store=_store(store))
        with _config(scenario, config) as path:
            lab.up(path, scenario, backend)
    except (LabError, ConfigError, OSError, ApiError) as error:
        raise _fail(error) from None
    ok = True
    try:
        snapshot, plan = lab.plan()
        _show_plan(plan)
        cells = connectivity(snapshot, plan)
        _show_matrix(plan, cells)
        if plan.corps:
            corp_cells = corp_connectivity(snapshot, plan)
            _show_corp_matrix(plan, corp_cells)
            cells += corp_cells
        if plan.sites:
            site_cells = site_connectivity(plan)
            _show_site_matrix(plan, site_cells)
            cells += site_cells
        ok = all(cell.as_expected for cell in cells)
        if migrate_vm:
            ok = _migrate_under_ping(lab, plan, migrate_vm) and ok
    except (LabError, ConfigError, OSError, ApiError) as error:
        console.print(f"nvgw lab: {error}", markup=False, style="red")
        ok = False
    finally:
        lab.down()
    console.print(f"\nlab {scenario}: " + ("as the policy says" if ok else "NOT as expected"))
    console.print(f"To explore it yourself: nvgw lab up --scenario {scenario}")
    raise typer.Exit(0 if ok else 1)


def _migrate_under_ping(lab: Lab, plan: LabPlan, spec: str) -> bool:
    name, _, host = spec.partition(":")
    vm = plan.vm(name)
    peer = next((v for v in plan.vms if v.vsid == vm.vsid and v is not vm), None)
    if peer is None:
        raise LabError(f"{name} has no peer in its VSID to ping it during the migration")
    stream = PingStream(peer, str(vm.address.ip))
    stream.wait_flowing()
    time.sleep(0.5)  # a steady stream before the move, to see the gap in it
    started = time.monotonic()
    revision = lab.migrate(name, host)
    took = time.monotonic() - started
    time.sleep(1.0)
    loss = stream.stop()
    within = loss.loss_s <= MAX_MIGRATION_LOSS_S
    console.print(
        f"\nlive migration of {name} to {host} through its API (revision {revision}) "
        f"took {took * 1000:.0f} ms; "
        f"a ping from {peer.name} every {loss.interval_s * 1000:.0f} ms lost {loss.lost} of "
        f"{loss.sent} echoes, {loss.loss_s * 1000:.0f} ms without replies "
        + ("(within 1 s)" if within else "(MORE than 1 s)")
    )
    return within


def _show_plan(plan: LabPlan) -> None:
    table = Table("VM", "namespace", "host", "VSID", "CA", "gateway", title=f"lab {plan.prefix}")
    for vm in plan.vms:
        table.add_row(
            vm.name, vm.namespace, vm.node, str(vm.vsid), str(vm.address), str(vm.gateway or "")
        )
    console.print(table)
    if plan.peers:
        title = "VMs of hosts that are not ours (Open vSwitch, PREFIX-ovsN)"
        table = Table("VM", "namespace", "host's PA", "VSID", "CA", "gateway", title=title)
        for peer in plan.peers:
            for vm in peer.vms:
                vm_plan, pa = vm.vm, str(peer.address.ip)
                cells = (vm_plan.name, vm_plan.namespace, pa, str(vm_plan.vsid))
                table.add_row(*cells, str(vm_plan.address), str(vm_plan.gateway))
        console.print(table)
    if plan.corps:
        title = "corp networks"
        table = Table("corp", "namespace", "gateway", "TAP", "address", "routes", title=title)
        for corp in plan.corps:
            routes = ", ".join(f"{route} via {corp.via}" for route in corp.routes)
            table.add_row(corp.name, corp.namespace, corp.node, corp.tap, str(corp.address), routes)
        console.print(table)
    if plan.internets:
        title = f"the internet behind the NAT (HTTP 80, UDP echo 7; far link MTU {FAR_MTU})"
        table = Table("internet", "TAP", "router", "the NAT's", "far network", title=title)
        for internet in plan.internets:
            nat = " ".join(str(address) for address in internet.external)
            far = f"{internet.far_namespace} {FAR_ADDRESS.ip}"
            tap = f"{internet.tap} of {internet.node}"
            table.add_row(internet.namespace, tap, str(internet.address.ip), nat, far)
        console.print(table)
    if plan.sites:
        title = f"on-prem sites on the WAN {plan.wan_namespace} (the gateway's {WAN_GATEWAY})"
        columns = ("site", "namespace", "WAN", "wireguard-go", "services (each says its site)")
        table = Table(*columns, title=title)
        for site in plan.sites:
            services = "\n".join(
                f"{name} {address.ip} {protocol} {port}"
                for name, protocol, address, port in site.services
            )
            wan = f"{site.wan.ip}:{site.listen_port}"
            table.add_row(site.name, site.namespace, wan, site.ifname, services)
        console.print(table)


def _show_matrix(plan: LabPlan, cells: list[Cell]) -> None:
    """Rows ping, columns are pinged. A mark per cell: who answered, and whether the
    policy says so (overlapping tenants answer for each other's addresses)."""
    table = Table("from \\ to", *(vm.name for vm in plan.vms), title="who reaches whom (ping)")
    by_pair = {(c.source, c.target): c for c in cells}
    for source in plan.vms:
        row = []
        for target in plan.vms:
            cell = by_pair.get((source.name, target.name))
            row.append("" if cell is None else _mark(cell))
        table.add_row(source.name, *row)
    console.print(table)
    console.print(
        "ok: reached it; ->X: X answered (X has that CA in the pinging VM's tenant); "
        "-: no answer; (!) not what the data plane does with that ping (nvgw trace)"
    )


def _show_corp_matrix(plan: LabPlan, cells: list[Cell]) -> None:
    """Rows are VMs, columns the corp networks behind the gateway: whose server
    answered the VM (every corp may use the same address; each server says its name)."""
    addresses = ", ".join(sorted({str(corp.address.ip) for corp in plan.corps}))
    title = f"who reaches which corp network ({'+'.join(PROTOCOLS)} to {addresses})"
    table = Table("from \\ to", *(corp.name for corp in plan.corps), title=title)
    by_pair = {(c.source, c.target): c for c in cells}
    for vm in plan.every_vm:  # a host's that is not ours too: it reaches them through nvgw
        table.add_row(vm.name, *(_mark(by_pair[vm.name, corp.name]) for corp in plan.corps))
    console.print(table)
    console.print(
        "ok: that corp's server answered; -: it did not; (!) not what the data plane does"
    )


def _show_site_matrix(plan: LabPlan, cells: list[Cell]) -> None:
    """Rows are VMs, columns the on-prem sites: whose services answered the VM (the
    sites share their addresses; each service says its site's name)."""
    title = "who reaches which on-prem site (each service, over the tunnels)"
    table = Table("from \\ to", *(site.name for site in plan.sites), title=title)
    by_pair = {(c.source, c.target): c for c in cells}
    for vm in plan.vms:
        table.add_row(vm.name, *(_mark(by_pair[vm.name, site.name]) for site in plan.sites))
    console.print(table)
    console.print("ok: every service of that site answered; -: not; (!) not what the policy says")


def _mark(cell: Cell) -> str:
    if cell.answered_by is None:
        text = "-"
    elif cell.answered_by in (cell.target, ROUTED):
        text = "ok"
    else:
        text = f"->{cell.answered_by}"
    return text if cell.as_expected else f"{text} (!)"
