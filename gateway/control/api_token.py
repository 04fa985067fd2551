"""The API's bearer token, read from a file the way ssh reads a private key.

The daemon (``--api-token-file``) and the CLI (``--token-file``) read it alike: the
file's first line, and only if nobody but its owner may read or write the file
(``mode & 0o077 == 0``, ssh's rule for identity files): a token others can read is
no longer a secret, and one others can write lets them choose it. The check is
made on the file opened, not on its name, so a link swapped in meanwhile changes
nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

MIN_TOKEN_CHARS: Final = 16  # shorter is guessable
MAX_TOKEN_CHARS: Final = 4096  # the first line is read no further


class TokenFileError(OSError):
    """The token file cannot be used: the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EINVAL, message)


def read_token(path: Path) -> str:
    """The bearer token: the first line of ``path`` (mode 0600 or stricter), without
    its line ending and surrounding blanks, 16 characters or more."""
    try:
        with open(path, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            line = b"" if mode & 0o077 else f.readline(MAX_TOKEN_CHARS + 1)
    except OSError as error:
        raise TokenFileError(
            f"cannot read the API token file {path}: {error.strerror or error}"
        ) from None
    if mode & 0o077:
        raise TokenFileError(
            f"the API token file {path} is open to others (mode {mode:04o}): chmod 600 {path}"
        )
    try:
        token = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"the API token in {path} is not UTF-8 text") from None
    if len(line) > MAX_TOKEN_CHARS:
        raise TokenFileError(f"the first line of {path} is longer than {MAX_TOKEN_CHARS} bytes")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenFileError(
            f"the API token in {path} (its first line) is shorter than "
            f"{MIN_TOKEN_CHARS} characters: too guessable"
        )
    return token
