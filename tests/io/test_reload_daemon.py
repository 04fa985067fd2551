"""SIGHUP never kills a daemon: a reload that cannot read the file is refused, counted,
logged with the reason, and the old policy keeps running; once the file is back, the
next SIGHUP applies it. A real daemon on a file store (``-c FILE`` alone) in a
namespace of its own, once per backend: the file store's alone, whose reload is
SIGHUP (the database stores follow without a signal: test_store_daemon.py).

The test waits for the daemon's READY=1 after each SIGHUP (sd_notify, which it sends
once the reload is decided), never for a fixed time.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab.probe import scrape
from tests.conftest import require_root

from .test_api_daemon import Daemon, daemon_in_namespace

pytestmark = pytest.mark.netns
READY_TIMEOUT_S = 30.0  # only bounds a failure: a healthy reload answers at once


@pytest.fixture(params=["asyncio", "trio"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    require_root()
    namespace = f"nvt-rl{os.getpid() % 10000}{request.param[0]}"
    with daemon_in_namespace(namespace, tmp_path, request.param, store="file") as running:
        yield running


def reload(daemon: Daemon) -> None:
    """SIGHUP, then wait for the READY=1 that ends the reload (or fail if the
    daemon dies or never says it)."""
    while select.select([daemon.notifications], [], [], 0)[0]:
        daemon.notifications.recv(4096)  # what was said before
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        assert daemon.process.poll() is None, daemon.log.read_text()[-3000:]
        ready = select.select([daemon.notifications], [], [], min(left, 0.5))[0]
        if ready and daemon.notifications.recv(4096).decode().startswith("READY=1"):
            return
    pytest.fail(f"no READY=1 after SIGHUP: {daemon.log.read_text()[-3000:]}")


def reloads(daemon: Daemon) -> dict[str, float]:
    samples = scrape(daemon.namespace, daemon.ready["metrics"])
    return {
        result: samples.get(("nvgw_policy_reloads_total", (("result", result),)), 0.0)
        for result in ("applied", "refused")
    }


def test_sighup_with_the_config_renamed_away_is_refused_and_the_daemon_serves_on(
    daemon: Daemon,
) -> None:
    aside = daemon.config.with_name(".two-hosts.yaml.swp")
    daemon.config.rename(aside)  # an editor's save, caught between its two renames
    reload(daemon)
    assert reloads(daemon) == {"applied": 0, "refused": 1}
    refused = [line for line in daemon.log.read_text().splitlines() if "policy refused" in line]
    assert refused and str(daemon.config) in refused[-1] and "No such file" in refused[-1]
    with daemon.api() as api:
        assert api.request("GET", "/v1/health")["revision"] == 0  # the old policy runs

    daemon.config.write_text(aside.read_text().replace("revision: 0", "revision: 7", 1))
    reload(daemon)
    assert reloads(daemon) == {"applied": 1, "refused": 1}
    with daemon.api() as api:
        assert api.request("GET", "/v1/health")["revision"] == 7
