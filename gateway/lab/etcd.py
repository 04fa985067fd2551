"""The lab's etcd (``nvgw lab up --store etcd``): a real single-node etcd in the
provider namespace at 198.18.0.250:2379 (design.md's ``nvgw-pnet`` extras), an
address on the provider bridge, so every host's daemon reaches it over the provider
network as a gateway cluster's daemons would reach theirs.

The lab's own commands run in the root namespace, which has no route to it (the lab
adds none there): they seed the store with ``nvgw apply`` run inside the provider
namespace, and read the policy back from a daemon's control API, whose socket is on
the filesystem every namespace shares. etcd's process is recorded in the lab's state
(``down`` stops it by PID); its data directory is ``lab-PREFIX-etcd`` beside the
state file, which ``down`` removes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from gateway.lab import netns
from gateway.lab.plan import LabError

ADDRESS: Final = "198.18.0.250"
PORT: Final = 2379
STORE: Final = f"etcd://{ADDRESS}:{PORT}/nvgw"
READY_TIMEOUT_S: Final = 30.0  # etcd answers within a second or two here
# A seed is one transaction of one operation per row and one request of their JSON:
# 100,000 records with a port each are 210,901 operations and 31 MB (the README's
# etcd paragraph); etcd's defaults allow 128 operations and 1.5 MiB.
MAX_TXN_OPS: Final = 1_000_000
MAX_REQUEST_BYTES: Final = 128 << 20
_PROBE: Final = (  # exit 0 once etcd answers a read
    "import httpx, sys; "
    "httpx.post(sys.argv[1] + '/v3/kv/range', json={'key': 'AA=='}).raise_for_status()"
)


def data_dir(state_dir: Path, prefix: str) -> Path:
    return state_dir / f"lab-{prefix}-etcd"


def address_bridge(namespace: str, bridge: str) -> None:
    """etcd's address, on the provider bridge (the provider network's /24)."""
    netns.add_address(namespace, bridge, ADDRESS, 24)


def command(namespace: str, data: Path) -> list[str]:
    client, peer = f"http://{ADDRESS}:{PORT}", "http://127.0.0.1:2380"
    return [
        "ip", "netns", "exec", namespace, "etcd", "--name", "lab", "--data-dir", str(data),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"lab={peer}", "--max-txn-ops", str(MAX_TXN_OPS),
        "--max-request-bytes", str(MAX_REQUEST_BYTES),
    ]  # fmt: skip


def wait_ready(namespace: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until etcd answers from inside its namespace; LabError with its log's end if it
    stops or does not answer in time."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    probe = ["ip", "netns", "exec", namespace, sys.executable, "-c", _PROBE]
    while subprocess.run([*probe, f"http://{ADDRESS}:{PORT}"], capture_output=True).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise LabError(f"the lab's etcd did not start (its log, {log}):\n{said}")
        time.sleep(0.1)


def seed(namespace: str, config: Path) -> None:
    """The lab's config into the empty store: ``nvgw apply`` inside the namespace."""
    applied = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "gateway",
         "apply", "--store", STORE, str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if applied.returncode:
        raise LabError(f"seeding {STORE} from {config} failed: {applied.stderr.strip()}")
