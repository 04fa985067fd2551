"""A host's namespace for a daemon under test, and a socket probe as another user."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from gateway.lab import netns


def host_namespace(namespace: str, pa: str = "198.18.0.1/24") -> None:
    """A namespace whose pa0 (a veth with its peer beside it, both up) holds the PA."""
    netns.create(namespace)
    for command in (
        ["link", "add", "pa0", "type", "veth", "peer", "name", "pa0peer"],
        ["addr", "add", pa, "dev", "pa0"],
        ["link", "set", "pa0", "up"],
        ["link", "set", "pa0peer", "up"],
    ):
        subprocess.run(["ip", "-n", namespace, *command], check=True)


def connects_as(uid: int, gid: int, path: Path) -> bool:
    """Whether a process of that user may connect to the Unix socket: a forked child
    becomes the user and tries."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(path))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a daemon the test started: ``sig`` first, SIGKILL after 20 s (and then
    raise, so a daemon that ignores SIGTERM fails its test but never outlives it)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)
        raise


def nvgre_after(host: str, sender: str, code: str, timeout_s: float) -> str:
    """What a host's namespace (``host``) receives from the gateway's PA 198.18.0.10
    once ``code`` (Python, sending something toward the gateway) has run in the
    namespace ``sender``: the first GRE datagram, in hex with its outer IPv4 header,
    or "" when none came within ``timeout_s`` (``_gre_listen.py``)."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", host, sys.executable,
         str(Path(__file__).with_name("_gre_listen.py")), "198.18.0.10", str(timeout_s)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
        subprocess.run(["ip", "netns", "exec", sender, sys.executable, "-c", code], check=True)
        return listener.stdout.readline().strip()
    finally:
        stop_process(listener)
