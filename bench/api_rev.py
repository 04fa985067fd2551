"""The file store of an older commit, measured in the same run (``api_change.py --rev
REV``): issue 14 reports each figure next to the YAML file store of the commit
before its store (5cdcc4a), at 1,000 and 10,000 records.

That commit's ``gateway/`` and its own ``bench/api_change.py`` and
``bench/snapshot_build.py`` are exported with ``git archive`` into a temporary
directory and its benchmark runs there as a subprocess (its script puts its own
directory first on ``sys.path``, so it imports that commit's store, which the
check below confirms), writing its JSON into that directory; its rows come back
as they are, with the commit's short name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FILES = ("gateway", "bench/api_change.py", "bench/snapshot_build.py")


def file_store(rev: str, records: Sequence[int], repeat: int) -> dict[str, Any]:
    """``rev``'s ``bench/api_change.py`` at ``records`` (its file store), as
    {"commit", "results"}."""
    commit = _git("rev-parse", "--short", "--verify", f"{rev}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix=f"nvgw-bench-{commit}-") as name:
        directory = Path(name)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, *FILES], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", name], input=archive.stdout, check=True)
        imports = subprocess.run(
            [sys.executable, "-c", "import gateway; print(gateway.__file__)"],
            cwd=name, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(imports).is_relative_to(directory):
            raise RuntimeError(f"{commit}'s copy imports {imports}, not its own gateway")
        out = directory / "results.json"
        words = [str(n) for n in records]
        subprocess.run(
            [sys.executable, "bench/api_change.py", "--records", *words,
             "--repeat", str(repeat), "--out", str(out)],
            cwd=name, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        found = json.loads(out.read_text())
    return {"commit": commit, "repeat": repeat, "results": found["results"]}


def _git(*words: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *words], capture_output=True, text=True, check=True
    ).stdout.strip()
