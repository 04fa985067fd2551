"""A TAP is created only under a name the kernel takes whole (gateway.netnames)."""

from __future__ import annotations

import errno

import pytest

from gateway.io.tap import Tap


@pytest.mark.parametrize("name", ["a" * 16, "blué-1234567890", "a:b", ""])
def test_a_name_the_kernel_would_cut_or_refuse_is_refused_with_the_rule(name: str) -> None:
    """Checked before TUNSETIFF, so it needs no root and opens nothing."""
    with pytest.raises(OSError, match="cannot create TAP") as raised:
        Tap(name, bytes(6), 1458)
    assert raised.value.errno == errno.EINVAL
    assert "interface name" in str(raised.value)
