"""Fixtures of the control tests: a copy of the two-hosts config, a real disk
that fills up, and a real etcd."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

from . import _stores
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


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the session's tests, each on a prefix of its own."""
    with running_etcd(tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd of this test's own, to stop, restart or compact."""
    with running_etcd(tmp_path) as etcd:
        yield etcd


@pytest.fixture(params=["sqlite", "etcd"])
def each_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's database store (``_stores``' helpers name it): SQLite, then a
    prefix of the session's etcd."""
    if request.param == "etcd":
        _stores.use(request.getfixturevalue("etcd_server"))
    try:
        yield request.param
    finally:
        _stores.use(None)
