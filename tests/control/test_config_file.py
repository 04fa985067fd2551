"""Config files: the shipped seed-lab configs, YAML quirks, and file:line in errors."""

from __future__ import annotations

import io
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from gateway.control import line_of, load_config, new_yaml, read_document, to_plain
from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import Rule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))

EXPECTED_COUNTS = {
    "single-host.yaml": dict(rds=2, subnets=2, records=4, nat=0, routes=0, nodes=1, ports=4),
    "ip-rewrite.yaml": dict(rds=2, subnets=2, records=4, nat=4, routes=0, nodes=2, ports=4),
    "two-hosts.yaml": dict(rds=2, subnets=2, records=4, nat=0, routes=2, nodes=2, ports=4),
    "routing.yaml": dict(rds=2, subnets=3, records=5, nat=0, routes=3, nodes=2, ports=5),
    # the two-hosts lab, the gateway's record and default route per tenant, and blue3
    # on the Open vSwitch host that is not ours (a record no node's ports hold)
    "gateway.yaml": dict(rds=2, subnets=2, records=7, nat=0, routes=4, nodes=3, ports=4),
    # the two-hosts lab, the gateway's record and default route per tenant; the sites
    # are reached by tunnels, which add no record
    "hybrid.yaml": dict(rds=2, subnets=2, records=6, nat=0, routes=4, nodes=3, ports=4),
}
PROVIDER_RANGE = IPv4Network("198.18.0.0/15")


def test_every_seed_lab_is_shipped() -> None:
    assert sorted(path.name for path in SHIPPED) == sorted(EXPECTED_COUNTS)


