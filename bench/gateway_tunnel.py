"""Packets per second through an nvgw gateway's WireGuard tunnel to a site's
wireguard-go, next to wireguard-go itself in the gateway's place, in one run.

    python bench/gateway_tunnel.py [--reps 5] [--dur 3] [--warmup 1] [--quick]
                                   [--only rate,tcp] [--kinds wggo,asyncio,trio]
                                   [--start-pps N] [--max-steps N] [--rev REV]
                                   [--out FILE]
    python bench/gateway_tunnel.py --cleanup   # remove what a killed run left behind

Needs root, 2 CPUs or more, /dev/net/tun, veth, nftables' netdev ingress hook,
wireguard-go, wg and iperf3; installs what it lacks as ``gateway_forwarding.py``
does. Run by ``make bench`` (2 repetitions, 1.5 s windows) and ``make bench-full``
(the defaults); never by the tests. Its parts are the gateway benchmark's
(``bench/hostfwd/``), with its own in ``hostfwd/tunnel_setup.py`` (the site, keys,
config, frames), ``tunnel_sweep.py`` (the search for the best rate at <= 1 % loss),
``tunnel_measure.py`` (one measurement) and ``tunnel_report.py`` (ratios, table).

Topology (three namespaces of its own, removed at the end)::

    [nvb-snd] nvbs0 ==veth== nvbh0 198.18.0.2 [nvb-host] nvbw0 192.0.2.1 ==veth== nvbw1 [nvb-site]
     paced_send, CPU 0         gateway daemon, CPU 1  (or wireguard-go nvbwggw,     wireguard-go
                               10.99.0.1, CPU 1, paced_send into its TUN, CPU 0)    nvbwgsite
                                                                                    172.16.50.10

* ``asyncio``, ``trio``: eight NVGRE flows (VSID 5010) from the remote VM 10.10.10.1
  to the site's server 172.16.50.10, inner IPv4 packets of 1400 B (anchor D's), to
  the gateway's record's MAC, at a fixed rate; the daemon (``nvgw run --node gw``)
  routes them to its tunnel (the tunnel's allowed IPs are routes of the routing
  domain), encrypts them and sends them from its UDP port 51820 to the site.
* ``wggo`` (anchor D, wireguard-go to wireguard-go between the gateway's and the
  site's namespaces): the same inner packets written by the same sender into the TUN
  of a wireguard-go in the host namespace (port 51821, its own peer at the site).

The sender is ``hostfwd/paced_send.py`` for both kinds (pinned to CPU 0): each frame
at its due time, at most 4 back to back when it is late (trafgen's ``-b`` sent
bursts of hundreds that overflowed the site's UDP receive buffer); a window whose
sender missed more than 1 % of its schedule is refused: no figure comes from it, and
the sweep looks below it as below a rate that lost (the sender's ceiling).

The site's wireguard-go (not pinned: it takes what the two cores have left, the
same for both) decrypts; delivered = its TUN's rx, the packets dropped right after
at the TUN's ingress (nftables), as the other benchmarks' sinks. Each measurement
sweeps fixed offered rates (anchor D3's method), one window each: from ``--start-pps``
(later repetitions: 0.8 x the previous best of that kind) up by 1.4x while the loss
stays <= 1 %, then halving the gap to the first rate that lost more; the figure is
the most delivered at <= 1 % loss, with the gateway side's CPU in that window
(``CPU s/Mpkt``: its CPU per packet sent into the tunnel, in microseconds). ``limit``
says who lost the packets at the first rate that lost more than 1 %: the gateway
side (the WAN veth carried fewer than were offered), the site (it got them all and
delivered fewer), or the sender (no rate lost: its ceiling; the figure is a lower
bound). Per repetition every kind in turn, the ratio daemon / wireguard-go taken
within each repetition, then the median; target >= 1.0x. Before each sweep the
handshake is made and 64 packets must arrive exactly (the daemon counting no
drop). A measurement during which another job took more than 10 % of a core is
done again (up to 3 times).

TCP (``--only tcp``; ``hostfwd/tunnel_tcp.py`` has the details), anchor D1's method:
one iperf3 stream to the site's server, the receiver's goodput in Mbit/s, per
repetition after the rates. The headline's path again (``tcp-asyncio``,
``tcp-trio``: the client behind a TAP in the sender namespace whose host is
``bare_host.py``, a bare NVGRE loop each way: NVGRE in at the daemon's PA) next to
wireguard-go (``tcp-wggo``: the client in the host namespace, through the anchor);
and the second figure, VM to site end to end (``tcp-vm-asyncio``, ``tcp-vm-trio``):
the hybrid lab brought up for the run from the same source, the client in blue1's
namespace behind host1's daemon, through the gateway daemon's tunnel to the Blue
site's wireguard-go (the lab pins nothing). Each ratio to ``tcp-wggo`` is taken
within its repetition.

Writes ``bench/results-gateway-tunnel.json`` and prints a table for each part; exit
status 2 when a check failed or a measurement could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway, for the config

from hostfwd.common import BENCH, NS_HOST, NS_SITE, NS_SND, PACKAGES, ROOT, log, run, stop
from hostfwd.namespaces import build_topology
from hostfwd.runner import begin, guarded, measure_kept, window_arguments
from hostfwd.sources import Source, source_or_exit, versions
from hostfwd.tunnel_measure import ANCHOR, BARE, DAEMONS, KINDS, measure_tunnel
from hostfwd.tunnel_report import finish, key_of, tcp_key_of
from hostfwd.tunnel_setup import (
    anchor_frames_file,
    build_wan,
    inbound_frames_file,
    keys,
    start_site,
    tunnel_config,
)
from hostfwd.tunnel_sweep import Plan
from hostfwd.tunnel_tcp import VM, lab_down, lab_namespaces, measure_tcp

TUNNEL_PACKAGES = {
    **PACKAGES,
    "nft": "nftables",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "iperf3": "iperf3",
}
PARTS = ("rate", "tcp")
LABELS = {
    ANCHOR: "wireguard-go in the gateway's place (paced_send into its TUN)",
    BARE: "bare Python loop in the daemon's place (bare_tunnel.py): the ceiling",
}


def arguments() -> argparse.Namespace:
    ap = window_arguments(__doc__)
    ap.set_defaults(dur=3.0, warmup=1.0)
    ap.add_argument("--only", default=",".join(PARTS), help="rate,tcp")
    ap.add_argument("--kinds", default=",".join(KINDS), help="wggo,bare,asyncio,trio")
    ap.add_argument("--start-pps", type=int, default=20000, help="the sweep's first rate")
    ap.add_argument("--max-steps", type=int, default=7, help="rates tried per sweep")
    ap.add_argument("--max-wait", type=float, default=120.0, help="for a quiet machine, s")
    ap.add_argument("--daemon-arg", action="append", default=[], metavar="ARG", help="for nvgw run")
    ap.add_argument(
        "--rev",
        metavar="REV",
        help="run the daemon from this commit's gateway/ (git archive), not the work tree",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "results-gateway-tunnel.json")
    ap.add_argument("--cleanup", action="store_true", help="remove a killed run's leftovers")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.dur, a.warmup = 1, 1.5, 0.5
    a.kinds = [k for k in a.kinds.split(",") if k in KINDS]
    a.only = [p for p in a.only.split(",") if p in PARTS]
    # TCP: each kind, and each daemon's VM-to-site run through the lab
    a.tcp_kinds = [*a.kinds, *(VM + k for k in a.kinds if k in DAEMONS)] if "tcp" in a.only else []
    return a


def what(kind: str) -> str:
    label = LABELS.get(kind, f"nvgw gateway daemon, --backend {kind}, NVGRE in at its PA")
    return f"{label}, to the site's wireguard-go, 1400 B inner IPv4, best pps at <= 1 % loss"


def what_tcp(kind: str) -> str:
    if kind == ANCHOR:
        label = "wireguard-go in the gateway's place, the client beside it"
    elif kind == BARE:
        label = "bare Python loop in the daemon's place (bare_tunnel.py), NVGRE in at its PA"
    elif kind.startswith(VM):
        label = f"VM to site end to end: the hybrid lab, --backend {kind.removeprefix(VM)}"
    else:
        label = f"nvgw gateway daemon, --backend {kind}, NVGRE in at its PA (bare_host.py)"
    return f"{label}, to the site's wireguard-go, one iperf3 TCP stream, receiver's Mbit/s"


def tcp_said(r: dict[str, Any]) -> str:
    return (
        f"{r['mbit_s']} Mbit/s, {r['retransmits']} retransmits,"
        f" gateway side {r['gateway_cores']:.2f} cores"
    )


def measure_all(
    a: argparse.Namespace, source: Source, results: dict[str, Any], tcp: dict[str, Any]
) -> None:
    """Every repetition, each kind in turn, each a sweep; then each a TCP run."""
    k = keys()
    config = tunnel_config(k["gw"][0], k["site"][1])
    cfgs = {
        kind: anchor_frames_file() if kind == ANCHOR else inbound_frames_file() for kind in a.kinds
    }
    log(f"config {config} valid; building namespaces")
    build_topology()
    build_wan()
    site = start_site(k)
    ours = [NS_SND, NS_HOST, NS_SITE]
    starts = dict.fromkeys(a.kinds, a.start_pps)
    rate_kinds = a.kinds if "rate" in a.only else []
    total, done = a.reps * (len(rate_kinds) + len(a.tcp_kinds)), 0
    try:
        for rep in range(1, a.reps + 1):
            for kind in rate_kinds:
                done += 1
                key = key_of(kind)
                e = results.setdefault(key, {"what": what(kind), "runs": []})
                plan = Plan(start=starts[kind], max_steps=a.max_steps)
                args = (kind, cfgs[kind], config, source, a.daemon_arg, k, site.pid, plan)
                tag = f"[{done}/{total}] rep {rep} {key}"
                measure_kept(
                    e,
                    tag,
                    rep,
                    lambda args=args: measure_tunnel(*args, a.dur, a.warmup),
                    a.max_wait,
                )
                if e["runs"] and e["runs"][-1]["rep"] == rep and e["runs"][-1]["delivered_pps"]:
                    starts[kind] = max(1000, round(0.8 * e["runs"][-1]["delivered_pps"]))
            for kind in a.tcp_kinds:
                done += 1
                key = tcp_key_of(kind)
                e = tcp.setdefault(key, {"what": what_tcp(kind), "runs": []})
                args = (kind, config, source, a.daemon_arg, k, ours, a.dur, a.warmup)
                measure_kept(
                    e,
                    f"[{done}/{total}] rep {rep} {key}",
                    rep,
                    lambda args=args: measure_tcp(*args),
                    a.max_wait,
                    tcp_said,
                )
    finally:
        stop(site)


def main() -> int:
    a = arguments()
    if not begin(a.cleanup, TUNNEL_PACKAGES):
        if lab_namespaces():  # a killed run's lab
            lab_down(ROOT)
        return 0
    results: dict[str, Any] = {}
    problems: list[str] = []
    t_start = time.time()
    source = source_or_exit(a.rev, "gateway_tunnel")
    machine = versions([source])
    machine["wireguard_go"] = run(["dpkg-query", "-W", "wireguard-go"], check=False).strip()
    machine["iperf3"] = run(["iperf3", "--version"], check=False).splitlines()[0]
    tcp: dict[str, Any] = {}
    try:
        guarded(lambda: measure_all(a, source, results, tcp), problems)
    finally:
        if lab_namespaces():  # a failed or interrupted lab run's
            lab_down(source.path)
    return finish(a, machine, results, tcp, problems, t_start)


if __name__ == "__main__":
    sys.exit(main())
