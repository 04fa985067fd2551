"""Fixtures of the control tests: a real disk that fills up or turns read-only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

from ._disk import SIZE, mount


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 64 KiB mounted for this test only, and unmounted whatever happens."""
    require_root()
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "nvgw-test", str(mountpoint))
        yield mountpoint
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)