@pytest.mark.parametrize("config", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_config_is_valid(config: Path) -> None:
    policy = load_config(config)
    counts = policy.counts()
    expected = EXPECTED_COUNTS[config.name]
    assert (
        counts["routing_domains"],
        counts["virtual_subnets"],
        counts["lookup_records"],
        counts["ip_rewrite_records"],
        counts["customer_routes"],
        counts["nodes"],
        counts["ports"],
    ) == tuple(expected.values())
    # Provider addresses only from the benchmarking range, never routable space.
    pas = [record.pa for record in policy.lookup_records]
    pas += [entry.pa for node in policy.nodes for entry in node.provider_addresses]
    assert pas and all(pa in PROVIDER_RANGE for pa in pas)
    # Interface names fit the kernel's 15 bytes, and the lab's provider link is pa0.
    assert all(entry.interface == "pa0" for n in policy.nodes for entry in n.provider_addresses)


def test_seed_mapping() -> None:
    """decisions.md: Blue and Red RDIDs, VSIDs and MACs as the seed has them."""
    blue, red = "{11111111-2222-3333-4444-000000005010}", "{11111111-2222-3333-4444-000000005011}"
    macs = {"blue1": "00-00-00-00-00-11", "blue2": "00-00-00-00-00-12"}
    macs |= {"red1": "00-00-00-00-00-21", "red2": "00-00-00-00-00-22"}
    for config in SHIPPED:
        policy = load_config(config)
        assert [domain.rdid for domain in policy.routing_domains] == [blue, red]
        for record in policy.lookup_records:
            if record.vm in macs:
                assert str(record.mac) == macs[record.vm]
    assert load_config(CONFIGS / "single-host.yaml").rdid_of(5020) == red
    ip_rewrite = load_config(CONFIGS / "ip-rewrite.yaml")
    assert {record.rule for record in ip_rewrite.lookup_records} == {Rule.IP_REWRITE}
    assert len({record.pa for record in ip_rewrite.lookup_records}) == 4  # one PA per CA


@pytest.mark.parametrize("config", SHIPPED, ids=[path.name for path in SHIPPED])
def test_round_trip_keeps_the_file_as_written(config: Path) -> None:
    """What the API will rewrite: comments, quotes and layout all survive."""
    written = io.StringIO()
    new_yaml().dump(read_document(config), written)
    assert written.getvalue() == config.read_text()


def _write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return config


def _issues(config: Path) -> tuple[ConfigIssue, ...]:
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    return caught.value.issues


DOMAINS = """\
routing_domains:
  - rdid: "{11111111-2222-3333-4444-000000005010}"
    virtual_subnets:
      - vsid: 5010
        prefixes: [10.10.10.0/24]
"""


def test_mac_written_as_twelve_digits_with_leading_zeros(tmp_path: Path) -> None:
    """YAML 1.2 reads 000000000011 as the int 11; the loader gives back its text."""
    config = _write(
        tmp_path,
        DOMAINS + "lookup_records:\n"
        "  - {vsid: 5010, ca: 10.10.10.11, mac: 000000000011, pa: 198.18.0.1, rule: nat}\n"
        "  - {vsid: 5010, ca: 10.10.10.12, mac: 000000000012, pa: 198.18.0.2, rule: nat}\n",
    )
    policy = load_config(config)
    assert [str(record.mac) for record in policy.lookup_records] == [
        "00-00-00-00-00-11",
        "00-00-00-00-00-12",
    ]


def test_leading_zeros_on_a_number_are_refused(tmp_path: Path) -> None:
    config = _write(tmp_path, DOMAINS.replace("vsid: 5010", "vsid: 05010"))
    (issue,) = _issues(config)
    assert (issue.path, issue.value, issue.line) == (
        "routing_domains[0].virtual_subnets[0].vsid",
        "05010",
        4,
    )
    assert "leading zeros" in issue.message


def test_to_plain_gives_plain_types() -> None:
    document = new_yaml().load(
        "a: {b: [1, 0x10, 007, 1.5, true, null, 'q', !!str 5]}\n? [x, y]\n: 2\n"
    )
    plain = to_plain(document)
    assert plain == {"a": {"b": [1, 16, "007", 1.5, True, None, "q", "5"]}, ("x", "y"): 2}
    assert type(plain) is dict and type(plain["a"]["b"]) is list
    assert all(type(item) in {int, str, float, bool, type(None)} for item in plain["a"]["b"])


def test_unquoted_guid_is_explained(tmp_path: Path) -> None:
    quoted = '"{11111111-2222-3333-4444-000000005010}"'
    config = _write(tmp_path, DOMAINS.replace(quoted, quoted.strip('"')))
    (issue,) = _issues(config)
    assert (issue.path, issue.line) == ("routing_domains[0].rdid", 2)
    assert "quote the GUID" in issue.message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    config = _write(tmp_path, DOMAINS + "lookup_records: [\n  {vsid: 5010\n")
    (issue,) = _issues(config)
    assert issue.file == str(config) and issue.line is not None and issue.line >= 6
    assert issue.message.startswith("not valid YAML")
    assert str(issue).startswith(f"{config}:{issue.line}: not valid YAML")


def test_duplicate_key_is_a_yaml_error(tmp_path: Path) -> None:
    config = _write(tmp_path, "revision: 1\nrevision: 2\n")
    (issue,) = _issues(config)
    assert issue.line == 2 and "duplicate key" in issue.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file holds no document"),
        ("# only a comment\n", "the file holds no document"),
        ("- 1\n- 2\n", "a policy document must be a mapping"),
        ("just text\n", "a policy document must be a mapping"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_not_a_policy_document(tmp_path: Path, text: str, message: str) -> None:
    (issue,) = _issues(_write(tmp_path, text))
    assert message in issue.message
    assert issue.line == (2 if "YAML" in message else 1)  # the "---" of a second document


def test_unreadable_files(tmp_path: Path) -> None:
    (issue,) = _issues(tmp_path / "missing.yaml")
    assert issue.file == str(tmp_path / "missing.yaml") and "cannot read" in issue.message
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"revision: \xff\xfe\n")
    (issue,) = _issues(binary)
    assert "cannot read" in issue.message


def test_issues_come_sorted_by_line(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        DOMAINS + "lookup_records:\n"
        "  - {vsid: 5099, ca: 10.10.10.11, mac: 00-00-00-00-00-11, pa: 198.18.0.1, rule: encap}\n"
        "nodes:\n"
        "  host1: {role: router}\n"
        "revison: 3\n",
    )
    issues = _issues(config)
    assert [(issue.line, issue.path) for issue in issues] == [
        (7, "lookup_records[0].vsid"),
        (9, "nodes.host1.role"),
        (10, "revison"),
    ]
    assert "did you mean 'revision'?" in issues[2].message


def test_line_of_falls_back_to_the_nearest_parent() -> None:
    document = new_yaml().load(DOMAINS + "nodes:\n  host-1:\n    role: host\n")
    assert line_of(document, "routing_domains[0].virtual_subnets[0].prefixes[0]") == 5
    assert line_of(document, "routing_domains[0].virtual_subnets[0].gateway") == 4
    assert line_of(document, "routing_domains[3].rdid") == 1
    assert line_of(document, "nodes.host-1.role") == 8
    assert line_of(document, 'nodes["host-1"].ports[0]') == 7
    assert line_of(document, "") == 1
