"""The two-hosts lab on etcd (``nvgw lab up --store etcd``): a real etcd in the
provider namespace at 198.18.0.250:2379, recorded in the lab's state, which both
daemons share; a live migration under a ping, followed by the other daemon through
etcd's watch; and ``down`` leaves neither the etcd process nor its data behind.
One backend (asyncio): the store's daemon tests run both.
"""

from __future__ import annotations

import contextlib
import os
import time

from gateway.lab import etcd
from gateway.lab.commands import CONFIGS
from gateway.lab.probe import PingStream, connectivity
from gateway.lab.state import is_same_process
from gateway.lab.topology import Lab
from tests.conftest import require_root, require_tool

from .conftest import lab_prefix, ping, value


def test_a_lab_on_etcd_migrates_a_vm_under_a_ping_and_leaves_nothing_behind() -> None:
    require_root()
    for tool in ("ip", "ping", "etcd"):
        require_tool(tool)
    lab = Lab(lab_prefix("et"), store="etcd")
    data = etcd.data_dir(lab.state_dir, lab.prefix)
    try:
        lab.up(CONFIGS / "two-hosts.yaml", "two-hosts", "asyncio")
        state = lab.state()
        assert state.config == "etcd://198.18.0.250:2379/nvgw"
        [server] = [p for p in state.processes if p.what.startswith("etcd")]
        assert is_same_process(server) and data.is_dir()
        snapshot, plan = lab.plan()
        assert all(cell.as_expected for cell in connectivity(snapshot, plan))
        reloads = value(lab.metrics("host2"), "nvgw_policy_reloads_total", result="applied")
        stream = PingStream(plan.vm("blue1"), "10.10.10.12", interval_s=0.01)
        try:
            stream.wait_flowing()
            started = time.time()
            revision = lab.migrate("blue2", "host1")  # through host1's API, into etcd
            finished = time.time()
            assert ping(lab, "blue1", "10.10.10.12", count=2)
        finally:
            loss = stream.stop()
        print(f"migration on etcd: {loss.loss_s * 1000:.0f} ms without replies")
        assert revision == 1
        assert loss.first_reply < started and loss.last_reply > finished, "must span the move"
        assert loss.received > 0 and loss.loss_s <= 1.0, loss
        host2 = lab.metrics("host2")  # followed etcd (no signal): one reload
        assert value(host2, "nvgw_policy_revision", node="host2") == revision
        assert value(host2, "nvgw_policy_reloads_total", result="applied") == reloads + 1
    finally:
        lab.down()
    # Stopped: this process started it, so it stays a zombie until reaped, here or
    # by subprocess's own clean-up of Popen objects gone (then it is no child now).
    with contextlib.suppress(ChildProcessError):
        assert os.waitpid(server.pid, os.WNOHANG)[0] == server.pid, "etcd still runs"
    assert not is_same_process(server) and not data.exists()
