"""What the kernel counts: interface counters and raw-socket drops per namespace (read
from /proc/<pid>/net of a process living there), CPU time, RSS, and the cores' load."""

from __future__ import annotations

import time
from typing import Any

from .common import NS_HOST, RCV_CPU, SND_CPU, TCK, BenchError, log
from .namespaces import HOLD


def netdev(ns: str) -> dict[str, dict[str, int]]:
    out = {}
    with open(f"/proc/{HOLD[ns]}/net/dev") as f:
        for line in f.readlines()[2:]:
            name, rest = line.split(":", 1)
            v = [int(x) for x in rest.split()]
            out[name.strip()] = {
                "rx_bytes": v[0],
                "rx_packets": v[1],
                "rx_drop": v[3],
                "tx_bytes": v[8],
                "tx_packets": v[9],
                "tx_drop": v[11],
            }
    return out


def raw_gre_drops(ns: str) -> int:
    """Datagrams the namespace's raw GRE sockets dropped (receive buffer full)."""
    total = 0
    with open(f"/proc/{HOLD[ns]}/net/raw") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":002F"):
                total += int(fields[-1])
    return total


def raw_gre_count() -> int:
    with open(f"/proc/{HOLD[NS_HOST]}/net/raw") as f:
        return sum(1 for line in f.readlines()[1:] if line.split()[1].endswith(":002F"))


def packet_count() -> int:
    with open(f"/proc/{HOLD[NS_HOST]}/net/packet") as f:
        return len(f.readlines()) - 1


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a whole process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) / TCK, int(rest[12]) / TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpustat() -> dict[str, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                # user nice system idle iowait irq softirq steal
                fields = line.split()
                out[fields[0]] = [int(x) for x in fields[1:9]]
    return out


def snap(pid: int | None, sender_pid: int) -> dict[str, Any]:
    return {
        "t": time.monotonic(),
        "dev": {ns: netdev(ns) for ns in HOLD},  # every namespace of ours
        "raw_drops": raw_gre_drops(NS_HOST),
        "cpu": cpustat(),
        "proc": proc_cpu(pid) if pid else None,
        "sender": tree_cpu(sender_pid),
    }


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its live descendants (trafgen under
    ``timeout`` forks its worker)."""
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            u, s = proc_cpu(p)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        user, system = user + u, system + s
    return user, system


# How long each look at the cores lasts: a quarter of a second (25 ticks) tells a job
# that would disturb a measurement (a test run, a build: a core busy for seconds) from
# the idle machine, and is paid before each measurement, a hundred times in ``make
# bench``; one that starts later shows in the measurement's own ``other_load``.
QUIET_LOOK_S = 0.25


def wait_quiet(limit_s: float = 120.0, threshold: float = 0.10) -> float:
    """Wait until both cores are nearly idle (another job on this shared machine, such
    as a test run, would take CPU from the sender or the receiver). Returns the
    busiest core's share over the last look (``QUIET_LOOK_S``); goes on anyway after
    ``limit_s``."""
    t_end = time.monotonic() + limit_s
    said = False
    while True:
        c0 = cpustat()
        time.sleep(QUIET_LOOK_S)
        shares = cpu_shares(c0, cpustat(), QUIET_LOOK_S)
        busiest = max(shares[f"cpu{c}"]["busy"] for c in (SND_CPU, RCV_CPU))
        if busiest <= threshold:
            return busiest
        if time.monotonic() > t_end:
            log(f"machine still busy ({busiest:.0%} of a core): measuring anyway")
            return busiest
        if not said:
            log(f"waiting for the machine to go quiet (a core is {busiest:.0%} busy)")
            said = True


def cpu_shares(c0: dict[str, list[int]], c1: dict[str, list[int]], dt: float) -> dict[str, Any]:
    out = {}
    for cpu in sorted(c1):
        d = [b - a for a, b in zip(c0[cpu], c1[cpu], strict=True)]

        def share(ticks: int) -> float:
            return round(ticks / TCK / dt, 3)

        out[cpu] = {
            "busy": share(sum(d) - d[3] - d[4]),
            "user": share(d[0] + d[1]),
            "system": share(d[2]),
            "softirq": share(d[5] + d[6]),
            "steal": share(d[7]),
        }
    return out


def delta(s0: dict[str, Any], s1: dict[str, Any], ns: str, dev: str) -> dict[str, int]:
    a, b = s0["dev"][ns][dev], s1["dev"][ns][dev]
    return {k: b[k] - a[k] for k in a}
