"""The one registry of entry kinds (gateway/control/kinds.py): the API's routes, its
OpenAPI document, the CLI's verbs and the diff's keys all come from it and agree,
with each other and with what the app and the CLI really serve; and a new kind is
one registry entry plus its model, nothing else touched."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio.from_thread
import httpx
import pytest
import typer
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.routing import Route
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from gateway.cli import app as nvgw
from gateway.cli import verbs
from gateway.control import load_config, new_yaml
from gateway.control.api import build_api
from gateway.control.diff import diff
from gateway.control.edits import Exists, add, remove
from gateway.control.entries import listing
from gateway.control.kinds import (
    GATEWAY_DOMAINS,
    GATEWAY_ROUTES,
    KINDS,
    Kind,
    Option,
    children,
    schema,
    served,
    used_models,
    walk,
)
from gateway.control.store import PolicyStore
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy
from tests._inprocess_api import cli_talks_to

from ._gateway_config import RED, gateway_config, nat_gateway_text
from ._node import host1_prepare
from ._stores import seeded

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FIXED_ROUTES = {
    "/v1/health",
    "/v1/openapi.json",
    "/v1/policy",
    "/v1/counters",
    "/v1/nat/sessions",
    "/v1/tunnels/state",
    "/v1/migrate",
    "/v1/trace",
}
VERBS = {"add", "get", "remove"}
COMMON_OPTIONS = {"--json", "--api", "--url", "--token-file", "--api-ca", "--if-revision"}
EMPTY = load_policy({"routing_domains": [], "lookup_records": [], "customer_routes": []})


@pytest.fixture
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as running:
        yield running


def host1_api(
    tmp_path: Path, portal: anyio.from_thread.BlockingPortal, kinds: Sequence[Kind]
) -> Starlette:
    """host1's API over a database seeded from the two-hosts config (``each_store``'s),
    serving ``kinds``."""
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)

    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = portal.call(seeded, config, host1_prepare(), swap)
    return build_api(store, "host1", dict, kinds)


def cli(kinds: Sequence[Kind]) -> typer.Typer:
    """An nvgw with the verbs of ``kinds`` only, registered as the CLI does."""
    app = typer.Typer()
    app.callback()(lambda: None)  # a group even with one verb
    verbs.register(app, kinds)
    return app


def commands_of(app: typer.Typer) -> TyperGroup:
    """The commands the CLI really has, as its parser sees them."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    return command


def options(command: Any) -> dict[str, TyperOption]:
    """A command's options by their flag, without those every verb has."""
    found = {p.opts[0]: p for p in command.params if isinstance(p, TyperOption)}
    return {flag: option for flag, option in found.items() if flag not in COMMON_OPTIONS}


def flag(kind: Kind, field: str) -> str:
    return "--" + (kind.options[field].flag or field).replace("_", "-")


def check_agreement(
    kinds: Sequence[Kind],
    app: Starlette,
    portal: anyio.from_thread.BlockingPortal,
    commands: TyperGroup,
) -> None:
    """What the registry says each served kind is, against what is really served:
    the app's routes, its OpenAPI document, and the CLI's commands and options."""
    resources = {f"/v1/{kind.name}": kind for kind in served(kinds)}
    routes = {(r.path, m) for r in app.routes if isinstance(r, Route) for m in r.methods or ()}
    assert {(path, m) for path, m in routes if path not in FIXED_ROUTES} == {
        (path, method) for path in resources for method in ("GET", "HEAD", "POST", "DELETE")
    }
    document = portal.call(_openapi, app)
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert set(paths) - FIXED_ROUTES == set(resources)
    models = used_models(resources.values())
    assert set(schemas) == {kind.name for kind in resources.values()} | set(models)
    # every $ref resolves: a routing domain's subnets and a served domain's TAPs too
    referred = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    assert {"VirtualSubnet"} <= set(referred) <= set(schemas)
    groups = {
        name: command
        for name, command in commands.commands.items()
        if isinstance(command, TyperGroup) and set(command.commands) >= VERBS
    }
    assert set(groups) == {kind.verb for kind in resources.values()}
    for path, kind in resources.items():
        assert schemas[kind.name] == schema(kind)
        assert [p["name"] for p in paths[path]["get"]["parameters"]] == list(kind.filters)
        deletes = [p["name"] for p in paths[path]["delete"]["parameters"]]
        assert deletes == [*kind.filters, "If-Match"]
        group = groups[kind.verb]
        # get and remove take the API's filters, add takes every field of an entry
        for verb in ("get", "remove"):
            assert set(options(group.commands[verb])) == {flag(kind, f) for f in kind.filters}
        nested = {child.section for child in children(kind, kinds)}
        entry = set(schemas[kind.name]["properties"]) - nested
        add_options = options(group.commands["add"])  # and a batch's, every kind's
        assert set(add_options) == {flag(kind, field) for field in entry} | {"--from", "--quiet"}
        required = {*kind.names, *schemas[kind.name].get("required", ())} - nested
        needed = {f for f in required if kind.options[f].default is None}
        said = {f for f, o in add_options.items() if "Required (unless --from)" in (o.help or "")}
        assert said == {flag(kind, f) for f in needed}  # add checks them: --from gives them


