"""``python -m tests.fuzz``: a long campaign, or the replay of one finding.

    python -m tests.fuzz --inputs 10000000                 # what `make fuzz` runs
    python -m tests.fuzz --inputs 200000 --policy dual-stack
    python -m tests.fuzz --inputs 100000 --core wireguard   # one sans-IO core only
    python -m tests.fuzz --inputs 300000 --core gateway_tunnel   # a gateway's tunnels
    python -m tests.fuzz --replay 1:two-hosts/host1:12:345   # one input, judged aloud
    python -m tests.fuzz --replay 1:core/napt:3:17

Exit status: 0 when nothing was found, 1 when anything was (the summary and the
findings file say what), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from gateway.errors import Drop

from .campaign import campaign, write_findings
from .cores import CORE, CoreTarget, Step, core_names
from .engine import Bench, run_chunk
from .oracle import Outcome
from .policies import policy_names, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs to try (default 1M)")
    parser.add_argument("--seed", default="1", help="campaign seed: same seed, same inputs")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)"
    )
    parser.add_argument(
        "--policy", action="append", choices=policy_names(), help="only these policies (repeatable)"
    )
    parser.add_argument(
        "--core", action="append", choices=core_names(), help="only these cores (repeatable)"
    )
    parser.add_argument("--summary", type=Path, help="write the run's summary (JSON) here")
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path(tempfile.gettempdir()) / "nvgw-fuzz-findings.jsonl",
        help="write example findings here, one JSON object a line",
    )
    parser.add_argument(
        "--progress", type=float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument("--replay", metavar="SEED:POLICY/NODE:CHUNK:INDEX", help="re-run one input")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    if args.inputs < 1 or args.workers < 1:
        parser.error("--inputs and --workers must be positive")
    result = campaign(
        args.inputs, args.seed, args.workers, args.policy, args.progress, cores=args.core
    )
    write_findings(args.findings, result)
    if args.summary:
        args.summary.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"{result['inputs']:,} inputs in {result['seconds']:,} s ({result['inputs_per_s']:,}/s), "
        f"{result['findings_total']:,} findings of {len(result['findings'])} kinds"
    )
    for key, entry in result["findings"].items():
        print(f"{entry['count']:>9,}  {key}\n           --replay {entry['examples'][0]['replay']}")
    if result["findings"]:
        print(f"examples: {args.findings}")
    return 1 if result["findings"] else 0


def replay(ident: str) -> int:
    """Re-run the chunk of ``ident`` up to its input, and show how it was judged."""
    try:
        seed, name, chunk, index = ident.rsplit(":", 3)
        policy, node = name.split("/", 1)
        chunk_number, stop_at = int(chunk), int(index)
    except ValueError:
        print(f"not SEED:POLICY/NODE:CHUNK:INDEX: {ident!r}", file=sys.stderr)
        return 2
    if policy == CORE and node in core_names():
        return replay_core(CoreTarget(node), seed, chunk_number, stop_at)
    found = [t for t in targets([policy]) if t.node == node] if policy in policy_names() else []
    if not found:
        print(f"no such policy and node: {name}", file=sys.stderr)
        return 2
    shown: list[list[tuple[str, str]]] = []

    def show(index, entry, port, base, data, outcomes, findings) -> None:
        print(
            f"input {index} of chunk {chunk_number}: {entry}", f"port {port.name}" if port else ""
        )
        print(f"mutated from a {base.what} frame:\n  {base.data.hex()}")
        print(f"input ({len(data)} bytes):\n  {data.hex()}")
        for name, outcome in zip(
            ("first feed", "second feed", "cold cache", "parse_nvgre"), outcomes, strict=True
        ):
            if outcome is not None:
                print(f"{name:>12}: {_describe(outcome)}")
        for kind, detail in findings:
            print(f"FINDING {kind}: {detail}")
        shown.append(findings)

    run_chunk(Bench(found[0]), seed, chunk_number, stop_at + 1, stop_at=stop_at, show=show)
    return 1 if shown and shown[0] else 0


def replay_core(target: CoreTarget, seed: str, chunk: int, stop_at: int) -> int:
    """Re-run a core's chunk up to its input ``stop_at``, and show how it was judged."""
    shown: list[Step] = []

    def show(index: int, step: Step) -> None:
        print(f"input {index} of chunk {chunk}: {step.entry}, from {step.what}")
        print(f"input ({len(step.data)} bytes):\n  {step.data.hex()}")
        print(f"outcome: {step.label}")
        for kind, detail in step.findings:
            print(f"FINDING {kind}: {detail}")
        shown.append(step)

    target.run_chunk(seed, chunk, stop_at + 1, stop_at=stop_at, show=show)
    return 1 if shown and shown[0].findings else 0


def _describe(outcome: Outcome) -> str:
    if outcome.raised is not None:
        return f"raised {outcome.raised}"
    parts = [f"drop {Drop(i).name.lower()} x{n}" for i, n in outcome.drops]
    parts += [f"{event[0]} {event[-1].hex()}" for event in outcome.events]
    if outcome.parked:
        parts.append(f"parked {outcome.parked}")
    return "; ".join(parts) or "nothing"


if __name__ == "__main__":
    sys.exit(main())
