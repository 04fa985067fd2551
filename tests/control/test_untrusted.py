"""The bounded readers of YAML and JSON: bombs, deep nesting, oversized files and
values Python will not build are each a ConfigError naming the source and the line,
whoever reads them (config files, Windows exports, the API in test_api.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control import load_config, policy_from_document
from gateway.control.hnv_import import read_export
from gateway.control.untrusted import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    parse_json,
    parse_yaml,
    read_bounded,
)
from gateway.errors import ConfigError, ConfigIssue

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def billion_laughs(levels: int = 7) -> str:
    """A YAML bomb: each level an anchored list of ten aliases of the one above, so
    ``levels`` levels stand for 10**levels leaves (10 million for 7) in 350 bytes."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def deep_flow_yaml(depth: int) -> str:
    return "revision: " + "[" * depth + "]" * depth + "\n"


def deep_block_yaml(depth: int) -> str:
    return "".join(" " * level + "k:\n" for level in range(depth))


def one_issue(error: pytest.ExceptionInfo[ConfigError]) -> ConfigIssue:
    [issue] = error.value.issues
    return issue


def test_the_bomb_is_small_and_refused_at_its_first_alias(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text.encode()) < 400
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    issue = one_issue(refused)
    assert (issue.file, issue.line) == (str(config), 2)
    assert "alias *a0" in issue.message and "write the entry out in full" in issue.message


def test_an_anchor_alone_is_harmless() -> None:
    assert parse_yaml("a: &x [1, 2]\n", "doc") == {"a": [1, 2]}


@pytest.mark.parametrize("shape", [deep_flow_yaml, deep_block_yaml], ids=["flow", "block"])
def test_yaml_nested_past_the_bound_is_refused_with_its_line(tmp_path: Path, shape) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text(shape(5000))
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    issue = one_issue(refused)
    assert issue.file == str(config) and f"nested deeper than {MAX_DEPTH}" in issue.message
    assert issue.line == (1 if shape is deep_flow_yaml else MAX_DEPTH + 1)
    parse_yaml(shape(MAX_DEPTH - 1), "doc")  # within the bound (flow adds its mapping): read


def test_json_nested_past_the_bound_is_refused_with_its_line() -> None:
    deep = "[\n" * 200_000 + "]" * 200_000
    with pytest.raises(ConfigError) as refused:
        parse_json(deep, "body")
    issue = one_issue(refused)
    assert issue.line == MAX_DEPTH + 1 and f"nested deeper than {MAX_DEPTH}" in issue.message
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "body") is not None
    # Brackets inside strings are text, escaped quotes included.
    text = json.dumps({"name": '\\"' + "[" * 1000, "x": [1]})
    assert parse_json(text, "body")["x"] == [1]


def test_a_deep_windows_export_is_a_refusal_naming_the_file(tmp_path: Path) -> None:
    export = tmp_path / "lr.json"
    export.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ConfigError) as refused:
        read_export(export)
    issue = one_issue(refused)
    assert issue.file == str(export) and "nested deeper" in issue.message
    result = CliRunner().invoke(
        app,
        ["import-hnv", "--lookup-records", str(export), "--node", "host1=198.18.0.1"],
        prog_name="nvgw",
    )
    assert result.exit_code == 1, result.output
    assert f"{export}:1: not JSON: nested deeper than {MAX_DEPTH} levels" in result.output


def test_a_file_past_the_size_bound_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError) as refused:
        load_config(huge)
    issue = one_issue(refused)
    assert issue.file == str(huge) and "larger than 32 MiB" in issue.message
    small = tmp_path / "small"
    small.write_bytes(b"12345")
    assert read_bounded(small, limit=5) == b"12345"
    with pytest.raises(ConfigError):
        read_bounded(small, limit=4)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("revision: 1\nlookup_records: " + "9" * 5000 + "\n", 2, "4300 digits"),
        ("revision: 1\nwhen: 2001-13-45\n", 2, "month must be in 1..12"),
        ("revision: 1\n? [1, [2]]\n: x\n", 2, "unhashable"),
        ("revision: !!int 0b\n", 1, "cannot read this value"),
    ],
    ids=["5000-digit int", "13th month", "unhashable key", "empty binary int"],
)
def test_values_python_will_not_build_are_refused_at_their_line(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_yaml(text, "config.yaml")
    issue = one_issue(refused)
    assert issue.line == line and reason in issue.message, issue
    assert "sys.set_int_max_str_digits" not in issue.message  # Python's hint, not ours


def test_a_number_json_will_not_build_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_json("[" + "9" * 5000 + "]", "body")
    assert "4300 digits" in one_issue(refused).message


def test_nvgw_check_says_what_is_wrong_with_a_bomb_or_a_deep_file(tmp_path: Path) -> None:
    bomb, deep = tmp_path / "bomb.yaml", tmp_path / "deep.yaml"
    bomb.write_text(billion_laughs())
    deep.write_text(deep_block_yaml(5000))
    result = CliRunner().invoke(app, ["check", str(bomb), str(deep)], prog_name="nvgw")
    assert result.exit_code == 1 and not isinstance(result.exception, RecursionError)
    assert f"{bomb}:2: not valid YAML: alias *a0" in result.output
    assert f"{deep}:{MAX_DEPTH + 1}: not valid YAML: nested deeper" in result.output


# Pieces of YAML that reach ruamel's less travelled paths: tags, merges, anchors,
# directives, and the scalars that look like numbers, dates or booleans.
YAML_PIECES = [
    "!!int ", "!!bool ", "!!float ", "!!timestamp ", "!!binary ", "!!omap ", "!!set ",
    "!!pairs ", "!!map ", "!!seq ", "!!str ", "!!null ", "!!merge ", "!x ", "!", "<<: ",
    "&a ", "*a", "? ", ": ", "- ", "[", "]", "{", "}", ",", "\n", "  ", "'", '"', "|", ">",
    "#", "0x", "0o", "0b", "1_", "2001-02-30", "12:30:00", "1e9", ".inf", "~", "true",
    "a", "%YAML 1.1\n", "---\n", "...\n", "\\", "\t", "\x00", "\ufeff", "@",
]  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=3), max_size=30))
def test_any_yaml_is_read_or_refused_never_raised(pieces: list[str]) -> None:
    """Through the whole path a config file takes: read, made plain, validated."""
    with contextlib.suppress(ConfigError):  # anything else fails the test
        policy_from_document(parse_yaml("".join(pieces), "fuzz.yaml"), "fuzz.yaml")


JSON_PIECES = ["[", "]", "{", "}", ",", ":", '"', "\\", "1", "-", "e", "9" * 40, "null", " "]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(JSON_PIECES) | st.text(max_size=2), max_size=40))
def test_any_json_is_read_or_refused_never_raised(pieces: list[str]) -> None:
    with contextlib.suppress(ConfigError):  # anything else fails the test
        parse_json("".join(pieces), "fuzz.json")


def test_every_shipped_config_reads_within_the_bounds() -> None:
    for config in sorted(CONFIGS.glob("*.yaml")):
        load_config(config)


def test_a_mapping_as_a_key_is_an_unknown_key_not_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "odd.yaml"
    config.write_text("revision: 1\n? {a: 1}\n: x\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    issue = one_issue(refused)
    assert issue.line == 1 and "unknown key" in issue.message
