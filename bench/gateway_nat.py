"""Packets per second through an nvgw gateway's NAT, tenant -> internet and back,
next to the Linux kernel's nftables masquerade between the same namespaces, in one
run; and the NAT connection table's memory per session.

    python bench/gateway_nat.py [--reps 5] [--dur 5] [--warmup 1.5] [--quick]
                                [--only out,back] [--kinds kernel,bare,asyncio,trio]
                                [--sessions 10000,100000] [--rev REV] [--out FILE]
    python bench/gateway_nat.py --cleanup   # remove what a killed run left behind

Needs root, 2 CPUs or more, /dev/net/tun, veth and nftables (netdev ingress, ip nat);
installs what it lacks as ``gateway_forwarding.py`` does. Run by ``make bench`` (2
repetitions of 3 s windows) and ``make bench-full`` (the defaults); never by the
tests. Its parts are the gateway benchmark's (``bench/hostfwd/``), with its own in
``hostfwd/nat_setup.py`` (config, frames, the kernel's router, memory),
``nat_measure.py`` (one measurement, its checks, the table) and ``nat_capture.py``
(what a check reads off the wire).

Topology (three namespaces of its own, removed at the end)::

    [nvb-snd] nvbs0 198.18.0.1 ==veth== nvbh0 198.18.0.2 [nvb-host] ~~ nvbext0 [nvb-inet]
     trafgen, CPU 0                          gateway, CPU 1     203.0.113.1, IPv4 dropped
                                       or kernel NAT ==veth nvbk0/nvbk1== (same)

``out`` (tenant -> internet):

* ``asyncio``, ``trio``: eight NVGRE flows (VSID 5010, source ports 40001..40008) from
  the tenant VM 10.10.10.1 to 198.51.100.2, to the gateway's record's MAC; the gateway
  (``nvgw run --node gw``, pinned to CPU 1) routes them to its NAT, translates them to
  203.0.113.10 and writes them into its external TAP, whose kernel end in
  ``nvb-inet`` is the internet router; counted as that TAP's rx.
* ``kernel`` (anchor, bench-anchors part C's method): the same inner frames as plain
  IPv4 to the host veth; the host namespace forwards them and masquerades them
  (nftables, conntrack) out of a veth into ``nvb-inet``; RPS steers the host veth's
  receive work to CPU 1, so the kernel's forwarding and NAT is CPU 1's softirq (its
  ``recv cores``); counted as that veth's rx. trafgen sends it on its slow path
  (one blocking ``sendto`` per frame: its ring fails when frames queue on another
  CPU), which may limit it: then its ``recv-bound`` says NO and the ratio to it is
  an upper bound.
* ``bare`` (the ceiling): the way's bare Python loop on the NAT's own endpoints,
  pinned to CPU 1 as the daemon is, translating nothing: ``bare_decap.py`` (the
  gateway's PA -> the external TAP: A1) out, ``bare_encap.py`` (the external TAP ->
  raw GRE to the VM's PA) back. What the kernel delivers next to it is what the
  target asks of Python with the NAT's work on top.

``back`` (internet -> tenant): the NAT started afresh, the way out's check opens the
eight sessions (their external ports read off the wire), then the server's replies
to them are sent from the internet namespace into the router's link (the daemon's
external TAP, or the kernel's veth, RPS on it too) and counted as what reaches the
sender veth: NVGRE to the VM's PA from the daemon, plain IPv4 to the VM from the
kernel (both to a MAC the sender veth does not have: dropped on arrival). The kernel
is the anchor here too, though it does not encapsulate: the ratio says what the way
back costs next to the kernel's un-NAT and forwarding, not a like-for-like datapath.

Method as the gateway benchmark's: per repetition, size and path each kind in turn,
the ratios nvgw / kernel, bare / kernel and nvgw / bare taken within their
repetition, then the median (min..max); target >= 0.45x of the kernel. Before each
window the eight sessions are opened (a few frames) and 64 frames must arrive
exactly, translated (the daemon counting no drop; from a bare loop, as sent, and the
way back to the tenant's own ports). ``recv-bound``: the receiver limited the rate in
every repetition. A measurement during which another job took more than 10 % of a
core is done again (up to 3 times).

Memory: ``--sessions`` UDP sessions, each from its own tenant endpoint (a mapping and
an external port each), opened in an in-process table (tracemalloc): bytes per
session.

Writes ``bench/results-gateway-nat.json`` and prints a table; exit status 2 when a
check failed or a measurement could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway, for the config

from hostfwd.common import BENCH, NS_INET, PACKAGES, SIZES, log, run
from hostfwd.gateway_setup import sink_provider_side
from hostfwd.namespaces import build_topology, make_namespace
from hostfwd.nat_measure import (
    BARE,
    KINDS,
    PATHS,
    below,
    key_of,
    measure_kind,
    print_memory,
    print_table,
    ratios,
)
from hostfwd.nat_setup import MEMORY_SESSIONS, memory_per_session, nat_config, traffic_configs
from hostfwd.report import run_header, summarize_entries, write_json
from hostfwd.runner import begin, guarded, measure_kept, window_arguments
from hostfwd.sources import Source, source_or_exit, versions

NAT_PACKAGES = {**PACKAGES, "nft": "nftables"}
TARGET = 0.45  # nvgw / kernel NAT (decisions.md, "Performance")


def arguments() -> argparse.Namespace:
    ap = window_arguments(__doc__)
    ap.add_argument("--only", default=",".join(PATHS), help="paths: out,back")
    ap.add_argument("--kinds", default=",".join(KINDS), help="kernel,bare,asyncio,trio")
    ap.add_argument("--sessions", default=",".join(map(str, MEMORY_SESSIONS)), help="memory")
    ap.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="for nvgw run")
    ap.add_argument("--rev", metavar="REV", help="run the daemon from this commit's gateway/")
    ap.add_argument("--out", type=Path, default=BENCH / "results-gateway-nat.json")
    ap.add_argument("--cleanup", action="store_true", help="remove a killed run's leftovers")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.dur = 1, 2.0
    a.plan = [k for k in KINDS if k in a.kinds.split(",")]
    a.paths = [p for p in PATHS if p in a.only.split(",")]
    return a


def measure_all(a: argparse.Namespace, source: Source, results: dict[str, Any]) -> None:
    """Every repetition, per size, each kind in turn."""
    config = nat_config()
    frames = {size: traffic_configs(size) for size in SIZES}
    log(f"config {config} valid; building namespaces")
    build_topology()
    make_namespace(NS_INET)
    sink_provider_side()
    total, done = a.reps * len(SIZES) * len(a.plan) * len(a.paths), 0
    for rep in range(1, a.reps + 1):
        for size in SIZES:
            for path in a.paths:
                for kind in a.plan:
                    done += 1
                    key = key_of(path, kind, size)
                    e = results.setdefault(key, {"what": what(path, kind, size), "runs": []})
                    cfg = frames[size][kind]
                    args = (path, kind, size, cfg, config, source, a.daemon_arg, a.dur, a.warmup)
                    tag = f"[{done}/{total}] rep {rep} {key}"
                    measure_kept(e, tag, rep, lambda x=args: measure_kind(*x))


def what(path: str, kind: str, size: int) -> str:
    way = "tenant -> internet" if path == "out" else "internet -> tenant (replies)"
    if kind == "kernel":
        return f"{way}: Linux forwarding + nftables masquerade, {size} B"
    if kind == "bare":
        return f"{way}: bare Python loop ({BARE[path]}), no NAT: the ceiling, {size} B inner"
    return f"{way}: nvgw gateway NAT, --backend {kind}, {size} B inner"


def main() -> int:
    a = arguments()
    if not begin(a.cleanup, NAT_PACKAGES):
        return 0
    results: dict[str, Any] = {}
    problems: list[str] = []
    t_start = time.time()
    source = source_or_exit(a.rev, "gateway_nat")
    machine = versions([source])
    machine["nft"] = run(["nft", "--version"], check=False).strip()
    guarded(lambda: measure_all(a, source, results), problems)
    memory = []
    for n in (int(x) for x in a.sessions.split(",") if x):
        log(f"memory: {n} sessions")
        memory.append(memory_per_session(n))
    summarize_entries(results, problems)
    rat = ratios(results)
    under = below(rat, TARGET)
    out = run_header("gateway_nat", a, machine, t_start, "gw")
    out["params"]["kinds"] = a.plan
    out["params"]["paths"] = a.paths
    out["params"]["target_ratio"] = TARGET
    out.update(ratios=rat, below_target=under, memory=memory, problems=problems, results=results)
    write_json(a.out, out)
    print()
    print_table(results, rat)
    print_memory(memory)
    if under:
        print(f"BELOW THE TARGET ({TARGET}x the kernel's NAT): " + ", ".join(under))
    print(f"\nresults: {a.out}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