async def _openapi(app: Starlette) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        return (await client.get("/v1/openapi.json")).json()


@pytest.mark.usefixtures("each_store")
def test_the_api_the_openapi_document_and_the_cli_serve_what_the_registry_says(
    tmp_path: Path, portal: anyio.from_thread.BlockingPortal
) -> None:
    check_agreement(KINDS, host1_api(tmp_path, portal, KINDS), portal, commands_of(nvgw))


CONFIG_TEXTS = {path.name: path.read_text() for path in sorted(CONFIGS.glob("*.yaml"))}
GATEWAY_TEXT = nat_gateway_text()  # a config with every kind of entry


@pytest.mark.parametrize(
    "text", [*CONFIG_TEXTS.values(), GATEWAY_TEXT], ids=[*CONFIG_TEXTS, "gateway"]
)
def test_the_diff_keys_entries_as_the_api_lists_them(tmp_path: Path, text: str) -> None:
    """Every entry's diff key is its registry key over its API listing (what an admin
    sees with ``get``), unique within its kind; every kind shows in the diff (a
    gateway's served domains, TAPs and routes in a config that has one)."""
    policy = load_config(gateway_config(tmp_path, text))
    added = [change for change in diff(EMPTY, policy).changes]
    assert all(change.kind == "+" for change in added)
    for kind in KINDS:
        keys = [change.key for change in added if change.what == kind.what]
        assert len(keys) == len(set(keys)) == len(list(walk(policy, kind))), kind.name
        if kind.api:
            listed = [kind.key.format_map(item) for item in listing(policy, kind)]
            assert sorted(listed) == keys
    if text == GATEWAY_TEXT:
        assert {change.what for change in added} == {kind.what for kind in KINDS}
    assert [change.what for change in added] == sorted(
        (change.what for change in added), key=[kind.what for kind in KINDS].index
    )


# ---------------------------------------------------------------- a kind of one's own


