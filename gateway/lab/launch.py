"""Starting the lab's processes, each recorded in the lab's state file as it starts
(``state.py``), so that ``down`` stops exactly those, also after a crash: the nodes'
daemons, the lab's servers (``gateway.lab.MODULE``), and the helpers other programs
are (etcd, wireguard-go, Open vSwitch's daemons).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from gateway.lab.plan import HostPlan, LabError
from gateway.lab.state import LabState, RecordedProcess, process_start_ticks

DAEMON_READY_TIMEOUT_S: Final = 20.0


class Launcher:
    """Starts a lab's processes, its files (logs, API sockets) named by its prefix in
    its state directory."""

    def __init__(self, prefix: str, state_dir: Path) -> None:
        self.prefix = prefix
        self.state_dir = state_dir

    def api_socket(self, node: str) -> Path:
        """The control API of the node's daemon (the filesystem is shared by every
        namespace, so each daemon of a lab needs its own socket path)."""
        return self.state_dir / f"lab-{self.prefix}-{node}.sock"

    def daemon(self, host: HostPlan, state: LabState, backend: str) -> None:
        """``nvgw run`` for the node, on the lab's store; returns once it is ready,
        its metrics address recorded."""
        log_path = self.state_dir / f"lab-{self.prefix}-{host.node}.log"
        read_end, write_end = os.pipe()
        command = ["ip", "netns", "exec", host.namespace, sys.executable, "-m", "gateway"]
        command += ["run", "--store", state.config, "--node", host.node]  # the lab's store
        command += ["--backend", backend, "--metrics", "127.0.0.1:0"]
        command += ["--ready-fd", str(write_end), "--api", str(self.api_socket(host.node))]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        os.close(write_end)
        ticks = process_start_ticks(process.pid)
        recorded = RecordedProcess(process.pid, ticks or 0, f"nvgw run {host.node}", host.node)
        state.processes.append(recorded)
        state.save(self.state_dir)
        try:
            line = read_line(read_end, DAEMON_READY_TIMEOUT_S)
        finally:
            os.close(read_end)
        if not line:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise LabError(f"the daemon of {host.node} did not get ready; its log:\n{tail}")
        ready = json.loads(line)
        recorded.metrics = ready["metrics"]
        state.save(self.state_dir)

    def server(self, state: LabState, namespace: str, module: str, arguments: list[str]) -> None:
        """A server of the lab's (``gateway.lab.MODULE``) in ``namespace``; returns
        once it says it is ready."""
        command = ["ip", "netns", "exec", namespace, sys.executable, "-m"]
        command += [f"gateway.lab.{module}", *arguments]
        what = f"server of {namespace}"
        process = self.process(state, command, what, stdout=subprocess.PIPE)
        assert process.stdout is not None
        try:
            line = read_line(process.stdout.fileno(), DAEMON_READY_TIMEOUT_S)
        finally:
            process.stdout.close()
        if line != "ready":
            raise LabError(f"the {what} did not start")

    def process(
        self,
        state: LabState,
        command: list[str],
        what: str,
        *,
        stdout: int = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """A helper process of the lab (not a node's daemon); ``log``: its output goes
        there (``down`` removes it)."""
        with open(log or os.devnull, "ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout if log is None else out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        ticks = process_start_ticks(process.pid) or 0
        state.processes.append(RecordedProcess(process.pid, ticks, what))
        state.save(self.state_dir)
        return process


def read_line(fd: int, timeout_s: float) -> str:
    """One line from a pipe, or "" if the writer closed it or the time ran out."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            return ""
        data += chunk
    return data.split(b"\n", 1)[0].decode()
