"""A real disk to fill or make read-only (the ``small_disk`` fixture of conftest.py
mounts it): a small tmpfs under one test's own tmp_path."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path
from typing import Final

SIZE: Final = "256k"  # a database in WAL mode: its -shm alone is 32 KiB
PAGE: Final = 4096  # tmpfs allocates by the page


def mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True, capture_output=True, timeout=30)


def fill(directory: Path, spare: int = PAGE) -> Path:
    """Fill the filesystem but ``spare`` bytes (a page: room to create a file and
    start writing it); the filler file is returned, to remove."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * PAGE)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        f.truncate(f.tell() - spare)
    return filler