class Widget(BaseModel):
    """A kind nvgw does not have: one registry entry away from every interface."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    size: int
    tags: tuple[str, ...] = ()
    color: str | None = None


WIDGETS = Kind(
    "widgets",
    "widget",
    Widget,
    section="widgets",
    key="{name}",
    filters=("name", "color"),
    options={
        "name": Option("Its name."),
        "size": Option("How big it is."),
        "tags": Option("A tag (repeat for more).", flag="tag"),
        "color": Option("Its colour.", default="red"),
    },
)
WITH_WIDGETS = (*KINDS, WIDGETS)


def with_widgets(policy: Policy, *widgets: Widget) -> SimpleNamespace:
    """A policy that has widgets (``Policy`` itself would need the new model's field)."""
    return SimpleNamespace(
        **{f.name: getattr(policy, f.name) for f in fields(Policy) if f.init}, widgets=widgets
    )


@pytest.mark.usefixtures("each_store")
def test_a_new_kind_is_served_listed_diffed_and_edited_from_its_registry_entry(
    tmp_path: Path, portal: anyio.from_thread.BlockingPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = host1_api(tmp_path, portal, WITH_WIDGETS)
    widgets_cli = cli(WITH_WIDGETS)
    check_agreement(WITH_WIDGETS, app, portal, commands_of(widgets_cli))
    assert "widget" not in commands_of(cli(KINDS)).commands

    # the CLI's verb reaches the API's route, whose edit puts the entry in the document
    # where the registry says: the loader, which has no widgets, names it there
    with cli_talks_to(app, portal, monkeypatch):
        added = CliRunner().invoke(widgets_cli, ["widget", "add", "--name", "w1", "--size", "3"])
    assert added.exit_code == 1
    assert "widgets = " in added.output and "unknown key" in added.output
    usage = CliRunner().invoke(widgets_cli, ["widget", "add", "--help"], terminal_width=100)
    assert "--tag" in usage.output and "[default: red]" in usage.output

    # listing and diff read it from a policy that has it
    two_hosts = load_config(CONFIGS / "two-hosts.yaml")
    old = with_widgets(two_hosts, Widget(name="w1", size=1), Widget(name="w3", size=1))
    new = with_widgets(two_hosts, Widget(name="w1", size=2, tags=("x",)), Widget(name="w2", size=1))
    assert listing(new, WIDGETS, WITH_WIDGETS) == [
        {"name": "w1", "size": 2, "tags": ["x"]},
        {"name": "w2", "size": 1, "tags": []},
    ]
    assert [str(c) for c in diff(old, new, WITH_WIDGETS).changes] == [
        "- widget w3",
        "+ widget w2",
        "~ widget w1: size 1 -> 2, tags () -> ('x',)",
    ]

    # edits find, add and remove it in a document
    document = new_yaml().load("widgets: [{name: w1, size: 1}]\n")
    add(WIDGETS, {"name": "w2", "size": 2}, WITH_WIDGETS)(document)
    assert [w["name"] for w in document["widgets"]] == ["w1", "w2"]
    assert remove(WIDGETS, {"name": "w1"})(document) == [{"name": "w1", "size": 1}]


# Kinds nested two deep: a gateway's routes sit under a node's served routing domain
# (nodes.gw.routing_domains.blue.routes, decisions.md), which sits in a mapping keyed
# by the domain's name or RDID, a key its model does not hold.
GATEWAY = """\
nodes:
  gw:
    role: gateway
    routing_domains:
      blue:
        routes:
          - {destination: 172.16.0.0/24, next_hop: tap:gw-blue}
      red: {}
"""


def test_an_entry_nested_two_deep_is_added_and_removed_under_its_parents(
    tmp_path: Path,
) -> None:
    document = new_yaml().load(GATEWAY)
    route = {"node": "gw", "routing_domain": "red", "destination": "0.0.0.0/0"}
    add(GATEWAY_ROUTES, {**route, "next_hop": "nat"})(document)
    red = document["nodes"]["gw"]["routing_domains"]["red"]
    assert red["routes"] == [{"destination": "0.0.0.0/0", "next_hop": "nat"}]
    removed = remove(GATEWAY_ROUTES, {"destination": "172.16.0.0/24"})(document)
    assert removed == [
        {
            "node": "gw",
            "routing_domain": "blue",
            "destination": "172.16.0.0/24",
            "next_hop": "tap:gw-blue",
        }
    ]
    with pytest.raises(ConfigError) as refused:
        add(GATEWAY_ROUTES, {**route, "routing_domain": "green"})(document)
    [issue] = refused.value.issues
    assert issue.message == "no such routing_domain: add it first (known: blue, red)"
    # the same walk over the objects of a policy, where the served domains are a
    # mapping too: each entry is named by the node and the key it sits under
    policy = load_config(gateway_config(tmp_path))
    domains = [names for names, _ in walk(policy, GATEWAY_DOMAINS)]
    assert domains == [{"node": "gw", "routing_domain": key} for key in ("blue", RED)]
    routes = [(names, str(route.destination)) for names, route in walk(policy, GATEWAY_ROUTES)]
    assert routes == [
        ({"node": "gw", "routing_domain": "blue"}, "172.16.0.0/24"),
        ({"node": "gw", "routing_domain": "blue"}, "172.16.50.0/24"),
        ({"node": "gw", "routing_domain": RED}, "172.16.0.0/24"),
    ]


def test_a_keyed_entry_goes_under_its_key_and_never_replaces_one() -> None:
    """A served domain's key is a mapping key in the document: added there (its
    nested kinds empty), never over one that exists, and removed by it."""
    document = new_yaml().load(GATEWAY)
    add(GATEWAY_DOMAINS, {"node": "gw", "routing_domain": "green"})(document)
    served = document["nodes"]["gw"]["routing_domains"]
    assert served["green"] == {"taps": [], "routes": [], "port_forwards": []}
    with pytest.raises(Exists) as exists:
        add(GATEWAY_DOMAINS, {"node": "gw", "routing_domain": "blue"})(document)
    assert str(exists.value) == "gateway routing domain gw/blue exists already: remove it first"
    assert len(served["blue"]["routes"]) == 1  # untouched
    for key in (None, ["blue"], 7):
        with pytest.raises(ConfigError) as refused:
            add(GATEWAY_DOMAINS, {"node": "gw", "routing_domain": key})(document)
        assert refused.value.issues[0].path == "routing_domain"
    assert remove(GATEWAY_DOMAINS, {"routing_domain": "red"})(document) == [
        {"node": "gw", "routing_domain": "red"}
    ]
    assert list(served) == ["blue", "green"]


def test_a_served_domain_is_named_in_any_case_as_the_loader_names_it() -> None:
    """The loader matches a ``routing_domains`` key to its domain in any case, so a
    filter or a parent reference does too: ``--routing-domain BLUE`` finds ``blue``."""
    document = new_yaml().load(GATEWAY)
    route = {"node": "gw", "routing_domain": "RED", "destination": "0.0.0.0/0"}
    add(GATEWAY_ROUTES, {**route, "next_hop": "tap:gw-red"})(document)
    red = document["nodes"]["gw"]["routing_domains"]["red"]
    assert red["routes"] == [{"destination": "0.0.0.0/0", "next_hop": "tap:gw-red"}]
    removed = remove(GATEWAY_ROUTES, {"routing_domain": "Blue"})(document)
    assert [entry["routing_domain"] for entry in removed] == ["blue"]
    with pytest.raises(Exists):
        add(GATEWAY_DOMAINS, {"node": "gw", "routing_domain": "BLUE"})(document)
