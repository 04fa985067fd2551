"""Every file nvgw writes is replaced through here: atomically, durably, and without
following a link someone else planted.

nvgw often runs as root, and writes beside files others may manage: the config (the
API rewrites it), the lab's state file, ``import-hnv -o``. A fixed temporary name
opened with a plain ``open(..., "w")`` follows a symlink planted at that name and
truncates its target as root; ``os.replace`` onto the file's own name drops a link
the operator made there, and the new file's mode comes from the umask instead of the
old file. So:

- the temporary file gets a random name in the target's directory and is opened with
  ``O_CREAT | O_EXCL | O_NOFOLLOW``: if anything exists at that name (a link
  above all, dangling or not) the open fails and another name is drawn;
- an existing file keeps its mode, and its owner when the writer may set it (root
  may: a config owned by the operator stays theirs); the temporary file is 0600
  until then, so the content is never more readable than the old file was. A new
  file gets the usual 0666 less the umask;
- only a regular file is replaced: a symlink at the target is refused, never
  replaced by a file nor written through. A caller that means to write through a
  link resolves it itself, once (the store at start, ``import-hnv -o``);
- data, then fsync, rename, fsync of the directory: a crash at any point leaves the
  old file or the new one, never a torn one, and the rename survives a power cut.
  A failure on the way (disk full, I/O error, read-only) removes the temporary file
  and raises the OSError: the old file is untouched. Only the last step can fail
  once the new file is in place: that is ``NotDurable``, which says so, since the
  caller must then treat the file as written (every reader already sees it).

Every step works relative to one open directory fd, so the directory cannot be
swapped for another between the steps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final


class NotDurable(OSError):
    """The file was replaced, but the directory's fsync failed: every reader sees the
    new file, yet a power cut could still bring back the old one. ``written`` is the
    new file's status, as ``replace_file`` returns it."""

    def __init__(self, path: Path, error: OSError, written: os.stat_result) -> None:
        reason = f"{path} was replaced, but its directory could not be synced: {error.strerror}"
        super().__init__(error.errno, reason)
        self.written = written


TEMP_ATTEMPTS: Final = 16  # names drawn before giving up: each is 64 random bits
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def replace_file(path: str | os.PathLike[str], data: bytes) -> os.stat_result:
    """Replace (or create) the regular file at ``path`` with ``data``, atomically and
    durably. Returns the new file's status, taken before the rename, so that the
    caller knows the file it wrote even if someone replaces it right after.

    Raises OSError: the filesystem's (ENOSPC, EIO, EROFS, EACCES...), with the old
    file untouched, or ELOOP/EINVAL when ``path`` is a symlink or not a regular file;
    NotDurable (an OSError too) when the new file is in place but not yet durable.
    """
    target = Path(path)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = _existing(target, directory)
        fd, temp = _create_temp(target.name, directory, 0o600 if old else 0o666)
        try:
            try:
                if old is not None:
                    _keep_owner_and_mode(fd, old)
                _write_all(fd, data)
                os.fsync(fd)
                written = os.fstat(fd)
            finally:
                os.close(fd)
            os.replace(temp, target.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=directory)
            raise
        try:
            os.fsync(directory)
        except OSError as error:
            raise NotDurable(target, error, written) from None
        return written
    finally:
        os.close(directory)


def _existing(target: Path, directory: int) -> os.stat_result | None:
    """The file being replaced, if any; refuses anything but a regular file."""
    try:
        found = os.stat(target.name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(found.st_mode):
        raise OSError(
            errno.ELOOP,
            f"{target} is a symbolic link: nvgw neither replaces a link nor writes "
            "through one it did not resolve itself (name the file it points to)",
        )
    if not stat.S_ISREG(found.st_mode):
        raise OSError(errno.EINVAL, f"{target} is not a regular file: nvgw replaces only files")
    return found


def _temp_name(name: str) -> str:
    # Hidden, beside the target, and short enough for NAME_MAX whatever the name.
    return f".{name[:200]}.{secrets.token_hex(8)}.tmp"


def _create_temp(name: str, directory: int, mode: int) -> tuple[int, str]:
    """A new file of our own in the directory: O_EXCL fails on anything already there
    (a planted link included, which O_NOFOLLOW refuses besides), so draw again."""
    for _ in range(TEMP_ATTEMPTS):
        temp = _temp_name(name)
        try:
            return os.open(temp, _CREATE, mode, dir_fd=directory), temp
        except FileExistsError:
            continue
    raise FileExistsError(
        errno.EEXIST, f"no free temporary name beside {name} after {TEMP_ATTEMPTS} tries"
    )


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    """The old file's owner (where the kernel lets us: root may give a file away,
    others keep what they may) and then its mode, which a chown may have cleared."""
    created = os.fstat(fd)
    if (created.st_uid, created.st_gid) != (old.st_uid, old.st_gid):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
