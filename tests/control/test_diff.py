"""nvgw policy diff: additions, removals, alterations keyed as an HNV admin keys them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.control import load_config
from gateway.control.diff import diff

from ._gateway_config import RED, gateway_config, gateway_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def nvgw_diff(old: Path, new: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "diff", str(old), str(new)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def variant(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_live_migration_is_one_altered_record_and_a_moved_port(tmp_path: Path) -> None:
    moved = variant(
        tmp_path,
        "moved.yaml",
        (
            "ca: 10.10.10.12, mac: 00-00-00-00-00-12, pa: 198.18.0.2",
            "ca: 10.10.10.12, mac: 00-00-00-00-00-12, pa: 198.18.0.1",
        ),
        ("      - {name: blue2, vsid: 5010, mac: 00-00-00-00-00-12}\n", ""),
        (
            "      - {name: red1, vsid: 5011, mac: 00-00-00-00-00-21}\n",
            "      - {name: red1, vsid: 5011, mac: 00-00-00-00-00-21}\n"
            "      - {name: blue2, vsid: 5010, mac: 00-00-00-00-00-12}\n",
        ),
    )
    result = diff(load_config(CONFIGS / "two-hosts.yaml"), load_config(moved))
    assert [str(c) for c in result.changes] == [
        "~ lookup record 5010/10.10.10.12: pa 198.18.0.2 -> 198.18.0.1",
        "- port host2/blue2",
        "+ port host1/blue2",
    ]
    assert result.warnings == []


def test_removing_a_vsids_last_route_warns_about_its_records(tmp_path: Path) -> None:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    red_route = text[
        text.index('  - rdid: "{11111111-2222-3333-4444-000000005011}"\n    vsid') : text.index(
            "\nnodes:"
        )
    ]
    without = tmp_path / "without.yaml"
    without.write_text(text.replace(red_route, ""))
    result = diff(load_config(CONFIGS / "two-hosts.yaml"), load_config(without))
    assert [c.kind + c.what for c in result.changes] == ["-customer route"]
    assert len(result.warnings) == 2 and all("5011 loses" in w for w in result.warnings)


def test_nvgw_policy_diff_exit_codes(tmp_path: Path) -> None:
    same = nvgw_diff(CONFIGS / "two-hosts.yaml", CONFIGS / "two-hosts.yaml")
    assert same.returncode == 0 and "no difference" in same.stdout
    routing = nvgw_diff(CONFIGS / "two-hosts.yaml", CONFIGS / "routing.yaml")
    assert routing.returncode == 1
    assert "+ virtual subnet 5012" in routing.stdout
    assert "~ virtual subnet 5010: gateway None -> 10.10.10.1" in routing.stdout
    broken = variant(tmp_path, "broken.yaml", ("vsid: 5010", "vsid: 4095"))
    invalid = nvgw_diff(CONFIGS / "two-hosts.yaml", broken)
    assert invalid.returncode == 2 and "reserved" in invalid.stdout


def test_a_changed_gateway_diffs_entry_by_entry(tmp_path: Path) -> None:
    """A gateway's served routing domains, TAPs and routes are entries of their own,
    keyed node/domain/name and node/domain/destination as the document holds the
    domain's key, not one long repr of the node's routing_domains."""
    text = gateway_text()
    changed = (
        text.replace(
            "{name: gw-blue, address: 172.16.0.1/24}", "{name: gw-blue, address: 172.16.0.1/23}"
        )
        .replace("          - {destination: 172.16.50.0/24, next_hop: 172.16.0.2}\n", "")
        .replace(
            "          - {destination: 172.16.0.0/24, next_hop: tap:gw-red}\n",
            "          - {destination: 172.16.0.0/24, next_hop: tap:gw-red}\n"
            "          - {destination: 172.16.60.0/24, next_hop: 172.16.0.3}\n",
        )
        .replace("mss_clamp: auto", "mss_clamp: 1360")
    )
    old = load_config(gateway_config(tmp_path))
    new = load_config(gateway_config(tmp_path, changed))
    assert [str(c) for c in diff(old, new).changes] == [
        "~ gateway tap gw/blue/gw-blue: address 172.16.0.1/24 -> 172.16.0.1/23",
        "- gateway route gw/blue/172.16.50.0/24",
        f"+ gateway route gw/{RED}/172.16.60.0/24",
        "~ node gw: mss_clamp auto -> 1360",
    ]
    red = text.index(f'      "{RED}":')
    without_red = load_config(gateway_config(tmp_path, text[:red]))
    assert [str(c) for c in diff(old, without_red).changes] == [
        f"- gateway routing domain gw/{RED}",
        f"- gateway tap gw/{RED}/gw-red",
        f"- gateway route gw/{RED}/172.16.0.0/24",
    ]
