"""Shared fixtures: pinned anyio backends, and needs that skip locally but fail in CI.

Under ``CI=true`` nothing may skip for want of root, namespaces or a peer tool: a CI
run that silently skipped the end-to-end tests would prove nothing (design decision
"Under CI=true nothing skips").
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> None:
    """Skip the test for want of something; under CI=true, fail instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of an external program (tshark, ip, ...), or skip/fail without it."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (make test installs it)")
    return path  # type: ignore[return-value]


def require_root() -> None:
    if os.geteuid() != 0:
        missing("needs root for network namespaces")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, pinned: a missing trio is an error, not half the runs."""
    return request.param
