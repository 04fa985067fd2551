"""Type aliases shared by the codecs (Python 3.11 has no ``collections.abc.Buffer``)."""

from __future__ import annotations

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview  # anything the parsers read
WritableBuffer: TypeAlias = bytearray | memoryview  # what the in-place rewrites patch
