"""Bring a lab up and down: namespaces, the provider bridge, the nodes' daemons, VMs,
the corp networks behind a gateway's TAPs (each with its server), and the hosts that
are not ours (Open vSwitch, when it is installed: ``ovs_peer.py``).

Every side effect is written into the lab's state file before it happens
(``state.py``), so ``down`` can always undo exactly what ``up`` did, even after a
crash (the processes are started by ``launch.py``, which records each as it
starts). Nothing is created in the root namespace. The lab's daemons share one policy
store, a SQLite database beside the state file (``/run/nvgw/lab-PREFIX.db``, seeded
from the scenario's config): a change one daemon's API takes is in force on the
others within a fraction of a second, with no server and no signal. With ``store=
"etcd"`` the store is a real etcd in the provider namespace instead (``etcd.py``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from gateway.control import ApiClient, load_config, open_backend
from gateway.dataplane import PORT_MTU
from gateway.lab import etcd, netns, onprem
from gateway.lab.corp_server import PORT
from gateway.lab.internet import link_far, servers
from gateway.lab.launch import DAEMON_READY_TIMEOUT_S, Launcher
from gateway.lab.ovs_peer import OvsHost, missing_tools
from gateway.lab.plan import (
    CorpPlan,
    InternetPlan,
    LabError,
    LabPlan,
    PeerPlan,
    VmPlan,
    plan_lab,
)
from gateway.lab.probe import scrape
from gateway.lab.sites import SitePlan
from gateway.lab.state import (
    STATE_DIR,
    LabState,
    RecordedProcess,
    is_same_process,
    remove_files,
    stop_processes,
)
from gateway.policy import Policy, Rule, Snapshot, compile_policy, load_policy

TAP_APPEAR_TIMEOUT_S: Final = 5.0


class Lab:
    """One running lab, known by its prefix; everything it made is in its state file."""

    def __init__(self, prefix: str, state_dir: Path = STATE_DIR, store: str = "sqlite") -> None:
        """``store``: sqlite or etcd, for ``up`` (a running lab's is in its state)."""
        self.prefix = prefix
        self.state_dir = state_dir
        self.store_path = state_dir / f"lab-{prefix}.db"
        self.store = etcd.STORE if store == "etcd" else f"sqlite:{self.store_path}"
        self._launch = Launcher(prefix, state_dir)

    # ---------------------------------------------------------------- up

    def up(self, config: Path, scenario: str, backend: str = "asyncio") -> LabPlan:
        if LabState.load(self.prefix, self.state_dir) is not None:
            raise LabError(
                f"a lab with prefix {self.prefix!r} is already up: "
                f"nvgw lab down --prefix {self.prefix}"
            )
        policy = load_config(config)  # refuse a bad config before creating anything
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._remove_store()  # a lab that is not up owns no policy: start from the config
        state = LabState(self.prefix, scenario, self.store)
        state.save(self.state_dir)
        try:
            plan = _buildable(policy, self.prefix)
            if plan.sites:  # the tunnels' keys are the lab's: generated, then written in
                config = self._keyed(config, plan, state)
                policy = load_config(config)
            if self.store != etcd.STORE:
                seeding = open_backend(self.store, lambda seeded: seeded)
                try:
                    seeding.read((policy, str(config)))
                finally:
                    seeding.close()
            self._build(plan, state)
            if self.store == etcd.STORE:
                self._start_etcd(plan, state, config)
            for host in plan.hosts:
                self._launch.daemon(host, state, backend)
                for vm in plan.vms:
                    if vm.node == host.node:
                        self.attach_vm(vm)
                for corp in plan.corps:
                    if corp.node == host.node:
                        self._attach_corp(corp, state)
                for internet in plan.internets:
                    if internet.node == host.node:
                        self._attach_internet(internet, state)
            for peer in plan.peers:
                self._start_peer(peer, state)
            for site in plan.sites:
                self._start_site(site, state)
        except BaseException:
            self.down()
            raise
        return plan

    def _build(self, plan: LabPlan, state: LabState) -> None:
        for name in plan.namespaces:
            if netns.exists(name):
                raise LabError(f"namespace {name} exists already: not ours, so left alone")
        for site in plan.sites:  # wireguard-go's control sockets are the machine's
            if onprem.uapi_socket(site).exists():
                raise LabError(
                    f"{onprem.uapi_socket(site)} exists already: a wireguard-go not ours, "
                    "so left alone (another lab's with a prefix that begins as this one?)"
                )
        _create(state, self.state_dir, plan.provider_namespace)
        for host in plan.hosts:
            _create(state, self.state_dir, host.namespace)
            netns.add_veth(
                host.namespace, host.interface, plan.provider_namespace, host.bridge_port
            )
            for address in host.addresses:
                pa, length = address.split("/")
                netns.add_address(host.namespace, host.interface, pa, int(length))
        for vm in plan.vms:
            _create(state, self.state_dir, vm.namespace, ipv6=False)
        for corp in plan.corps:
            _create(state, self.state_dir, corp.namespace, ipv6=False)
        for internet in plan.internets:
            _create(state, self.state_dir, internet.namespace, ipv6=False)
            _create(state, self.state_dir, internet.far_namespace, ipv6=False)
            link_far(internet)
        for peer in plan.peers:
            _create(state, self.state_dir, peer.namespace, ipv6=False)
            netns.add_veth(
                peer.namespace, peer.interface, plan.provider_namespace, peer.bridge_port
            )
            for vm in peer.vms:
                _create(state, self.state_dir, vm.vm.namespace, ipv6=False)
                netns.add_veth(vm.vm.namespace, vm.vm.name, peer.namespace, vm.vm.name)
                netns.set_link(vm.vm.namespace, vm.vm.name, mac=vm.mac, mtu=PORT_MTU)
                netns.checksum_offload_off(vm.vm.namespace, vm.vm.name)
                self.attach_vm(vm.vm, moved=False)
        ports = [h.bridge_port for h in plan.hosts] + [p.bridge_port for p in plan.peers]
        netns.add_bridge(plan.provider_namespace, plan.bridge, ports)
        if plan.sites:
            _create(state, self.state_dir, plan.wan_namespace)
            for site in plan.sites:
                _create(state, self.state_dir, site.namespace, ipv6=False)
            onprem.link_wan(plan)

    def _start_etcd(self, plan: LabPlan, state: LabState, config: Path) -> None:
        """etcd in the provider namespace, recorded as it starts, seeded from ``config``."""
        etcd.address_bridge(plan.provider_namespace, plan.bridge)
        data = etcd.data_dir(self.state_dir, self.prefix)
        shutil.rmtree(data, ignore_errors=True)  # a crashed lab's, never brought down
        log = self.state_dir / f"lab-{self.prefix}-etcd.log"
        command = etcd.command(plan.provider_namespace, data)
        process = self._launch.process(state, command, f"etcd, data in {data}", log=log)
        etcd.wait_ready(plan.provider_namespace, process, log)
        etcd.seed(plan.provider_namespace, config)

    def _record_file(self, state: LabState, path: Path) -> None:
        state.files.append(str(path))
        state.save(self.state_dir)  # recorded first: a crash right after still removes it

    def _keyed(self, config: Path, plan: LabPlan, state: LabState) -> Path:
        """The sites' keys generated into the state directory (``onprem.py``), and a
        copy of ``config`` with them written in, to seed the lab's store from."""
        keys = onprem.keys_dir(self.state_dir, self.prefix)
        self._record_file(state, keys)
        keys.mkdir(mode=0o700)
        onprem.write_keys(plan, keys, lambda path: self._record_file(state, path))
        copy = self.state_dir / f"lab-{self.prefix}-config.yaml"
        self._record_file(state, copy)
        onprem.keyed_config(config, plan, keys, copy)
        return copy

    def _start_site(self, site: SitePlan, state: LabState) -> None:
        """An on-prem site: wireguard-go (its control socket recorded before it is
        made), configured with the lab's keys, then the site's services."""
        self._record_file(state, onprem.uapi_socket(site))
        log = self.state_dir / f"lab-{self.prefix}-{site.name}-wireguard-go.log"
        env = {**os.environ, "LOG_LEVEL": "verbose"}
        command = onprem.wireguard_command(site)
        process = self._launch.process(
            state, command, f"wireguard-go of {site.namespace}", log=log, env=env
        )
        onprem.wait_for_socket(site, process)
        onprem.configure(site, onprem.keys_dir(self.state_dir, self.prefix))
        self._launch.server(state, site.namespace, "corp_server", onprem.server_arguments(site))

    def attach_vm(self, vm: VmPlan, *, moved: bool = True) -> None:
        """Move the VM's TAP (made by its host's daemon) into the VM and address it;
        ``moved=False``: the VM's link is in place already (a peer's veth)."""
        if moved:
            host_ns = f"{self.prefix}-{vm.node}"
            _wait_for_link(host_ns, vm.name, TAP_APPEAR_TIMEOUT_S)
            netns.move_link(host_ns, vm.name, vm.namespace)
        netns.add_address(vm.namespace, vm.name, str(vm.address.ip), vm.address.network.prefixlen)
        if vm.gateway is not None:
            netns.add_default_route(vm.namespace, str(vm.gateway))

    def _attach_corp(self, corp: CorpPlan, state: LabState) -> None:
        """Move the gateway's TAP (its kernel end) into the corp network, address it,
        route the tenant's subnets via the gateway, and start the corp's server."""
        node_ns = f"{self.prefix}-{corp.node}"
        _wait_for_link(node_ns, corp.tap, TAP_APPEAR_TIMEOUT_S)
        netns.move_link(node_ns, corp.tap, corp.namespace)
        netns.add_address(
            corp.namespace, corp.tap, str(corp.address.ip), corp.address.network.prefixlen
        )
        for route in corp.routes:
            netns.add_route(corp.namespace, str(route), str(corp.via))
        address = corp.address.ip
        arguments = [corp.name, corp.namespace, f"tcp:{address}:{PORT}", f"udp:{address}:{PORT}"]
        self._launch.server(state, corp.namespace, "corp_server", arguments)

    def _attach_internet(self, internet: InternetPlan, state: LabState) -> None:
        """Move the gateway's external TAP (its kernel end) into the internet, address
        it as the NAT's next hop, and start the servers there and in the far network."""
        node_ns = f"{self.prefix}-{internet.node}"
        _wait_for_link(node_ns, internet.tap, TAP_APPEAR_TIMEOUT_S)
        netns.move_link(node_ns, internet.tap, internet.namespace)
        netns.add_address(
            internet.namespace,
            internet.tap,
            str(internet.address.ip),
            internet.address.network.prefixlen,
        )
        for namespace, address in servers(internet):
            arguments = [address, str(self.seen_log(namespace)), namespace]
            self._launch.server(state, namespace, "internet_server", arguments)

    def seen_log(self, namespace: str) -> Path:
        """What the internet's servers in ``namespace`` saw: ``tcp|udp ADDRESS:PORT``
        per connection or datagram (``internet_server.py``)."""
        return self.state_dir / f"lab-{namespace}-seen.log"

    def _start_peer(self, peer: PeerPlan, state: LabState) -> None:
        """Open vSwitch for a host that is not ours: its two daemons recorded as they
        start, then its bridges and flows, then its PA on ``br-phy``."""
        ovs = OvsHost(peer, self.state_dir / f"lab-{self.prefix}-{peer.name}.ovs")
        ovs.create_database()
        self._launch.process(
            state, ovs.server_command(), f"ovsdb-server of {peer.namespace}", env=ovs.env
        )
        ovs.wait_for_database()
        self._launch.process(
            state, ovs.switch_command(), f"ovs-vswitchd of {peer.namespace}", env=ovs.env
        )
        ovs.configure()
        netns.add_address(
            peer.namespace, "br-phy", str(peer.address.ip), peer.address.network.prefixlen
        )

    # ---------------------------------------------------------------- a running lab

    def state(self) -> LabState:
        state = LabState.load(self.prefix, self.state_dir)
        if state is None:
            raise LabError(f"no lab with prefix {self.prefix!r} is up (nvgw lab up)")
        return state

    def policy(self) -> Policy:
        """The policy the lab's store holds now; on etcd, which this namespace cannot
        reach, the policy a running daemon runs (they follow the store)."""
        if self.state().config == etcd.STORE:
            return self._running_policy()
        backend = open_backend(self.store, lambda policy: policy)
        try:
            return backend.read().policy
        finally:
            backend.close()

    def plan(self) -> tuple[Snapshot, LabPlan]:
        policy = self.policy()
        return compile_policy(policy), _buildable(policy, self.prefix)

    def _running_policy(self) -> Policy:
        for process in self.state().processes:
            if process.node and is_same_process(process):
                with self.api(process.node) as api:
                    return load_policy(api.request("GET", "/v1/policy")["policy"])
        raise LabError(f"no daemon of lab {self.prefix!r} runs to read the policy from")

    def _remove_store(self) -> None:
        for suffix in ("", "-wal", "-shm"):  # the database and SQLite's files beside it
            self.store_path.with_name(self.store_path.name + suffix).unlink(missing_ok=True)

    def api_socket(self, node: str) -> Path:
        return self._launch.api_socket(node)

    def api(self, node: str) -> ApiClient:
        return ApiClient(self.api_socket(node))

    def daemon(self, node: str) -> RecordedProcess:
        for process in self.state().processes:
            if process.node == node:
                return process
        raise LabError(f"no daemon runs node {node!r} in lab {self.prefix!r}")

    def metrics(self, node: str) -> dict:
        return scrape(f"{self.prefix}-{node}", self.daemon(node).metrics)

    def migrate(self, vm_name: str, to_node: str) -> int:
        """Live-migrate a VM to another host, as HNV does, through the control API:
        the new host's daemon moves the VM's records to its PA and takes its port in
        one change (creating the TAP before it answers); the other daemons, which
        share the lab's store, follow it. The VM's interface is then the new host's
        TAP, with the same MAC. Returns the new policy revision."""
        policy = self.policy()
        plan = plan_lab(policy, self.prefix)
        try:
            vm = plan.vm(vm_name)
        except KeyError:
            names = ", ".join(v.name for v in plan.vms)
            raise LabError(f"no VM named {vm_name!r} (VMs: {names})") from None
        nodes = [node.name for node in policy.nodes]
        if to_node not in nodes:
            raise LabError(f"no node named {to_node!r} (nodes: {', '.join(nodes)})")
        if to_node == vm.node:
            raise LabError(f"{vm_name} runs on {to_node} already")
        if any(r.vm == vm_name and r.rule is Rule.IP_REWRITE for r in policy.lookup_records):
            raise LabError("an IP-Rewrite VM keeps its own PA: moving it is not supported yet")
        new_pa = plan.host(to_node).addresses[0].split("/")[0]
        with self.api(to_node) as api:
            answer = api.request("POST", "/v1/migrate", json={"vm": vm_name, "pa": new_pa})
        revision = int(answer["revision"])
        others = [
            p for p in self.state().processes if p.node and p.node != to_node and is_same_process(p)
        ]
        for process in others:
            self._wait_for_revision(process.node, revision)
        _wait_for_link(vm.namespace, vm.name, TAP_APPEAR_TIMEOUT_S, gone=True)
        self.attach_vm(plan_lab(self.policy(), self.prefix).vm(vm_name))
        return revision

    def restart(self, node: str, backend: str) -> None:
        """Stop the node's daemon and start it again, recorded as at ``up`` (a node
        whose TAPs the lab moved into VMs or networks cannot be: a new daemon makes
        new TAPs, in its own namespace)."""
        _, plan = self.plan()
        moved = [*plan.vms, *plan.corps, *plan.internets]
        if any(owned.node == node for owned in moved):
            raise LabError(f"{node} has TAPs the lab moved: restarting it is not supported")
        state = self.state()
        daemon = self.daemon(node)
        stop_processes([daemon])
        state.processes = [p for p in state.processes if p.node != node]
        state.save(self.state_dir)
        self._launch.daemon(plan.host(node), state, backend)

    def _wait_for_revision(self, node: str, revision: int) -> None:
        """Until the node's daemon runs ``revision`` (it follows the lab's store)."""
        deadline = time.monotonic() + DAEMON_READY_TIMEOUT_S
        with self.api(node) as api:
            while api.request("GET", "/v1/health")["revision"] < revision:
                if time.monotonic() > deadline:
                    raise LabError(f"{node} did not apply revision {revision}: see its log")
                time.sleep(0.005)

    # ---------------------------------------------------------------- down

    def down(self) -> LabState | None:
        """Remove what the state file lists; a lab that is not up is not an error."""
        state = LabState.load(self.prefix, self.state_dir)
        if state is None:
            return None
        stop_processes(state.processes)
        for name in reversed(state.namespaces):
            netns.remove(name)
        remove_files(state.files)
        state.remove_file(self.state_dir)
        self._remove_store()
        for leftover in [
            *self.state_dir.glob(f"lab-{self.prefix}-*.log"),
            *self.state_dir.glob(f"lab-{self.prefix}-*.sock"),
        ]:
            leftover.unlink()
        for run_dir in self.state_dir.glob(f"lab-{self.prefix}-*.ovs"):
            shutil.rmtree(run_dir)
        shutil.rmtree(etcd.data_dir(self.state_dir, self.prefix), ignore_errors=True)
        return state


def _buildable(policy: Policy, prefix: str) -> LabPlan:
    """The lab's plan, without the hosts that are not ours where Open vSwitch, which
    plays them, is not installed (the rest of the lab does not need them)."""
    plan = plan_lab(policy, prefix)
    return replace(plan, peers=()) if missing_tools() else plan


def _create(state: LabState, state_dir: Path, name: str, *, ipv6: bool = True) -> None:
    state.namespaces.append(name)
    state.save(state_dir)  # recorded first: a crash right after still gets cleaned up
    netns.create(name, ipv6=ipv6)


def _wait_for_link(namespace: str, name: str, timeout_s: float, *, gone: bool = False) -> None:
    """Poll netlink until the link exists (or is gone): a daemon creates and closes
    TAPs on its own schedule, and only the kernel knows when it has."""
    deadline = time.monotonic() + timeout_s
    while netns.has_link(namespace, name) == gone:
        if time.monotonic() > deadline:
            what = "disappear from" if gone else "appear in"
            raise LabError(f"{name} did not {what} {namespace} within {timeout_s} s")
        time.sleep(0.005)
