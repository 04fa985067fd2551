"""Packets per second through an nvgw gateway, both paths, next to a bare Python loop
for each and to Open vSwitch userspace, in one run.

    python bench/gateway_forwarding.py [--reps 5] [--dur 5] [--warmup 1.5] [--quick]
                                       [--only in,out] [--kinds bare,ovs,asyncio,trio]
                                       [--rev REV [--rev REV ...]] [--out FILE]
    python bench/gateway_forwarding.py --cleanup   # remove what a killed run left behind

Needs root, 2 CPUs or more, /dev/net/tun, veth and nftables' netdev ingress hook; it
installs what it lacks (netsniff-ng, openvswitch-switch, nftables) as
``host_forwarding.py`` does. Run by ``make bench`` (2 repetitions of 3 s windows) and
``make bench-full`` (the defaults); never by the tests. The parts are those of the
host benchmark (``bench/hostfwd/``: namespaces, counters, traffic, the daemon as a
receiver), with the gateway's own in ``hostfwd/gateway_*.py``.

Topology (three namespaces of its own, removed at the end)::

    [nvb-snd] nvbs0 198.18.0.1 ==veth== nvbh0 198.18.0.2 [nvb-host] receiver ~~ nvbgw0 [nvb-corp]
     trafgen (in), CPU 0                         CPU 1        the TAP: 172.16.0.2, trafgen (out)

* ``in``, NVGRE -> gateway -> TAP: eight NVGRE flows (VSID 5010, FlowID 1..8) from the
  remote VM 10.10.10.1 (its record's PA is the sender's) to the corp server
  172.16.0.2, inner destination MAC the gateway's record's; the gateway routes them
  into its TAP (TTL, MACs rewritten) and they are counted as the TAP's rx in the corp
  namespace. Next to it: the bare loop A1 (``bare_decap.py``: raw GRE socket, header
  check, one TAP write per frame) and Open vSwitch's userspace datapath decapsulating
  into a TAP (``hostfwd/gateway_ovs.py``, anchor B), both fed the same frames with the
  corp end's MAC inside (what the gateway writes).
* ``out``, TAP -> gateway -> NVGRE: eight UDP flows from the corp server to the VM,
  sent by trafgen on the TAP's kernel end; the gateway encapsulates them to the VM's
  PA; counted as the sender veth's rx (the host namespace has a static neighbour for
  198.18.0.1 with a MAC the veth does not have: dropped on arrival). Next to it: the
  bare loop ``bare_encap.py`` (one TAP read and one raw GRE send per frame).

The corp namespace drops every IPv4 frame at the TAP's ingress (nftables), so the
receiving end costs every receiver the same. Method as the host benchmark's: sender
on CPU 0, receiver on CPU 1, 1.5 s of traffic then a window between two readings of
the kernel's counters; per repetition and size every receiver of each path in turn,
so that drift hits all alike; each ratio (daemon / bare loop, daemon / OVS) is taken
within its repetition, then the median. ``recv-bound`` is yes when the receiver
limited the rate in every repetition (``in``: it lost more than 2 % of what reached
the host namespace, or the sender waited on it; ``out``: the TAP's queue to it
overflowed by more than 2 %, or the sender waited). Before each window 64 frames must
arrive exactly, and the daemon count none dropped. A measurement during which another
job took more than 10 % of a core is done again (up to 3 times).

Two commits compared (``--rev OLD --rev NEW``; ``worktree`` is the work tree): in each
repetition the anchors run once, then each commit's daemons, the commits' order
turning by one each repetition; each daemon's ratio to its path's bare loop is taken
within the repetition as always, and the comparison (``hostfwd/report.py``'s
``compare``, as ``host_forwarding.py`` has it) says, per path, daemon and size, how
the median ratio moved and whether it dropped by more than the larger of 5 % and the
reference's own spread. With one source, keys and output are as they always were.

Writes ``bench/results-gateway.json`` and prints a table; exit status 2 when a check
failed or a measurement could not run, 1 when a later commit is slower.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway, for the config

from hostfwd.common import (
    BENCH,
    NS_CORP,
    PACKAGES,
    SIZES,
    log,
    run,
)
from hostfwd.gateway_paths import PATHS, measure_path
from hostfwd.gateway_report import DAEMONS, finish, key_of
from hostfwd.gateway_setup import (
    CORP_MAC,
    GW_RECORD,
    gateway_config,
    inbound_config,
    outbound_config,
    sink_provider_side,
)
from hostfwd.namespaces import build_topology, make_namespace
from hostfwd.runner import begin, guarded, measure_kept, window_arguments
from hostfwd.sources import Source, sources_or_exit, versions

GATEWAY_PACKAGES = {**PACKAGES, "ovs-vswitchd": "openvswitch-switch", "nft": "nftables"}
LABELS = {
    ("in", "bare"): "bare loop A1: raw GRE recv_into, header check, one TAP write",
    ("in", "ovs"): "Open vSwitch userspace (netdev), AF_PACKET veth port, GRE pop to a TAP",
    ("out", "bare"): "bare loop: one TAP read, one raw GRE send",
}


def arguments() -> argparse.Namespace:
    ap = window_arguments(__doc__)
    ap.add_argument("--only", default="in,out", help="paths: in,out")
    ap.add_argument("--kinds", default="bare,ovs,asyncio,trio", help="receivers")
    ap.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="for nvgw run")
    ap.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="REV",
        help="run the daemon from this commit's gateway/ (git archive); repeat to compare "
        "revisions interleaved, the first being the reference ('worktree': the work tree)",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "results-gateway.json")
    ap.add_argument("--cleanup", action="store_true", help="remove a killed run's leftovers")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.dur = 1, 2.0
    kinds = a.kinds.split(",")
    a.plan = {
        path: [k for k in PATHS[path] if k in kinds] for path in PATHS if path in a.only.split(",")
    }
    return a


def what(path: str, kind: str, size: int) -> str:
    label = LABELS.get((path, kind), f"nvgw gateway daemon, --backend {kind}")
    return f"{path}: {label}, {size} B inner"


def measure_all(a: argparse.Namespace, sources: list[Source], results: dict[str, Any]) -> None:
    """Every repetition, per size, each path's receivers in turn: the anchors, then
    each source's daemons (the sources' order turning by one each repetition, so that
    none always runs right after the anchors)."""
    config = gateway_config()
    # the daemon's frames are to its record's MAC; the anchors only decapsulate, so
    # theirs carry the corp end's MAC, as the gateway writes them
    inbound = {
        (size, routed): inbound_config(size, GW_RECORD[1] if routed else CORP_MAC)
        for size in SIZES
        for routed in (False, True)
    }
    outbound = {size: outbound_config(size) for size in SIZES}
    log(f"config {config} valid; building namespaces")
    build_topology()
    make_namespace(NS_CORP)
    sink_provider_side()
    compared = len(sources) > 1
    kinds_all = [kind for kinds in a.plan.values() for kind in kinds]
    each_rep = sum(len(sources) if kind in DAEMONS else 1 for kind in kinds_all)
    total = a.reps * len(SIZES) * each_rep
    done = 0
    for rep in range(1, a.reps + 1):
        turn = (rep - 1) % len(sources)
        order = sources[turn:] + sources[:turn]
        for size in SIZES:
            for path, kinds in a.plan.items():
                # (kind, its source, its label in the keys): the anchors run once, with
                # the first source's digest
                plan = [(k, sources[0], None) for k in kinds if k not in DAEMONS]
                for source in order:
                    label = source.label if compared else None
                    plan += [(k, source, label) for k in kinds if k in DAEMONS]
                for kind, source, label in plan:
                    done += 1
                    key = key_of(path, kind, size, label)
                    described = what(path, kind, size)
                    if label is not None:
                        described += f", gateway/ of {label}"
                    e = results.setdefault(key, {"what": described, "runs": []})
                    routed = kind in DAEMONS
                    cfg = outbound[size] if path == "out" else inbound[size, routed]
                    tag = f"[{done}/{total}] rep {rep} {key}"
                    args = (path, kind, size, cfg, config, source, a.daemon_arg, a.dur, a.warmup)
                    measure_kept(e, tag, rep, lambda args=args: measure_path(*args))


def main() -> int:
    a = arguments()
    if not begin(a.cleanup, GATEWAY_PACKAGES):
        return 0
    results: dict[str, Any] = {}
    problems: list[str] = []
    t_start = time.time()
    sources = sources_or_exit(a.rev, "gateway_forwarding")
    a.labels = [source.label for source in sources]
    machine = versions(sources)
    machine["ovs"] = run(["ovs-vswitchd", "--version"], check=False).split("\n")[0]
    machine["nft"] = run(["nft", "--version"], check=False).strip()
    guarded(lambda: measure_all(a, sources, results), problems)
    return finish(a, machine, results, problems, t_start)


if __name__ == "__main__":
    sys.exit(main())
