"""LabState on disk, and stop_processes on real processes this test starts.

Every process here is a child of the test, started with Popen and killed by its own
PID in a ``finally``; nothing else is ever signalled. No root needed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.control import safe_files
from gateway.lab.state import (
    LabState,
    RecordedProcess,
    StateFileError,
    is_same_process,
    process_start_ticks,
    remove_files,
    stop_processes,
)

GRACE_S = 0.3  # short: the children here either die on SIGTERM or never will
WAIT_S = 10.0

IGNORES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)
# Renames itself (the comm field of /proc/PID/stat) to something with spaces and
# parentheses once told to, then waits to be stopped.
RENAMES_ITSELF = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "open('/proc/self/comm', 'w').write('x) 1 2 (y')\n"
    "print('renamed', flush=True)\n"
    "time.sleep(60)\n"
)


@contextmanager
def child(*argv: str, stdin: bool = False) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()  # ours, by PID
        process.wait(WAIT_S)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def record(process: subprocess.Popen[str], what: str = "test child") -> RecordedProcess:
    ticks = process_start_ticks(process.pid)
    assert ticks is not None and ticks > 0
    return RecordedProcess(process.pid, ticks, what)


# ---------------------------------------------------------------- the file


def sample_state() -> LabState:
    return LabState(
        "nvgwtest1234",
        scenario="two-hosts",
        config="/tmp/lab-nvgwtest1234.yaml",
        namespaces=["nvgwtest1234-pnet", "nvgwtest1234-host1", "nvgwtest1234-blue1"],
        processes=[
            RecordedProcess(4242, 123456, "nvgw run host1", "host1", "127.0.0.1:41234"),
            RecordedProcess(4243, 123457, "nvgw run host2"),
        ],
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    state_dir = tmp_path / "run" / "nvgw"  # created by save
    state = sample_state()
    state.save(state_dir)
    loaded = LabState.load("nvgwtest1234", state_dir)
    assert loaded == state
    assert loaded is not None and isinstance(loaded.processes[0], RecordedProcess)
    assert [p.name for p in state_dir.iterdir()] == ["lab-nvgwtest1234.json"]
    assert json.loads((state_dir / "lab-nvgwtest1234.json").read_text())["prefix"] == (
        "nvgwtest1234"
    )


def test_load_of_a_lab_never_saved_is_none(tmp_path: Path) -> None:
    assert LabState.load("nvgw", tmp_path) is None
    sample_state().save(tmp_path)
    assert LabState.load("nvgw", tmp_path) is None, "another prefix's file is not ours"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # was RecursionError
        '{"prefix": "nvgw", "planted": 1}',  # was TypeError
        "[]",  # was AttributeError
        "not json",
    ],
    ids=["deep", "unknown-key", "not-a-mapping", "not-json"],
)
def test_a_state_file_nvgw_did_not_write_is_refused_with_its_path(
    tmp_path: Path, text: str
) -> None:
    LabState.path_for("nvgw", tmp_path).write_text(text)
    with pytest.raises(StateFileError, match=r"lab-nvgw\.json is not a lab state file"):
        LabState.load("nvgw", tmp_path)


def test_saving_again_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    state = LabState("nvgw")
    state.save(tmp_path)
    state.namespaces.append("nvgw-pnet")
    state.processes.append(RecordedProcess(1, 2, "three"))
    state.save(tmp_path)
    assert LabState.load("nvgw", tmp_path) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab-nvgw.json"]


def test_a_save_that_dies_halfway_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = sample_state()
    old.save(tmp_path)

    def write_half_then_die(fd: int, data: bytes) -> None:
        os.write(fd, data[:20])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safe_files, "_write_all", write_half_then_die)
    new = sample_state()
    new.namespaces.append("nvgwtest1234-red1")
    with pytest.raises(OSError):
        new.save(tmp_path)
    monkeypatch.undo()
    assert LabState.load("nvgwtest1234", tmp_path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["lab-nvgwtest1234.json"]


def test_a_save_follows_no_link_planted_beside_the_file_and_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """The state directory is /run/nvgw, written as root: a link at the temporary name
    the lab used to write (``lab-PREFIX.tmp``) is left alone, its target untouched."""
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "lab-nvgw.tmp").symlink_to(victim)
    state = LabState("nvgw")
    state.save(tmp_path)
    (tmp_path / "lab-nvgw.json").chmod(0o600)
    state.namespaces.append("nvgw-pnet")
    state.save(tmp_path)
    assert victim.read_text() == "root's file\n"
    assert LabState.load("nvgw", tmp_path) == state
    assert stat.S_IMODE((tmp_path / "lab-nvgw.json").stat().st_mode) == 0o600


def test_a_state_file_that_is_a_link_is_refused_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "lab-nvgw.json").symlink_to(victim)
    with pytest.raises(OSError, match="is a symbolic link"):
        LabState("nvgw").save(tmp_path)
    assert victim.read_text() == "root's file\n"


def test_remove_file(tmp_path: Path) -> None:
    state = sample_state()
    state.save(tmp_path)
    state.remove_file(tmp_path)
    assert LabState.load(state.prefix, tmp_path) is None
    state.remove_file(tmp_path)  # twice is fine: down may run after a half-done down


def test_recorded_files_are_removed_last_made_first_and_only_they(tmp_path: Path) -> None:
    """A hybrid lab's keys (a directory, then the files in it) and wireguard-go's
    sockets: removed from the record alone, also when some are gone already (a
    crash before they were made), never a file beside them nobody recorded."""
    keys = tmp_path / "lab-nvgw-keys"
    keys.mkdir(mode=0o700)
    (keys / "gw-51820.key").write_text("secret\n")
    made = [keys, keys / "gw-51820.key", keys / "never-made.key", tmp_path / "w0.sock"]
    (tmp_path / "w0.sock").write_text("")
    (tmp_path / "not-ours").write_text("kept\n")
    state = LabState("nvgw", files=[str(path) for path in made])
    state.save(tmp_path)
    remove_files(LabState.load("nvgw", tmp_path).files)  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab-nvgw.json", "not-ours"]


# ---------------------------------------------------------------- processes


def test_start_ticks_survive_a_hostile_command_name() -> None:
    """The comm field may hold spaces and ')': fields are counted after the last ')'."""
    with child(sys.executable, "-c", RENAMES_ITSELF, stdin=True) as process:
        before = record(process)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline() == "renamed\n"
        stat = Path(f"/proc/{process.pid}/stat").read_text()
        assert "(x) 1 2 (y)" in stat
        assert process_start_ticks(process.pid) == before.start_ticks
        assert is_same_process(before)
        stop_processes([before], grace_s=WAIT_S)
        assert process.wait(WAIT_S) == -signal.SIGTERM


def test_stop_terminates_with_sigterm() -> None:
    with child("sleep", "60") as process:
        stop_processes([record(process, "sleep")], grace_s=WAIT_S)
        # SIGTERM, not SIGKILL: it died within the grace, so nothing more was sent
        assert process.wait(WAIT_S) == -signal.SIGTERM


def test_stop_kills_what_ignores_sigterm_after_the_grace() -> None:
    with child(sys.executable, "-c", IGNORES_TERM) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"  # the handler is in place
        stop_processes([record(process, "stubborn")], grace_s=GRACE_S)
        assert process.wait(WAIT_S) == -signal.SIGKILL


def test_stop_never_signals_a_reused_pid() -> None:
    """A live process whose start ticks differ from the recorded ones is someone
    else's (the PID was reused): it must survive, even among ones that are stopped."""
    with child("sleep", "60") as stranger, child("sleep", "60") as ours:
        right = record(stranger)
        reused = RecordedProcess(stranger.pid, right.start_ticks + 1, "an old daemon")
        assert not is_same_process(reused)
        stop_processes([reused, record(ours)], grace_s=GRACE_S)
        assert ours.wait(WAIT_S) == -signal.SIGTERM
        assert stranger.poll() is None, "a reused PID was signalled"
        with pytest.raises(subprocess.TimeoutExpired):
            stranger.wait(GRACE_S)  # and no late SIGKILL either


def test_stop_of_processes_already_gone_is_quiet() -> None:
    with child("true") as process:
        recorded = record(process, "short-lived")
        assert process.wait(WAIT_S) == 0  # reaped: its PID is free now
    assert not is_same_process(recorded)
    stop_processes([recorded], grace_s=GRACE_S)  # nothing to signal, no error
    assert process_start_ticks(2**22 + 1) is None  # above pid_max: no such process
