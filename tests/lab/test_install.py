"""``nvgw lab`` from a normal install: a wheel built from this tree, installed into a
fresh venv, run from another directory, finds its scenarios through the package.

The scenarios' configs live in the project's ``configs/``; ``gateway/lab/configs`` is
a link to it, which the wheel must store as files. The fresh venv sees the project's
dependencies through a .pth file written after the wheel is installed (so pip never
sees, nor touches, the project's editable install), and nothing of the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.lab.commands import SCENARIOS
from tests.conftest import require_root

from .conftest import lab_prefix

ROOT = Path(__file__).resolve().parents[2]
# What a wheel built from a checkout would not see either: caches, builds, the venv.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)
BUILD_TIMEOUT_S = 300


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path  # the fresh venv's bin/
    elsewhere: Path  # a directory with no source tree in sight

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NVGW_API")},
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("install")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)
    assert (source / "gateway/lab/configs").is_symlink(), "the link is what the wheel must resolve"
    wheels = work / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("nvgre_gateway-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert install.returncode == 0, install.stderr
    purelib = subprocess.run(
        [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "nvgw-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    yield Installed(wheel, venv / "bin", elsewhere)


def test_the_wheel_stores_each_scenario_config_as_a_file(installed: Installed) -> None:
    shipped = {p.name: p.read_bytes() for p in (ROOT / "configs").glob("*.yaml")}
    assert set(shipped) == {f"{name}.yaml" for name in SCENARIOS}
    with zipfile.ZipFile(installed.wheel) as wheel:
        stored = {
            Path(info.filename).name: wheel.read(info)
            for info in wheel.infolist()
            if info.filename.startswith("gateway/lab/configs/")
        }
        modes = {info.external_attr >> 28 for info in wheel.infolist()}
    assert stored == shipped, "the files themselves, not a link"
    assert 0o12 not in modes, "no symbolic link in the wheel"


def test_installed_nvgw_finds_its_scenarios_through_the_package(installed: Installed) -> None:
    where = installed.run(
        "python",
        "-c",
        "import gateway; from gateway.lab.commands import CONFIGS; "
        "print(gateway.__file__); print(CONFIGS / 'two-hosts.yaml')",
    )
    assert where.returncode == 0, where.stderr
    package, config = where.stdout.split()
    venv = installed.bin.parent
    assert Path(package).is_relative_to(venv), "the installed package, not the source tree"
    assert Path(config).is_relative_to(venv) and Path(config).is_file()
    assert not Path(config).is_symlink()
    check = installed.run("nvgw", "check", config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "valid (revision 0)" in check.stdout
    run_help = installed.run("nvgw", "lab", "run", "--help")
    assert run_help.returncode == 0, run_help.stderr
    assert "two-hosts" in run_help.stdout


@pytest.mark.netns
def test_installed_nvgw_brings_a_lab_up_and_down_from_another_directory(
    installed: Installed,
) -> None:
    """And what ``lab up`` prints is how to reach each daemon: the first verb works."""
    require_root()
    prefix = lab_prefix("w")
    try:
        up = installed.run("nvgw", "lab", "up", "--scenario", "two-hosts", "--prefix", prefix)
        assert up.returncode == 0, up.stdout + up.stderr
        for node in ("host1", "host2"):
            socket = f"/run/nvgw/lab-{prefix}-{node}.sock"
            hint = f"{node}: nvgw lookup-record get --api {socket}"
            assert hint in up.stdout
            assert f"export NVGW_API={socket}" in up.stdout
            verb = installed.run("nvgw", "lookup-record", "get", "--api", socket, "--json")
            assert verb.returncode == 0, verb.stdout + verb.stderr
            assert "10.10.10.11" in verb.stdout
    finally:
        down = installed.run("nvgw", "lab", "down", "--prefix", prefix)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "removed" in down.stdout


@pytest.mark.netns
def test_installed_nvgw_runs_a_lab_from_another_directory(installed: Installed) -> None:
    """``nvgw lab run``, the whole job (up, who reaches whom, down), from the wheel."""
    require_root()
    prefix = lab_prefix("r")
    try:
        run = installed.run(
            "nvgw", "lab", "run", "--scenario", "single-host", "--prefix", prefix, timeout=180
        )
    finally:
        installed.run("nvgw", "lab", "down", "--prefix", prefix)  # only if run left it up
    assert run.returncode == 0, run.stdout + run.stderr  # 1 when a cell is not as expected
    assert "who reaches whom" in run.stdout
