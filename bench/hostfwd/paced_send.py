"""An evenly paced sender for the tunnel benchmark: prebuilt frames out of an
AF_PACKET socket, each at its due time, and a report that says whether it kept up.

    python bench/hostfwd/paced_send.py DEV FRAMES RATE --report FILE
                                       [--seconds S | --count N]

Run by ``tunnel_measure.py`` in the sender's namespace, pinned to the sender core,
for both kinds (the daemon's NVGRE into the sender veth; the anchor's inner IPv4
packets into its wireguard-go's TUN, an IP device: the frames carry no Ethernet
header), so the ratio compares two tunnels fed alike. trafgen's ``-b RATE`` sends in
bursts of a few hundred frames then pauses for milliseconds, which overflowed the
site socket's ~90-datagram receive buffer (wireguard-go reads one datagram per call),
and ``-t GAP`` tops out near 15k pps.

The schedule: frame ``i`` is due at ``t0 + i * period`` (``time.monotonic_ns``).
Ahead of it by more than SPIN_NS the sender sleeps (the timer slack set to 1 us),
then busy-waits the rest; it runs at nice -20 (NICE). Behind, it sends every frame
due at once, but never more than MAX_BURST: older slots are skipped and counted
``missed`` (a sender preempted for a millisecond would otherwise send 60 frames back
to back at 60k pps, the burst this sender exists to avoid). The report (JSON,
written on SIGINT, SIGTERM or at the end) gives what it sent, what it missed, its
achieved rate, how many frames each wake-up sent and the gaps between wake-ups;
``check`` refuses a run whose sender fell more than 1 % behind its schedule.

FRAMES is ``write_frames``'s file: each frame after its length (2 bytes, network
order), sent round robin. Stdlib only, so that its cost is Python's and the kernel's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Four frames back to back at most: at 60k pps that is 67 us of the schedule, 4 of
# the ~90 datagrams the site's socket buffers, drained by wireguard-go in well under
# a period of its own; one more wake-up's worth than a preemption of a few us needs.
MAX_BURST = 4
# sleep only when the next frame is due later than this: a sleep with 1 us of slack
# overshoots by ~15 us (p99 ~45 us on a loaded 2-core VM), so above ~25k pps it spins.
# At nice 0: the site's wireguard-go is not pinned and shares CPU 0 with it, as with
# trafgen before (at nice -20 the spinning sender kept the site off CPU 0 and onto
# the gateway side's core; sleeping longer woke milliseconds late on a busy machine)
SPIN_NS = 40_000
BEHIND_MAX = 0.01  # the share of the schedule a sender may miss
GAP_TOP_US = 2000  # the gap histogram's last bucket: this many us or more
# The site's wireguard-go is not pinned: at nice 0, its threads waking on the sender's
# core preempted the sender for a millisecond or more, 1-3 % of the schedule missed at
# 14-33k pps on a quiet machine; at -20 a CPU hog beside it costs the sender ~1 %
NICE = -20
LENGTH = struct.Struct("!H")
PR_SET_TIMERSLACK = 29


def write_frames(path: Path, frames: list[bytes]) -> Path:
    """``frames`` in the file format the sender reads."""
    path.write_bytes(b"".join(LENGTH.pack(len(f)) + f for f in frames))
    return path


def read_frames(path: Path) -> list[bytes]:
    data, frames, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = LENGTH.unpack_from(data, at)
        frames.append(data[at + 2 : at + 2 + size])
        at += 2 + size
    return frames


def slots(late_ns: int, period_ns: int) -> tuple[int, int]:
    """For a wake-up ``late_ns`` after the next frame's due time (>= 0): how many
    frames to send now and how many of the oldest due slots to skip."""
    due = late_ns // period_ns + 1
    return min(due, MAX_BURST), max(0, due - MAX_BURST)


class Pacer:
    """The send loop and its tallies."""

    def __init__(self, rate: int, end_ns: int) -> None:
        self.rate = rate
        self.end_ns = end_ns  # a signal's handler sets it to 0: ``stop``
        self.period = round(1e9 / rate)
        self.sent = self.missed = 0
        self.bursts = [0] * (MAX_BURST + 1)  # wake-ups that sent n frames
        self.gaps = [0] * (GAP_TOP_US + 1)  # us between wake-ups that sent
        self.t0 = self.t_last = 0

    def run(
        self,
        send: Callable[[bytes], object],
        frames: list[bytes],
        count: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Send until ``end_ns`` or ``count`` frames (0: no limit), or ``stop``.
        ``clock`` and ``sleep`` are for the tests."""
        period, gaps, bursts = self.period, self.gaps, self.bursts
        n_frames, k = len(frames), 0
        self.t0 = last = due = clock()
        while True:
            now = clock()
            late = now - due
            if late < 0:
                if late < -SPIN_NS:
                    sleep((-late - SPIN_NS) * 1e-9)
                continue
            if now >= self.end_ns or (count and self.sent >= count):
                break
            n, skip = slots(late, period)
            if count:
                n = min(n, count - self.sent)
            for _ in range(n):
                send(frames[k])
                k = (k + 1) % n_frames
            self.sent += n
            self.missed += skip
            due += (n + skip) * period
            bursts[n] += 1
            gaps[min((now - last) // 1000, GAP_TOP_US)] += 1
            last = now
        self.t_last = clock()

    def stop(self, *_: object) -> None:
        """End the run at the next frame's due time (a signal handler: a flag, not an
        exception, which Python 3.11 may raise outside the loop's ``try``)."""
        self.end_ns = 0

    def report(self) -> dict[str, Any]:
        secs = (self.t_last - self.t0) / 1e9
        return {
            "rate": self.rate,
            "seconds": round(secs, 3),
            "sent": self.sent,
            "missed": self.missed,
            "achieved_pps": round(self.sent / secs) if secs else 0,
            "max_burst": MAX_BURST,
            "bursts": {str(n): c for n, c in enumerate(self.bursts) if c},
            "gap_us": percentiles(self.gaps, (0.5, 0.99, 0.999)),
        }


def percentiles(hist: list[int], qs: tuple[float, ...]) -> dict[str, int]:
    """``hist``'s percentiles (bucket i: i us) and its largest, as {"p50": us, ...,
    "max": us}; GAP_TOP_US stands for that or more."""
    total, out = sum(hist), {}
    for q in qs:
        need, seen = q * total, 0
        for us, c in enumerate(hist):
            seen += c
            if c and seen >= need:
                out[f"p{q * 100:g}".replace(".", "")] = us
                break
    out["max"] = max((us for us, c in enumerate(hist) if c), default=0)
    return out


def check(report: dict[str, Any], rate: int) -> str | None:
    """Why the sender's run is no paced run at ``rate`` (it missed more than BEHIND_MAX
    of its slots, or sent more than MAX_BURST at once), or None when it is."""
    slots_due = report["sent"] + report["missed"]
    if not slots_due:
        return "the sender sent nothing"
    if report["missed"] > BEHIND_MAX * slots_due:
        return (
            f"the sender fell behind: {report['missed']} of {slots_due} frames missed"
            f" ({report['achieved_pps']} of {rate} pps)"
        )
    if max(int(n) for n in report["bursts"]) > report["max_burst"]:
        return f"the sender burst more than {report['max_burst']} frames"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dev")
    ap.add_argument("frames", type=Path)
    ap.add_argument("rate", type=int, help="pps")
    ap.add_argument("--seconds", type=float, default=3600.0)
    ap.add_argument("--count", type=int, default=0, help="frames, then stop (0: no limit)")
    ap.add_argument("--report", type=Path, required=True)
    a = ap.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # sleeps end within ~1 us, not 50
    os.setpriority(os.PRIO_PROCESS, 0, NICE)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # 0: it receives nothing
    sock.bind((a.dev, 0))
    frames = read_frames(a.frames)
    pacer = Pacer(a.rate, time.monotonic_ns() + int(a.seconds * 1e9))
    # SIGINT or SIGTERM ends the run with a report, even where the parent ignores SIGINT
    # (started in the background, as make may)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, pacer.stop)
    pacer.run(sock.send, frames, a.count)
    a.report.write_text(json.dumps(pacer.report()))


if __name__ == "__main__":
    main()
