"""A dual-stack port is served, and the daemon says once at start, per port, that its
IPv6 is not forwarded (decisions.md, "IPv6"): a log event, not a silent drop counter
alone. In process: the store's first load is the start-up the event belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from gateway.io.daemon import Daemon

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


async def test_each_dual_stack_port_is_named_once_at_start(tmp_path: Path) -> None:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    text = text.replace("prefixes: [10.10.10.0/24]", "prefixes: [10.10.10.0/24, 'fd00:10::/64']")
    ipv6 = (
        "  - {vsid: 5010, ca: 'fd00:10::11', mac: 00-00-00-00-00-11, pa: 198.18.0.1, rule: encap}"
    )
    text = text.replace("lookup_records:\n", f"lookup_records:\n{ipv6}\n", 1)
    config = tmp_path / "dual-stack.yaml"
    config.write_text(text)
    daemon = Daemon(config, "host1")
    with structlog.testing.capture_logs() as logs:
        await daemon.store.load()
    said = [entry for entry in logs if entry["event"] == "ipv6 not forwarded"]
    assert [(entry["port"], entry["ca"], entry["log_level"]) for entry in said] == [
        ("blue1", "fd00:10::11", "warning")
    ]
    assert "unsupported" in said[0]["detail"]
