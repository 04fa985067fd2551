"""Files nvgw writes: replaced atomically, never through a link someone planted, with
their mode and owner kept. Through ``write_document`` (the config and ``import-hnv
-o``) where the behaviour is the config's, through ``replace_file`` itself where it is
the helper's."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.control import load_config, read_document, replace_file, write_document
from gateway.control import safe_files as safe_files_module
from gateway.io.privileges import lookup_user
from tests.conftest import require_root

from ._disk import fill
from .test_hnv_import import cli, lab3_arguments

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def rewrite(config: Path) -> None:
    """The config written back with one change, as the store writes it."""
    document = read_document(config)
    document["revision"] = 1
    write_document(config, document)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_symlink_planted_at_the_old_temp_name_is_not_followed(
    config: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file\n")
    planted = tmp_path / ".two-hosts.yaml.tmp"  # the fixed name nvgw used to write
    planted.symlink_to(victim)
    rewrite(config)
    assert victim.read_bytes() == b"root's file\n"
    assert planted.is_symlink() and load_config(config).revision == 1


def test_a_symlink_at_the_temp_name_drawn_is_never_opened_another_name_is(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name the helper could draw is refused if it exists, a link above all
    (O_EXCL, O_NOFOLLOW): here the first name drawn is a planted link, one to an
    existing file and one dangling (O_CREAT alone would create its target)."""
    victim, absent = tmp_path / "victim", tmp_path / "absent"
    victim.write_bytes(b"root's file\n")
    names = iter([".planted.tmp", ".dangling.tmp", ".fresh.tmp"])
    monkeypatch.setattr(safe_files_module, "_temp_name", lambda name: next(names))
    (tmp_path / ".planted.tmp").symlink_to(victim)
    (tmp_path / ".dangling.tmp").symlink_to(absent)
    rewrite(config)
    assert victim.read_bytes() == b"root's file\n" and not absent.exists()
    assert load_config(config).revision == 1
    assert entries(tmp_path) == [".dangling.tmp", ".planted.tmp", "two-hosts.yaml", "victim"]


def test_the_mode_of_a_config_survives_a_change(config: Path) -> None:
    config.chmod(0o640)
    rewrite(config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_a_new_file_gets_the_umask_s_mode(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        replace_file(tmp_path / "new.json", b"{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_root_writing_another_user_s_file_keeps_its_owner(config: Path) -> None:
    require_root()
    uid, gid = lookup_user("nobody")
    os.chown(config, uid, gid)
    rewrite(config)
    assert (config.stat().st_uid, config.stat().st_gid) == (uid, gid)


def test_a_symlink_at_the_file_itself_is_refused_not_replaced(config: Path, tmp_path: Path) -> None:
    """Writing through a link is for callers that resolved it themselves (the store at
    start, ``import-hnv -o``): one that turns up later is never replaced nor followed."""
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    before = config.read_bytes()
    with pytest.raises(OSError, match="is a symbolic link") as refused:
        replace_file(link, b"revision: 9\n")
    assert refused.value.errno == errno.ELOOP
    assert link.is_symlink() and config.read_bytes() == before
    assert entries(tmp_path) == ["link.yaml", "two-hosts.yaml"]


def test_import_hnv_output_given_as_a_symlink_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "deployments" / "imported.yaml"
    target.parent.mkdir()
    target.write_text("# an older import\n")
    target.chmod(0o640)
    link = tmp_path / "current.yaml"
    link.symlink_to(target)
    result = CliRunner().invoke(cli(), [*lab3_arguments(tmp_path), "-o", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and load_config(target).nodes
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


# ---------------------------------------------------------------- a real disk full


def test_a_write_that_finds_the_disk_full_leaves_the_old_file_and_no_temp(
    small_disk: Path,
) -> None:
    target = small_disk / "state.json"
    replace_file(target, b'{"old": true}\n')
    fill(small_disk)
    with pytest.raises(OSError) as failed:
        replace_file(target, b"x" * 8192)
    assert failed.value.errno == errno.ENOSPC
    assert target.read_bytes() == b'{"old": true}\n'
    assert entries(small_disk) == ["filler", "state.json"]


def test_replay_output_given_as_a_symlink_is_written_through(tmp_path: Path) -> None:
    from gateway.lab.replay import read_frames, write_frames

    target, link = tmp_path / "out.pcap", tmp_path / "latest.pcap"
    target.write_bytes(b"an older capture")
    link.symlink_to(target)
    frames = [bytes(range(60)), bytes(64)]
    write_frames(link, frames)
    assert link.is_symlink() and read_frames(target) == frames
    assert entries(tmp_path) == ["latest.pcap", "out.pcap"]
