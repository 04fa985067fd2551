"""``nvgw import-hnv --apply``: the import goes to the store as one change (as ``nvgw
apply``), straight to ``--store`` or through a daemon's API; a ``file:`` store
refuses it with its read-only message. On SQLite and etcd."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control import load_config
from tests.test_cli import verbs_talk_to_host1

from ._stores import held, seed, url
from .test_hnv_import import CONFIGS, lab3_arguments, unnamed

on_both = pytest.mark.usefixtures("each_store")  # the tests that reach a database store


def imported() -> object:
    """What the lab-3 exports import as: two-hosts without its VMs' names."""
    return unnamed(load_config(CONFIGS / "two-hosts.yaml"))


@on_both
def test_apply_to_an_empty_store_seeds_it(tmp_path: Path, config: Path) -> None:
    arguments = [*lab3_arguments(tmp_path), "--apply", "--store", url(config)]
    result = CliRunner().invoke(app, arguments, prog_name="nvgw")
    assert result.exit_code == 0, result.output
    assert "applied to " in result.stdout and "policy revision 0" in result.stdout
    assert held(config).lookup_records == imported().lookup_records  # type: ignore[attr-defined]


@on_both
def test_apply_makes_a_store_equal_in_one_revision_and_writes_the_yaml_too(
    tmp_path: Path, config: Path
) -> None:
    seed(config)  # two-hosts, its VMs named: the import differs by the names
    output = tmp_path / "imported.yaml"
    arguments = [*lab3_arguments(tmp_path), "--apply", "--store", url(config), "-o", str(output)]
    result = CliRunner().invoke(app, arguments, prog_name="nvgw")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("policy revision 1\n")
    after = held(config)
    assert after.revision == 1 and after.lookup_records == imported().lookup_records  # type: ignore[attr-defined]
    assert load_config(output) == imported()


@on_both
def test_apply_through_the_api(tmp_path: Path, config: Path, monkeypatch) -> None:
    with verbs_talk_to_host1(config, monkeypatch):
        result = CliRunner().invoke(app, [*lab3_arguments(tmp_path), "--apply"], prog_name="nvgw")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("policy revision 1\n")
    assert held(config).lookup_records == imported().lookup_records  # type: ignore[attr-defined]


def test_a_file_store_refuses_it_and_nothing_changes(tmp_path: Path, config: Path) -> None:
    yaml = tmp_path / "gitops.yaml"
    shutil.copyfile(config, yaml)
    before = yaml.read_bytes()
    arguments = [*lab3_arguments(tmp_path), "--apply", "--store", f"file:{yaml}"]
    result = CliRunner().invoke(app, arguments, prog_name="nvgw")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"nvgw import-hnv: the policy is read from file:{yaml}")
    assert "run the daemon with --store sqlite:PATH" in result.stderr
    assert yaml.read_bytes() == before


def test_store_without_apply_is_a_usage_error(tmp_path: Path, config: Path) -> None:
    arguments = [*lab3_arguments(tmp_path), "--store", url(config)]
    result = CliRunner().invoke(app, arguments, prog_name="nvgw")
    assert result.exit_code == 2 and "add --apply" in result.output
