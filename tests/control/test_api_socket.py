"""The API's Unix socket: 0600 from the moment it exists, and handed to the daemon's
user without ever following a link, or giving away a file swapped in for it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.control.api_server import ApiListenError, bind_unix, hand_over_socket
from gateway.io.privileges import lookup_user
from tests.conftest import require_root


def test_the_socket_is_0600_by_the_umask_alone(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        sock = bind_unix(tmp_path / "api.sock")
    finally:
        os.umask(previous)
    sock.close()
    assert stat.S_IMODE((tmp_path / "api.sock").lstat().st_mode) == 0o600


def test_the_socket_is_handed_to_the_daemon_s_user(tmp_path: Path) -> None:
    require_root()
    uid, gid = lookup_user("nobody")
    path = tmp_path / "api.sock"
    with bind_unix(path):
        hand_over_socket(path, uid, gid)
        assert (path.lstat().st_uid, path.lstat().st_gid) == (uid, gid)


@pytest.mark.parametrize("swap", ["symlink", "hard link"])
def test_what_is_swapped_in_for_the_socket_is_never_given_away(tmp_path: Path, swap: str) -> None:
    require_root()
    uid, gid = lookup_user("nobody")
    victim = tmp_path / "root-only"
    victim.write_text("root's\n")
    path = tmp_path / "api.sock"
    with bind_unix(path):
        path.unlink()
        if swap == "symlink":
            path.symlink_to(victim)
        else:
            path.hardlink_to(victim)
        with pytest.raises(ApiListenError, match="no longer the API socket"):
            hand_over_socket(path, uid, gid)
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)
    assert path.lstat().st_uid == 0
