"""Which ``gateway/`` a daemon runs: the work tree as found, or a commit's, exported
with ``git archive`` so that its figures belong to that commit whatever is being
edited meanwhile. Several sources in one run are measured interleaved (``--rev OLD
--rev NEW``), each against the same bare loop of the same repetition."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import ROOT, SCRATCH, BenchError, log, run

WORK_TREE = "worktree"  # --rev worktree: the work tree as found (the default)


@dataclass(frozen=True)
class Source:
    """Where ``python -m gateway`` runs from, and what to call it in the results."""

    label: str  # "work tree", or the commit's first 12 digits
    path: Path
    commit: str | None = None  # None: the work tree


def work_tree() -> Source:
    return Source("work tree", ROOT)


def source_of(rev: str) -> Source:
    """``rev``'s gateway/ in the scratch directory (or the work tree for ``worktree``),
    with its configs/ (the lab's scenarios: ``gateway/lab/configs`` links there);
    checks that ``python -m gateway`` there imports that copy."""
    if rev == WORK_TREE:
        return work_tree()
    commit = run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"]).strip()
    src = SCRATCH / f"src-{commit[:12]}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "gateway", "configs"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    where = run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=src)
    if not Path(where.strip()).is_relative_to(src):
        raise BenchError(f"python -m gateway in {src} imports {where.strip()}, not the copy")
    return Source(commit[:12], src, commit)


def source_or_exit(rev: str | None, script: str) -> Source:
    """``--rev REV``'s source (None: the work tree), or the script's exit naming why
    that commit cannot be run."""
    try:
        return work_tree() if rev is None else source_of(rev)
    except (BenchError, subprocess.CalledProcessError) as error:
        sys.exit(f"{script}: --rev {rev}: {error}")


def sources_or_exit(revs: list[str], script: str) -> list[Source]:
    """Repeated ``--rev``'s sources in order (none: the work tree alone), each logged,
    or the script's exit naming why one cannot be run or that one is named twice."""
    if not revs:
        return [work_tree()]
    try:
        sources = [source_of(rev) for rev in revs]
    except (BenchError, subprocess.CalledProcessError) as error:
        sys.exit(f"{script}: --rev {' '.join(revs)}: {error}")
    for rev, source in zip(revs, sources, strict=True):
        log(f"daemon from {rev} = {source.label} ({source.path})")
    labels = [source.label for source in sources]
    if len(set(labels)) < len(labels):
        sys.exit(f"{script}: --rev names one revision twice: {' '.join(revs)}")
    return sources


def gateway_hash(src: Path) -> str:
    """A digest of the daemon's code as it is now: the work tree may change under a
    long run (it is measured as found), and a run that saw two versions is flagged."""
    tree = hashlib.sha256()
    for path in sorted((src / "gateway").rglob("*.py")):
        tree.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return tree.hexdigest()[:16]


def versions(sources: list[Source]) -> dict[str, Any]:
    """The machine, the tools, and what the daemon ran: with one source the fields of
    earlier results.json files; with several, one entry per source in each."""

    def first(cmd: list[str]) -> str | None:
        try:
            return (run(cmd, check=False).strip().splitlines() or [None])[0]
        except (OSError, subprocess.SubprocessError):
            return None

    with open("/proc/cpuinfo") as f:
        cpu = dict(ln.split(":", 1) for ln in f.read().split("\n\n")[0].splitlines() if ":" in ln)
    cpu = {key.strip(): value.strip() for key, value in cpu.items()}
    model = cpu.get("model name")
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"], check=False)
    # what the daemon ran: a commit's gateway/ (--rev), or the work tree as found, with
    # the files that differed from git_commit (changes not yet committed are part of it)
    daemon = [source.commit or source.label for source in sources]
    uncommitted = dirty.splitlines() if any(s.commit is None for s in sources) else []
    digests = {source.label: gateway_hash(source.path) for source in sources}
    return {
        "cpu_model": model,
        # A VM's "AMD EPYC" names no generation: family, model and stepping do (the
        # same code's ratios to a bare loop moved by a third between two such VMs).
        "cpu_family_model_stepping": [cpu.get(k) for k in ("cpu family", "model", "stepping")],
        "cpu_cache": cpu.get("cache size"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "git_commit": first(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "daemon_source": daemon[0] if len(daemon) == 1 else daemon,
        "gateway_uncommitted": uncommitted,
        # every gateway/*.py at the start
        "gateway_py_sha256": next(iter(digests.values())) if len(digests) == 1 else digests,
        "trafgen": first(["trafgen", "-v"]),
    }
