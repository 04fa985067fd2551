"""Fixtures of the control tests: a copy of the two-hosts config, a real disk
that fills up, and a real etcd of a test's own (tests/conftest.py has the session's,
and ``each_store``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

from ._disk import SIZE, mount
from ._etcd import Etcd, running_etcd

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the two-hosts config (a test's database seeds from it)."""
    path = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", path)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 256 KiB mounted for this test only, and unmounted whatever happens."""
    require_root()
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "nvgw-test", str(mountpoint))
        yield mountpoint
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd of this test's own, to stop, restart or compact."""
    with running_etcd(tmp_path) as etcd:
        yield etcd
