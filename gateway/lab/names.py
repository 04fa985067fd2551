"""What every part of a lab's plan shares: its error, and interface names that fit."""

from __future__ import annotations

from gateway.netnames import IFNAME_MAX_BYTES, ifname_size


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says why and what to do."""


def fit_ifname(prefix: str, suffix: str) -> str:
    """``prefix`` cut so that it and ``suffix`` make an interface name of at most
    IFNAME_MAX_BYTES bytes (at most 8 of them from the prefix, whole characters only):
    a lab's prefix may be longer than an interface name, or not ASCII."""
    cut = prefix[:8]
    while ifname_size(cut + suffix) > IFNAME_MAX_BYTES:
        cut = cut[:-1]
    return cut + suffix
