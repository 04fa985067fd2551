"""What a lab created, on disk, so that ``nvgw lab down`` removes exactly that.

The lab writes each namespace, each process and each file outside its namespaces
into the state file *before* it creates it, so a crash between the two leaves at
worst a name that no longer exists, never a namespace, a process or a file nobody
knows about. ``down`` works from the file alone: after Ctrl-C, after a failed test,
after the lab process was killed.

Processes are recorded with their kernel start time, and ``down`` signals a PID only
while that start time still matches, so a PID reused by someone else's process is
never killed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.control import parse_json, read_bounded, replace_file
from gateway.errors import ConfigError

STATE_DIR = Path("/run/nvgw")
TERM_GRACE_S = 3.0  # SIGTERM first, SIGKILL after this long
MAX_STATE_BYTES = 1 << 20  # a lab of a few dozen namespaces writes a few KiB


class StateFileError(OSError):
    """The state file is not one nvgw wrote (corrupt, or planted): nothing is removed."""


@dataclass
class RecordedProcess:
    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat: tells a reused PID apart
    what: str  # for people reading the state file
    node: str = ""  # for a daemon: the node it runs
    metrics: str = ""  # for a daemon: where its /metrics listens, in its namespace


@dataclass
class LabState:
    prefix: str
    scenario: str = ""
    config: str = ""
    namespaces: list[str] = field(default_factory=list)
    processes: list[RecordedProcess] = field(default_factory=list)
    # Outside the namespaces (the keys of a hybrid lab's tunnels, the directory that
    # holds them, wireguard-go's control sockets): each recorded before it is made.
    files: list[str] = field(default_factory=list)

    @staticmethod
    def path_for(prefix: str, state_dir: Path = STATE_DIR) -> Path:
        return state_dir / f"lab-{prefix}.json"

    @classmethod
    def load(cls, prefix: str, state_dir: Path = STATE_DIR) -> LabState | None:
        path = cls.path_for(prefix, state_dir)
        if not path.exists():
            return None
        try:  # read as any JSON nvgw did not just write: bounded in size and depth
            raw = parse_json(read_bounded(path, MAX_STATE_BYTES), str(path))
            procs = [RecordedProcess(**p) for p in raw.pop("processes", [])]
            return cls(**raw, processes=procs)
        except (ConfigError, TypeError, AttributeError) as error:
            raise StateFileError(
                errno.EINVAL,
                f"{path} is not a lab state file nvgw wrote ({error}): "
                "look at it, and remove it by hand with what it names",
            ) from None

    def save(self, state_dir: Path = STATE_DIR) -> None:
        """Atomic and durable (``replace_file``): a reader, or a crash, sees the old file
        or the new one, never half; no link planted beside it is ever followed."""
        state_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(self), indent=2)
        replace_file(self.path_for(self.prefix, state_dir), text.encode())

    def remove_file(self, state_dir: Path = STATE_DIR) -> None:
        self.path_for(self.prefix, state_dir).unlink(missing_ok=True)


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 overall, 20th after the name


def remove_files(paths: list[str]) -> None:
    """Remove the recorded files, last made first (a directory after what it holds);
    one that is not there is not an error, and a directory is only removed empty."""
    for name in reversed(paths):
        path = Path(name)
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


def is_same_process(proc: RecordedProcess) -> bool:
    return process_start_ticks(proc.pid) == proc.start_ticks


def stop_processes(procs: list[RecordedProcess], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM each recorded process still alive, then SIGKILL whatever outlives the grace."""
    alive = [p for p in procs if is_same_process(p)]
    for proc in alive:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if is_same_process(p) and not _is_zombie(p.pid)]
    for proc in alive:
        _signal(proc, signal.SIGKILL)


def _signal(proc: RecordedProcess, sig: signal.Signals) -> None:
    """Signal the recorded process and nothing else: a pidfd pins the process first,
    then its start time is checked, so a PID reused in between is never signalled."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    try:
        if process_start_ticks(proc.pid) == proc.start_ticks:
            signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass  # it ended between the check and the signal
    finally:
        os.close(pidfd)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
