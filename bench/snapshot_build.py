"""How long validating and compiling a big policy takes.

    python bench/snapshot_build.py [--records 100000] [--repeat 5] [--out FILE]

Generates one deployment with N lookup records (many routing domains and VSIDs, a
tenth IPv6, a twentieth IP-Rewrite, on-link and next-hop routes, one node per host
PA with a port per VM), then times ``load_policy`` (schema + cross-entity checks) and
``compile_policy`` separately with ``time.perf_counter``, best and median of a few
runs. Prints a table and writes JSON with the figures, N, Python, the machine and the
git commit. A benchmark, not a test: nothing here asserts a duration.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.policy import compile_policy, load_policy  # noqa: E402

RECORDS_PER_VSID = 250  # CAs .0.2 .. .0.251 of a /16: clear of network, gateway, broadcast
VSIDS_PER_DOMAIN = 4
RECORDS_PER_HOST = 50  # VMs behind one encap PA (one host)
IPV6_EVERY = 10
NAT_EVERY = 20


def generate(records: int, ports: bool = True) -> dict[str, Any]:
    """A valid policy document with ``records`` lookup records (deterministic)."""
    vsids = -(-records // RECORDS_PER_VSID)
    domains: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for vsid_index in range(vsids):
        d, k = divmod(vsid_index, VSIDS_PER_DOMAIN)
        rdid = f"{{{d:08x}-0000-4000-8000-{d:012x}}}"
        vsid = 5000 + vsid_index
        if k == 0:
            domains.append({"rdid": rdid, "name": f"tenant-{d}", "virtual_subnets": []})
            routes.append(_route(rdid, vsid, "0.0.0.0/0", "10.0.0.2", 100))
            routes.append(_route(rdid, vsid, "192.168.0.0/16", "10.0.0.3", 10))
        v4, v6 = f"10.{k}.0.0/16", f"fd00:{d:x}:{k:x}::/64"
        domains[-1]["virtual_subnets"].append(
            {"vsid": vsid, "prefixes": [v4, v6], "gateway": f"10.{k}.0.1"}
        )
        routes.append(_route(rdid, vsid, v4, "0.0.0.0", 255))
        routes.append(_route(rdid, vsid, v6, "::", 255))
        routes.append(_route(rdid, vsid, f"10.{k}.128.0/24", "10.0.0.2", 50))
    lookup = []
    nodes: dict[str, Any] = {}
    nat = 0
    for index in range(records):
        vsid_index, i = divmod(index, RECORDS_PER_VSID)
        d, k = divmod(vsid_index, VSIDS_PER_DOMAIN)
        host = index // RECORDS_PER_HOST
        mac = "02-00-" + (index & 0xFFFFFFFF).to_bytes(4, "big").hex("-")
        record = {"vsid": 5000 + vsid_index, "mac": mac, "rule": "encap", "vm": f"vm{index}"}
        if index % IPV6_EVERY == 1:
            record["ca"] = f"fd00:{d:x}:{k:x}::{i + 2:x}"
        else:
            record["ca"] = f"10.{k}.{(i + 2) >> 8}.{(i + 2) & 255}"
        if index % NAT_EVERY == 0:
            nat += 1
            record.update(rule="nat", pa=f"198.19.{nat >> 8}.{nat & 255}")
        else:
            record["pa"] = f"198.18.{host >> 8}.{host & 255}"
        lookup.append(record)
        node = nodes.setdefault(
            f"host-{host}", {"role": "host", "provider_addresses": [], "ports": []}
        )
        addresses = node["provider_addresses"]
        if not any(entry["pa"] == record["pa"] for entry in addresses):
            addresses.append({"interface": "pa0", "pa": record["pa"], "prefix_length": 15})
        if ports:
            node["ports"].append({"name": f"vm{index}", "vsid": record["vsid"], "mac": mac})
    return {
        "revision": 1,
        "routing_domains": domains,
        "lookup_records": lookup,
        "customer_routes": routes,
        "nodes": nodes,
    }


def _route(rdid: str, vsid: int, destination: str, next_hop: str, metric: int) -> dict[str, Any]:
    return {
        "rdid": rdid,
        "vsid": vsid,
        "destination": destination,
        "next_hop": next_hop,
        "metric": metric,
    }


def _time(function: Any, argument: Any, repeat: int) -> tuple[list[float], Any]:
    timings = []
    result = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = function(argument)
        timings.append(time.perf_counter() - start)
    return timings, result


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-ports", action="store_true", help="nodes without ports")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-snapshot.json")
    args = parser.parse_args(argv)

    document = generate(args.records, ports=not args.no_ports)
    validate, policy = _time(load_policy, document, args.repeat)
    build, snapshot = _time(compile_policy, policy, args.repeat)
    counts = policy.counts()
    figures = {
        "load_policy": {"best_s": min(validate), "median_s": statistics.median(validate)},
        "compile_policy": {"best_s": min(build), "median_s": statistics.median(build)},
    }
    print(
        f"{args.records} lookup records, {counts['customer_routes']} routes, "
        f"{counts['nodes']} nodes, {counts['ports']} ports; best/median of {args.repeat}"
    )
    print(f"{'step':<16}{'best s':>10}{'median s':>10}{'us/record':>11}")
    for step, figure in figures.items():
        per_record = figure["best_s"] / max(args.records, 1) * 1e6
        print(f"{step:<16}{figure['best_s']:>10.3f}{figure['median_s']:>10.3f}{per_record:>11.2f}")
    result = {
        "benchmark": "snapshot_build",
        "records": args.records,
        "repeat": args.repeat,
        "counts": counts,
        "figures": figures,
        "snapshot_records": len(snapshot.records),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "commit": _commit(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
