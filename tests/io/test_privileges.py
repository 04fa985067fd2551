"""`nvgw run --user`: set up as root, then run as the user with two capabilities.

The daemon runs host1 of two-hosts as `nobody` in a namespace the test makes, with
its config in a directory `nobody` owns; the test reads what the kernel says of the
process (/proc/PID/status) and then makes the daemon use what it kept: the API, a
rewrite of the config, and a TAP created for a VM migrated here. On SQLite alone: what
the user must be able to write is the database's file and directory (an etcd store
has none: the daemon's user needs no file of it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from gateway.control.client import ApiClient
from gateway.io import ApiListen
from gateway.io.privileges import KEPT, PrivilegeError, check_access, lookup_user
from gateway.lab import netns
from tests.conftest import require_root, require_tool
from tests.control._stores import database, held, seed, url

from ._host import connects_as, host_namespace, stop_process

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.netns
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_daemon_runs_as_its_user_with_net_admin_and_net_raw_only(backend: str) -> None:
    require_root()
    require_tool("unshare")
    uid, gid = lookup_user("nobody")
    namespace = f"nvt-priv{os.getpid() % 10000}{backend[0]}"
    directory = Path(tempfile.mkdtemp(prefix="nvgw-priv-"))
    os.chmod(directory, 0o755)
    config = directory / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    seed(config)  # the database, made the user's as an installer would
    for path in (directory, config, database(config)):
        os.chown(path, uid, gid)
    api_socket = directory / "api.sock"
    # /dev/net/tun as Debian's udev makes it (0666), for the daemon's eyes only: a
    # device node of our own, bound over it in a mount namespace of the daemon's.
    tun = directory / "tun"
    os.mknod(tun, stat.S_IFCHR | 0o666, os.makedev(10, 200))
    os.chmod(tun, 0o666)
    process = None
    try:
        host_namespace(namespace)
        process = subprocess.Popen(
            [
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$0" /dev/net/tun && exec "$@"', str(tun),
                "ip", "netns", "exec", namespace, sys.executable, "-m", "gateway", "run",
                "--store", url(config), "--node", "host1", "--backend", backend,
                "--metrics", "127.0.0.1:0", "--api", str(api_socket), "--ready-fd", "1",
                "--user", "nobody",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line, process.stderr.read()  # type: ignore[union-attr]
        ready = json.loads(line)
        assert ready["uid"] == uid
        seen = status(process.pid)
        assert seen["Uid"].split() == [str(uid)] * 4 and seen["Gid"].split() == [str(gid)] * 4
        assert int(seen["CapEff"], 16) == KEPT and int(seen["CapPrm"], 16) == KEPT
        assert int(seen["CapInh"], 16) == 0 and int(seen["CapAmb"], 16) == 0
        assert seen["NoNewPrivs"] == "1"
        assert (api_socket.stat().st_uid, api_socket.stat().st_mode & 0o777) == (uid, 0o600)
        assert connects_as(uid, gid, api_socket), "the daemon's own user is admitted"
        assert not connects_as(65533, 65533, api_socket), "any other user is refused"
        # What it kept is enough for what policy changes need: a TAP for a VM that
        # moves here (CAP_NET_ADMIN) and the database written as its user.
        with ApiClient(api_socket) as api:
            api.request("POST", "/v1/migrate", json={"vm": "blue2", "pa": "198.18.0.1"})
        deadline = time.monotonic() + 5
        while not netns.has_link(namespace, "blue2"):
            assert time.monotonic() < deadline, "no TAP for the migrated VM"
            time.sleep(0.02)
        assert held(config).revision == 1 and database(config).stat().st_uid == uid
    finally:
        try:
            stop_process(process)
        finally:
            netns.remove(namespace)
            shutil.rmtree(directory, ignore_errors=True)


def test_what_the_user_will_lack_is_said_at_start() -> None:
    require_root()
    with pytest.raises(PrivilegeError, match="no user named 'nvgw-nonesuch'"):
        lookup_user("nvgw-nonesuch")
    uid, gid = lookup_user("nobody")
    directory = Path(tempfile.mkdtemp(prefix="nvgw-priv-"))
    try:
        os.chmod(directory, 0o755)
        config, tun = directory / "two-hosts.yaml", directory / "tun"
        shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
        tun.touch(mode=0o600)  # a stand-in with the modes under test
        with pytest.raises(PrivilegeError, match="could not create TAPs"):
            check_access(uid, gid, config, api=False, tun=tun)
        tun.chmod(0o666)
        check_access(uid, gid, config, api=False, tun=tun)  # reading the config is enough
        with pytest.raises(PrivilegeError, match=r"could not write the policy store.*two-hosts"):
            check_access(uid, gid, config, api=True, tun=tun)
        os.chown(config, uid, gid)
        with pytest.raises(PrivilegeError, match="could not write the policy store"):
            check_access(uid, gid, config, api=True, tun=tun)  # its directory still root's
        os.chown(directory, uid, gid)
        check_access(uid, gid, config, api=True, tun=tun)
    finally:
        shutil.rmtree(directory)


@pytest.mark.anyio
async def test_a_database_the_user_cannot_write_stops_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon creates (seeds) the database as root; with --user and the API on,
    it then checks that the user may write it, and refuses to start if not."""
    require_root()
    from gateway.io import daemon as daemon_module

    uid, _ = lookup_user("nobody")
    directory = Path(tempfile.mkdtemp(prefix="nvgw-priv-"))
    try:
        os.chmod(directory, 0o755)
        tun = directory / "tun"
        tun.touch()
        tun.chmod(0o666)  # a stand-in: this machine's /dev/net/tun may be 0600
        monkeypatch.setattr(daemon_module, "check_access", partial(check_access, tun=tun))
        database = directory / "policy.db"
        daemon = daemon_module.Daemon(
            f"sqlite:{database}",
            "host1",
            api=ApiListen(directory / "api.sock"),
            user="nobody",
            seed=CONFIGS / "two-hosts.yaml",
        )
        with pytest.raises(PrivilegeError, match=f"could not write the policy store.*{database}"):
            await daemon.run()
        assert database.stat().st_uid != uid
    finally:
        shutil.rmtree(directory)
