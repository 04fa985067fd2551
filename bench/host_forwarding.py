"""Packets per second through an nvgw host daemon, next to a bare Python loop.

    python bench/host_forwarding.py [--reps 5] [--dur 5] [--warmup 1.5] [--quick]
                                    [--only bare,asyncio,trio] [--profile DIR] [--out FILE]
                                    [--rev REV [--rev REV ...]]
    python bench/host_forwarding.py --cleanup   # remove what a killed run left behind

Needs root, 2 CPUs or more, /dev/net/tun and veth. It installs what it lacks
(netsniff-ng for trafgen, iproute2) with apt-get when run as root outside CI; under
CI=true it only says what is missing. Run by ``make bench``; never by the tests.
This file is the command line and the order of the measurements; the parts are in
``bench/hostfwd/`` (namespaces, kernel counters, traffic, receivers, sources, report).

Topology (two namespaces of its own, removed at the end, also on SIGINT/SIGTERM; the
root namespace is never touched)::

    [nvb-snd] nvbs0 198.18.0.1 ==veth== nvbh0 198.18.0.2 [nvb-host] -> receiver -> TAP nvbvm2
     trafgen, CPU 0 (a "remote host")                     CPU 1      (the local VM's port)

The receiver is one of: the bare loop (``bare_decap.py``: blocking raw IPPROTO_GRE
socket, ``recv_into()``, GRE/VSID check, ``os.write()`` to the TAP: the Python ceiling),
or ``python -m gateway run`` (``--backend asyncio`` or ``trio``) with a generated config
in which node ``bench`` owns PA 198.18.0.2 on nvbh0 and serves one port, the TAP, for
the local VM (VSID 5010, CA 10.10.10.2, MAC 02:aa:00:00:00:02); the remote VM's record
(10.10.10.1, 02:aa:00:00:00:01) has PA 198.18.0.1, so every frame passes anti-spoofing
and is written to the TAP. trafgen sends eight static NVGRE frames (FlowID 1..8, key
5010 << 8 | FlowID, DF, inner Ethernet/IPv4/UDP 10.10.10.1 -> 10.10.10.2) round robin
at full speed, for 64 B and 1400 B inner frames.

Method (the same as ``shared/bench-anchors``): sender pinned to CPU 0, receiver to CPU 1
(taskset); trafgen starts, 1.5 s warm-up, then the kernel's counters are read twice,
5 s apart (``/proc/<pid>/net/dev`` of a process in each namespace). Delivered = the
TAP's ``rx_packets`` (a frame the receiver writes into a TAP is the TAP's rx); offered =
the sender veth's tx_packets + tx_dropped. Receiver CPU is user+system of the whole
process from ``/proc/<pid>/stat``; its RSS (VmRSS) is read once it is ready and again
after the window. Before each window 64 frames must reach the TAP exactly (count and
bytes), and for the daemon its /metrics must count them delivered and nothing dropped;
a receiver that delivers next to nothing fails the run. Each repetition measures, per
size: the sender alone (the host veth takes another MAC, so its kernel drops every frame
on arrival), the bare loop, nvgw on asyncio, nvgw on trio, so that drift on a shared VM
hits all alike; the ratio nvgw / bare is taken within a repetition, then the median.
Five repetitions by default: on a 2-vCPU KVM guest one receiver's rate moves by up to
+-25 % between two windows a few seconds apart at the same CPU use (the host, not the
code), and three left single outliers deciding a median.

``recv-bound`` is yes when in every repetition the receiver limited the rate: more than
2 % of the frames that reached the host veth never reached the TAP (its raw socket's
buffer or its receive ring was full: the kernel's raw-socket drop counter, or the
daemon's ``nvgw_kernel_rx_drops``, says which), or the sender's core was under 90 %
busy (it waited on the receiver). No means the sender was the limit and the figure is a
lower bound of the receiver's capacity.

The machine is shared (tests, labs): before each measurement the script waits (up to 2
minutes) until both cores are idle, and a measurement during which another job took
more than 10 % of the sender's or the receiver's core is done again (up to 3 times;
the disturbed ones are kept apart in the results). The daemon runs from this work tree
as found (or from --rev's commit): every run records a digest of gateway/*.py, and a
run that saw two versions (someone editing meanwhile) says so.

Two commits compared: ``--rev OLD --rev NEW`` (``--rev worktree`` is the work tree
as found) runs each revision's daemon, from its own ``git archive`` of gateway/, within
the same repetitions: per repetition and size the sender alone, the bare loop, then each
revision on asyncio and trio, the revisions' order alternating between repetitions.
Each ratio to the bare loop is taken within its repetition; the report gives, per
revision, the median ratio and its spread (min..max), the change against the first
revision, and a verdict: no median ratio may drop by more than the larger of 5 % and
the first revision's own spread ((max - min) / median), with 5 repetitions or more
(issue 10's bar for a restructuring). Results are then keyed ``asyncio_64@<commit>``.

Writes ``bench/results.json`` (every run, every counter, the checks, the machine, the
Python, the git commit and trafgen's version) and prints a table; exit status 2 when a
check failed or a measurement could not run, 1 when a comparison finds a revision
slower.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway, for traffic.py

from hostfwd.common import (
    BENCH,
    DAEMONS,
    NAMESPACES,
    RECEIVERS,
    SIZES,
    log,
)
from hostfwd.namespaces import build_topology
from hostfwd.receivers import Receiver, measure_receiver
from hostfwd.report import finish, result_key
from hostfwd.runner import begin, guarded, measure_kept, window_arguments
from hostfwd.sources import Source, sources_or_exit, versions
from hostfwd.traffic import measure_sender_alone, nvgw_config, trafgen_config

LABELS = {
    "sender": "trafgen alone (host veth drops every frame on arrival)",
    "bare": "bare Python loop: blocking recv_into + os.write to the TAP",
    "asyncio": "nvgw host daemon, --backend asyncio",
    "trio": "nvgw host daemon, --backend trio",
}


def arguments() -> argparse.Namespace:
    ap = window_arguments(__doc__)
    ap.add_argument("--only", default=",".join(RECEIVERS), help="receivers: bare,asyncio,trio")
    ap.add_argument("--profile", type=Path, help="py-spy the daemon after each window into DIR")
    ap.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for nvgw run (repeat), e.g. --daemon-arg=--provider-rx=socket",
    )
    ap.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="REV",
        help="run the daemon from this commit's gateway/ (git archive); repeat to compare "
        "revisions interleaved, the first being the reference ('worktree': the work tree)",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "results.json")
    ap.add_argument("--cleanup", action="store_true", help="remove a killed run's leftovers")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.dur = 1, 2.0
    return a


def measure_all(
    a: argparse.Namespace, kinds: list[str], sources: list[Source], results: dict[str, Any]
) -> None:
    """Every repetition: per size the sender alone, the bare loop, then each source's
    daemons (the sources' order turning by one each repetition, so that none always
    comes first after the bare loop). Raises what stops the whole run."""
    daemons = [kind for kind in kinds if kind in DAEMONS]
    compared = len(sources) > 1
    total = a.reps * len(SIZES) * (1 + len(kinds) - len(daemons) + len(daemons) * len(sources))
    done = 0
    cfg_file = nvgw_config()
    cfgs = {size: trafgen_config(size) for size in SIZES}
    log(f"config {cfg_file} valid; building namespaces {', '.join(NAMESPACES)}")
    build_topology()
    for rep in range(1, a.reps + 1):
        turn = (rep - 1) % len(sources)
        order = sources[turn:] + sources[:turn]
        for size in SIZES:
            # (what, its source, its label in the keys): the bare loop is timed with
            # the first source's digest, as a single-source run always did
            plan: list[tuple[str, Source, str | None]] = [("sender", sources[0], None)]
            plan += [("bare", sources[0], None)] if "bare" in kinds else []
            for source in order:
                label = source.label if compared else None
                plan += [(kind, source, label) for kind in daemons]
            for kind, source, label in plan:
                key = result_key(kind, size, label)
                what = f"{LABELS[kind]}, {size} B inner"
                if label is not None:
                    what += f", gateway/ of {label}"
                e = results.setdefault(key, {"what": what, "runs": []})
                done += 1
                tag = f"[{done}/{total}] rep {rep} {key}"
                measure_one(a, e, tag, kind, size, cfgs, source, label, rep)


def measure_one(
    a: argparse.Namespace,
    e: dict[str, Any],
    tag: str,
    kind: str,
    size: int,
    cfgs: dict[int, Path],
    source: Source,
    label: str | None,
    rep: int,
) -> None:
    """One measurement, done again (up to ATTEMPTS) while another job disturbs it."""
    profile = None
    if a.profile is not None:
        profile = a.profile / f"nvgw-{kind}-{size}{'' if label is None else '@' + label}.txt"

    def measure() -> dict[str, Any]:
        if kind == "sender":
            return measure_sender_alone(cfgs[size], a.dur, a.warmup)
        rx = Receiver(kind, source, a.daemon_arg)
        return measure_receiver(rx, size, cfgs[size], a.dur, a.warmup, profile)

    measure_kept(e, tag, rep, measure)


def main() -> int:
    a = arguments()
    kinds = [k for k in RECEIVERS if k in a.only.split(",")]
    if not begin(a.cleanup):
        return 0
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {}
    problems: list[str] = []
    t_start = time.time()
    sources = sources_or_exit(a.rev, "host_forwarding")
    machine = versions(sources)
    guarded(lambda: measure_all(a, kinds, sources, results), problems)
    return finish(a, kinds, sources, machine, results, problems, t_start)


if __name__ == "__main__":
    sys.exit(main())
