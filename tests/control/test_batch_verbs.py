"""``nvgw KIND add --from FILE.jsonl``: the file checked line by line before anything
is sent, then one batch (one revision); the daemon's refusal printed by line; stdin
with ``-``. Against host1's API in process, on SQLite and etcd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.test_cli import verbs_talk_to_host1

from ._stores import held, state

pytestmark = pytest.mark.usefixtures("each_store")


@pytest.fixture
def host1(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with verbs_talk_to_host1(config, monkeypatch):
        yield config


def nvgw(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=stdin, prog_name="nvgw", terminal_width=100)


def jsonl(entries: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(entry) + "\n" for entry in entries)


def record(n: int) -> dict[str, Any]:
    """host2's VM n in Blue (no rule: add's default, encap, fills it in)."""
    return {"vsid": 5010, "ca": f"10.10.10.{20 + n}", "mac": f"02-00-00-00-00-{n:02x}",
            "pa": "198.18.0.2", "vm": f"vm{n}"}  # fmt: skip


def test_a_file_is_added_as_one_revision(host1: Path, tmp_path: Path) -> None:
    batch = tmp_path / "records.jsonl"
    batch.write_text(jsonl([record(n) for n in range(30)]) + "\n")  # a blank line is skipped
    added = nvgw("lookup-record", "add", "--from", str(batch))
    assert added.exit_code == 0, added.output
    assert added.output.endswith("\nadded 30 lookup-records (policy revision 1)\n")  # no bar
    policy = held(host1)
    assert policy.revision == 1
    assert {r.vm for r in policy.lookup_records} >= {f"vm{n}" for n in range(30)}
    assert all(r.rule.value == "encap" for r in policy.lookup_records)


def test_stdin_is_a_dash(host1: Path) -> None:
    added = nvgw("lookup-record", "add", "--from", "-", "--quiet", stdin=jsonl([record(1)]))
    assert added.exit_code == 0, added.output
    assert any(r.vm == "vm1" for r in held(host1).lookup_records)


def test_the_daemons_refusal_names_each_bad_line(host1: Path, tmp_path: Path) -> None:
    entries = [record(n) for n in range(5)]
    entries[2]["ca"] = "10.10.99.2"
    entries[3]["mac"] = "nope"
    batch = tmp_path / "records.jsonl"
    batch.write_text("\n" + jsonl(entries))  # line numbers count the blank first line
    before = state(host1)
    refused = nvgw("lookup-record", "add", "--from", str(batch))
    assert refused.exit_code == 1
    assert f"  {batch}:4: lookup_records[6].ca = 10.10.99.2: " in refused.output
    assert f"  {batch}:5: lookup_records[7].mac = nope: " in refused.output
    assert state(host1) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"vsid": 5010}\n{"vsid": 50\n', "records.jsonl:2: not JSON: "),
        ("", "records.jsonl: no lookup record in it (one JSON object per line)"),
        ("\n  \n", "records.jsonl: no lookup record in it"),
        ("[1, 2]\n", "records.jsonl:1: not a JSON object, one lookup record"),
        (
            '{"rdid": "{11111111-2222-3333-4444-000000005010}", "vsid": 5012, '
            '"prefixes": ["10.12.0.0/24"]}\n',
            "records.jsonl:1: a lookup record has no prefixes, rdid (its fields: ",
        ),
    ],
)
def test_what_the_cli_refuses_before_sending(
    host1: Path, tmp_path: Path, text: str, message: str
) -> None:
    batch = tmp_path / "records.jsonl"
    batch.write_text(text)
    before = state(host1)
    refused = nvgw("lookup-record", "add", "--from", str(batch))
    assert refused.exit_code == 1
    assert message in refused.output
    assert state(host1) == before


def test_from_is_every_kinds_and_excludes_the_fields(host1: Path, tmp_path: Path) -> None:
    subnets = tmp_path / "subnets.jsonl"
    blue = "{11111111-2222-3333-4444-000000005010}"
    subnets.write_text(jsonl([{"rdid": blue, "vsid": 5012, "prefixes": ["10.12.0.0/24"]}]))
    added = nvgw("virtual-subnet", "add", "--from", str(subnets))
    assert added.output.endswith("added 1 virtual-subnets (policy revision 1)\n")
    both = nvgw("virtual-subnet", "add", "--from", str(subnets), "--vsid", "7000")
    assert both.exit_code == 2 and "--from takes every field from the file" in both.output
    neither = nvgw("lookup-record", "add", "--vsid", "5010")
    assert neither.exit_code == 2 and "Missing option --ca, --mac, --pa" in neither.output


def test_the_bar_is_shown_on_a_terminal_unless_quiet(
    host1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal (rich's FORCE_COLOR makes one of the test's stdout) the bar reads,
    sends, then says "committing..."; --quiet shows none of it."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    batch = tmp_path / "records.jsonl"
    batch.write_text(jsonl([record(n) for n in range(3)]))
    shown = nvgw("lookup-record", "add", "--from", str(batch))
    assert shown.exit_code == 0, shown.output
    assert "committing..." in shown.output and "sending" in shown.output
    batch.write_text(jsonl([record(n) for n in range(3, 6)]))
    quiet = nvgw("lookup-record", "add", "--from", str(batch), "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "committing..." not in quiet.output and "sending" not in quiet.output
    assert held(host1).revision == 2
