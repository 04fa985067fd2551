"""Daemon.reload in process: whatever a reload meets, it refuses, counts and logs,
and returns; the policy that ran keeps running. No data plane is needed: before the
daemon serves, the store's commit only keeps what it was given.

(tests/io/test_reload_daemon.py does the same to a real daemon with SIGHUP.) The file
store's alone: a reload re-reads its file; the database stores follow their writes
without a signal (tests/io/test_store_daemon.py, on SQLite and etcd).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

from gateway.io import daemon as daemon_module
from gateway.io.daemon import Daemon

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
async def daemon(tmp_path: Path) -> Daemon:
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    running = Daemon(config, "host1")
    await running.store.load()
    return running


def _deeply_nested(config: Path) -> None:
    config.write_text("revision: " + "[" * 5000 + "]" * 5000 + "\n")


def _renamed_away(config: Path) -> None:
    config.rename(config.with_name("aside.yaml"))


def _a_bug_in_the_node_s_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    def raises(*args: object) -> None:
        raise RuntimeError("injected: a bug in prepare_node")

    monkeypatch.setattr(daemon_module, "prepare_node", raises)


async def test_a_reload_refuses_what_it_cannot_read_parse_or_check(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    with structlog.testing.capture_logs() as logs:
        _renamed_away(daemon.config)
        assert await daemon.reload() is False
        daemon.config.with_name("aside.yaml").rename(daemon.config)
        _a_bug_in_the_node_s_checks(monkeypatch)
        assert await daemon.reload() is False
        monkeypatch.undo()
        _deeply_nested(daemon.config)
        assert await daemon.reload() is False
    assert daemon.reloads == {"applied": 0, "refused": 3}
    assert daemon.store.policy is not None and daemon.store.policy.revision == 0
    refused = [entry for entry in logs if entry["event"] == "policy refused"]
    assert len(refused) == 3
    assert "No such file or directory" in refused[0]["errors"][0]
    assert refused[1]["errors"] == ["RuntimeError: injected: a bug in prepare_node"]
    assert refused[1]["exc_info"] is True  # the traceback goes to the log


async def test_once_the_file_is_back_a_reload_applies_it(daemon: Daemon) -> None:
    _renamed_away(daemon.config)
    assert await daemon.reload() is False
    aside = daemon.config.with_name("aside.yaml")
    daemon.config.write_text(aside.read_text().replace("revision: 0", "revision: 3", 1))
    assert await daemon.reload() is True
    assert daemon.reloads == {"applied": 1, "refused": 1}
    assert daemon.store.policy is not None and daemon.store.policy.revision == 3
