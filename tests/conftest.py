"""Shared fixtures: pinned anyio backends, the policy store a test runs on (SQLite,
then etcd), and needs that skip locally but fail in CI.

Under ``CI=true`` nothing may skip for want of root, namespaces or a peer tool: a CI
run that silently skipped the end-to-end tests would prove nothing (design decision
"Under CI=true nothing skips").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One etcd for the session's tests, each on a prefix of its own."""
    from tests.control._etcd import running_etcd  # which needs this module's require_tool

    with running_etcd(tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd


@pytest.fixture(params=["sqlite", "etcd"])
def each_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's database store (``tests/control/_stores.py``'s helpers name it):
    SQLite, then a prefix of the session's etcd. The stores its helpers opened are
    closed after the test (an etcd store's watch is a thread and a connection)."""
    from tests.control import _stores

    if request.param == "etcd":
        _stores.use(request.getfixturevalue("etcd_server"))
    try:
        yield request.param
    finally:
        _stores.use(None)
        _stores.close_opened()
