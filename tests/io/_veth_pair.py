"""Two namespaces joined by a veth, for the receive ring's tests: a's ``ra0`` sends
raw frames (``tests/lab/_inject.py``), b's ``rb0`` (MAC ``READER_MAC``) reads them in
a reader process that says "ready", then prints one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.lab import netns
from tests.conftest import require_root

INJECT = Path(__file__).parents[1] / "lab" / "_inject.py"
READER_MAC, SENDER_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"


@contextmanager
def veth_pair(tag: str) -> Iterator[tuple[str, str]]:
    """Namespaces a and b (named after ``tag``), removed on the way out."""
    require_root()
    a, b = f"nvt-{tag}-a{os.getpid() % 10000}", f"nvt-{tag}-b{os.getpid() % 10000}"
    try:
        netns.create(a)
        netns.create(b)
        netns.add_veth(a, "ra0", b, "rb0")
        subprocess.run(["ip", "-n", b, "link", "set", "rb0", "address", READER_MAC], check=True)
        yield a, b
    finally:
        netns.remove(a)
        netns.remove(b)


def start_reader(namespace: str, command: list[str]) -> subprocess.Popen[str]:
    """``command`` in the namespace, once it said "ready"."""
    reader = subprocess.Popen(
        ["ip", "netns", "exec", namespace, *command], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    return reader


def result_after_sending(sender: str, reader: subprocess.Popen[str], frames: list[bytes]) -> Any:
    """Send ``frames`` from the sender's ra0, then the reader's JSON line (the reader
    killed if it is still there, also when the sending failed)."""
    try:
        subprocess.run(
            ["ip", "netns", "exec", sender, sys.executable, str(INJECT), "ra0"],
            input="\n".join(f.hex() for f in frames).encode(),
            check=True,
            timeout=20,
        )
        out, _ = reader.communicate(timeout=20)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    return json.loads(out.strip().splitlines()[-1])
