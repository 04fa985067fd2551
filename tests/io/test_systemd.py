"""sd_notify as systemd's socket receives it; a listener that stops reading must
never stall the caller (it is the daemon's event loop)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from gateway.io.systemd import notify, watchdog_interval


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_messages_arrive_whole_and_a_full_queue_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1", "STATUS=serving") is True
        assert listener.recv(4096) == b"READY=1\nSTATUS=serving"
        started = time.monotonic()
        sent = [notify("WATCHDOG=1") for _ in range(200)]  # nobody reads any of them
        assert time.monotonic() - started < 2.0
        assert sent[0] is True and sent[-1] is False


def test_abstract_socket_names(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"nvgw-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1") is True
        assert listener.recv(4096) == b"STOPPING=1"


def test_the_watchdog_is_half_the_timeout_and_only_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None
