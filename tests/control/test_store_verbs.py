"""The verbs that open a store directly: ``nvgw apply --store`` makes the database
equal to a file (seeding an empty one), touching only what differs, and ``nvgw
policy export`` writes it back as YAML that ``nvgw check`` takes; ``nvgw run``
picks its store from --store and --config, and refuses the ambiguous pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app, store_and_seed
from gateway.control import DEFAULT_STORE, load_config

from ._etcd import free_port
from ._stores import held, url

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
runner = CliRunner()


def nvgw(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), prog_name="nvgw", terminal_width=200)
    return result.exit_code, result.output


@pytest.mark.usefixtures("each_store")
def test_apply_seeds_an_empty_store_then_applies_only_the_difference(config: Path) -> None:
    code, out = nvgw("apply", "--store", url(config), str(config))
    assert code == 0, out
    assert f"applied to {url(config)}: policy revision 0" in out
    assert held(config) == load_config(config)
    code, out = nvgw("apply", "--dry-run", "--store", url(config), str(CONFIGS / "routing.yaml"))
    assert code == 1 and "+ virtual subnet 5012" in out and "would change" in out
    assert held(config).revision == 0
    code, out = nvgw("apply", "--store", url(config), str(CONFIGS / "routing.yaml"))
    assert code == 0 and "policy revision 1" in out, out
    routing = load_config(CONFIGS / "routing.yaml")
    assert held(config).virtual_subnets == routing.virtual_subnets
    code, out = nvgw("apply", "--store", url(config), "--if-revision", "0", str(config))
    assert code == 1 and "not 0" in out
    code, out = nvgw("apply", "--dry-run", "--store", url(config), str(CONFIGS / "routing.yaml"))
    assert code == 0 and "no difference" in out


@pytest.mark.usefixtures("each_store")
def test_export_writes_yaml_that_check_and_apply_take_back(config: Path, tmp_path: Path) -> None:
    assert nvgw("apply", "--store", url(config), str(CONFIGS / "routing.yaml"))[0] == 0
    exported = tmp_path / "exported.yaml"
    code, out = nvgw("policy", "export", "--store", url(config), "-o", str(exported))
    assert code == 0, out
    text = exported.read_text()
    assert text.startswith(f"# exported from {url(config)} at revision 0\nrevision: 0\n")
    assert load_config(exported) == held(config)
    code, out = nvgw("check", str(exported))
    assert code == 0 and "valid (revision 0)" in out
    code, out = nvgw("policy", "export", "--store", url(config))
    assert code == 0 and out == text


@pytest.mark.usefixtures("each_store")
def test_export_of_an_empty_store_says_how_to_fill_it(config: Path) -> None:
    code, out = nvgw("policy", "export", "--store", url(config))
    assert code == 1 and "holds no policy yet" in out and "nvgw apply" in out


def test_an_etcd_nothing_answers_at_is_a_message_naming_it(config: Path) -> None:
    store = f"etcd://127.0.0.1:{free_port()}/nvgw"  # a port nothing listens on now
    for verb in (("policy", "export"), ("apply",)):
        code, out = nvgw(*verb, "--store", store, *([str(config)] if verb == ("apply",) else []))
        said = " ".join(out.split())
        assert code == 1 and f"cannot reach etcd at {store}" in said, out


def test_a_file_store_is_read_only_for_apply(config: Path) -> None:
    code, out = nvgw("apply", "--store", f"file:{config}", str(CONFIGS / "routing.yaml"))
    assert code == 1 and "--store sqlite:PATH" in " ".join(out.split())
    assert load_config(config) == load_config(CONFIGS / "two-hosts.yaml")


@pytest.mark.parametrize(
    ("store", "config", "expected"),
    [
        (None, None, (DEFAULT_STORE, None)),
        (None, "c.yaml", (Path("c.yaml"), None)),  # as nvgw always ran: the file, read-only
        ("sqlite:/x/p.db", None, ("sqlite:/x/p.db", None)),
        ("sqlite:/x/p.db", "c.yaml", ("sqlite:/x/p.db", Path("c.yaml"))),  # a seed
        ("file:/x/c.yaml", None, ("file:/x/c.yaml", None)),
        ("etcd://127.0.0.1:2379/nvgw", "c.yaml", ("etcd://127.0.0.1:2379/nvgw", Path("c.yaml"))),
    ],
)
def test_run_reads_its_policy_from_the_store_and_seeds_it_from_the_config(
    store: str | None, config: str | None, expected: tuple[object, object]
) -> None:
    assert store_and_seed(store, None if config is None else Path(config)) == expected


@pytest.mark.parametrize(
    ("store", "config", "words"),
    [
        ("file:/x/c.yaml", "d.yaml", "a file: store is its own config"),
        ("etcd://127.0.0.1/nvgw", None, "etcd://HOST:PORT/PREFIX"),  # no port
        ("etcd://127.0.0.1:2379/", None, "etcd://HOST:PORT/PREFIX"),  # no prefix
        ("etcd:127.0.0.1:2379/nvgw", None, "etcd://HOST:PORT/PREFIX"),
        ("/x/p.db", None, "sqlite:PATH"),
    ],
)
def test_run_refuses_a_store_it_cannot_use(store: str, config: str | None, words: str) -> None:
    with pytest.raises(typer.BadParameter, match=words):
        store_and_seed(store, None if config is None else Path(config))
