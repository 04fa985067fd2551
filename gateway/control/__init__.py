"""Control: where policy meets files (and later the API): reading config files with
line numbers in every error, and turning them into a validated ``Policy``."""

from __future__ import annotations

from .config_file import (
    line_of,
    load_config,
    new_yaml,
    policy_from_document,
    read_document,
    to_plain,
    write_document,
)
from .safe_files import replace_file

__all__ = [
    "line_of",
    "load_config",
    "new_yaml",
    "policy_from_document",
    "read_document",
    "replace_file",
    "to_plain",
    "write_document",
]
