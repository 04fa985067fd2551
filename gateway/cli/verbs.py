"""The admin's verbs against a running daemon: ``nvgw lookup-record add|get|remove``
and its siblings, named and filtered like the HNV cmdlets, and the gateway's own
(``nvgw gateway-tap``, ``nvgw gateway-route``), named and filtered like its config.

Every kind the API serves shares three verbs, so the commands are built from the
registry of kinds (``gateway/control/kinds.py``) rather than written out per kind:
``add`` takes every field (the required ones must be given), or ``--from FILE.jsonl``
for a batch in one revision (``batch_input.py``); ``get`` and ``remove`` take the
kind's filters, the same the API takes.
Every command also takes where the API is (``--api``, or ``--url`` with
``--token-file``, and ``--api-ca`` to trust an https URL's certificate), ``--if-revision``
for changes and ``--json`` for scripts.
Exit status: 0 done, 1 refused or unreachable (with every reason), 2 bad usage.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gateway.control import (
    DEFAULT_SOCKET,
    KINDS,
    ApiClient,
    ApiError,
    ApiUnreachable,
    Kind,
    read_token,
    schema,
    served,
)

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Field:
    """One key of an entry, as a command-line option (from the kind's registry entry:
    its ``Option``, and its type and whether ``add`` needs it from the entry's schema)."""

    key: str  # the option: --prefix
    kind: type  # int or str
    help: str
    required: bool  # in ``add``
    default: Any  # in ``add``, when not required
    many: bool  # repeatable: --prefix A --prefix B
    mapping: bool  # an object, written in YAML's flow style: --nat '{log: true}'
    filter: bool  # also an option of ``get`` and ``remove``
    body: str  # its key in the entry (prefixes: [A, B])

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")


def _fields_of(kind: Kind) -> list[Field]:
    """The options of ``nvgw KIND add``, in the registry's order."""
    entry = schema(kind)
    required = {*kind.names, *entry.get("required", ())}
    fields = []
    for name, option in kind.options.items():
        json_type = _json_type(entry["properties"][name])
        fields.append(
            Field(
                key=option.flag or name,
                kind=int if json_type == "integer" else str,
                help=option.help,
                required=name in required and option.default is None,
                default=option.default,
                many=json_type == "array",
                mapping=json_type == "object",
                filter=name in kind.filters,
                body=name,
            )
        )
    return fields


def _json_type(property_schema: dict[str, Any]) -> str:
    """A property's JSON type; for an optional one (``anyOf`` it and null), its own."""
    if "type" in property_schema:
        return str(property_schema["type"])
    if "$ref" in property_schema:
        return "object"  # a model of its own
    [own] = [_json_type(s) for s in property_schema["anyOf"] if s.get("type") != "null"]
    return own


# ---------------------------------------------------------------- talking to the API


@dataclass(frozen=True)
class Target:
    api: Path
    url: str | None
    token_file: Path | None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if self.ca is not None and not (self.url or "").startswith("https://"):
            raise typer.BadParameter("--api-ca is for an https:// --url")

    def client(self) -> ApiClient:
        token = read_token(self.token_file) if self.token_file else None
        return ApiClient(self.api, self.url, token, self.ca)


ApiOpt = Annotated[Path, typer.Option(help="The daemon's API socket.", envvar="NVGW_API")]
UrlOpt = Annotated[
    str | None, typer.Option(help="The API over TCP instead: https://HOST:PORT (or http://).")
]
TokenOpt = Annotated[
    Path | None, typer.Option(help="Bearer token for --url: a file's first line (mode 0600).")
]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        help="Trust --url's certificate if this CA (PEM) signed it.", envvar="NVGW_API_CA"
    ),
]
RevisionOpt = Annotated[
    int | None, typer.Option(help="Apply only if the policy is at this revision.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _target_params() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("api", keyword, default=DEFAULT_SOCKET, annotation=ApiOpt),
        inspect.Parameter("url", keyword, default=None, annotation=UrlOpt),
        inspect.Parameter("token_file", keyword, default=None, annotation=TokenOpt),
        inspect.Parameter("api_ca", keyword, default=None, annotation=CaOpt),
    ]


def _param(name: str, kind: Any, default: Any, help: str) -> inspect.Parameter:
    option = typer.Option("--" + name.replace("_", "-"), help=help)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


@contextmanager
def talking(target: Target) -> Iterator[ApiClient]:
    """The client, with every failure printed as the user needs it and exit 1."""
    try:
        with target.client() as client:
            yield client
    except ApiError as error:
        errors.print(f"nvgw: {error}", markup=False)
        for issue in error.issues:
            value = f" = {issue['value']}" if "value" in issue else ""
            errors.print(f"  {issue['path']}{value}: {issue['message']}", markup=False)
        raise typer.Exit(1) from None
    except (ApiUnreachable, OSError) as error:
        errors.print(f"nvgw: {error}", markup=False)
        raise typer.Exit(1) from None


def show(items: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(items))
        return
    columns = list(dict.fromkeys(key for item in items for key in item))
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")  # an RDID is no use cut short
    for item in items:
        table.add_row(*(_cell(item.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


# ---------------------------------------------------------------- building the commands


def _command(function: Callable[..., None], params: list[inspect.Parameter], doc: str) -> Any:
    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in params}
    function.__doc__ = doc
    return function


def _json_param() -> inspect.Parameter:
    return inspect.Parameter(
        "json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt
    )


def _field_param(field: Field, *, for_add: bool) -> inspect.Parameter:
    """An option of ``add`` (``get``, ``remove``: a filter). A field ``add`` needs
    is checked by ``add`` itself, for ``--from`` gives every field instead."""
    kind: Any = list[field.kind] if field.many else field.kind
    default = field.default if for_add else None
    kind = kind | None if default is None else kind
    help = f"{field.help} Required (unless --from)." if for_add and field.required else field.help
    return _param(field.key, kind, default, help)


def _revision_param() -> inspect.Parameter:
    return inspect.Parameter(
        "if_revision", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RevisionOpt
    )


def register(app: typer.Typer, kinds: Sequence[Kind] = KINDS) -> None:
    """Add ``nvgw KIND add|get|remove`` for every kind of entry the API serves."""
    for kind in served(kinds):
        fields = _fields_of(kind)
        group = typer.Typer(
            help=f"The {kind.name.replace('-', ' ')} of the live policy: add, get, remove."
        )
        group.command("add")(_add(kind, fields))
        group.command("get")(_get(kind.verb, kind.name, fields))
        group.command("remove")(_remove(kind.verb, kind.name, fields))
        app.add_typer(group, name=kind.verb, no_args_is_help=True)


def _split(values: dict[str, Any]) -> tuple[Target, dict[str, Any]]:
    target = Target(
        values.pop("api"), values.pop("url"), values.pop("token_file"), values.pop("api_ca")
    )
    return target, values


def _add(kind: Kind, fields: list[Field]) -> Any:
    name, resource = kind.verb, kind.name

    def add(**values: Any) -> None:
        target, values = _split(values)
        if_revision, as_json = values.pop("if_revision"), values.pop("json_out")
        source, quiet = values.pop("from_"), values.pop("quiet")
        if source is not None:
            from gateway.cli.batch_input import add_batch

            add_batch(kind, fields, values, source, quiet, target, if_revision, as_json)
            return
        missing = [f.option for f in fields if f.required and values[f.key] is None]
        if missing:
            raise typer.BadParameter(f"Missing option {', '.join(missing)} (or --from FILE)")
        body = {
            f.body: _mapping(f, values[f.key]) if f.mapping else values[f.key]
            for f in fields
            if values[f.key] is not None
        }
        with talking(target) as api:
            answer = api.request("POST", f"/v1/{resource}", json=body, if_revision=if_revision)
        if as_json:
            console.print_json(json.dumps(answer))
        else:
            console.print(f"added {name} (policy revision {answer['revision']})")

    params = [_field_param(f, for_add=True) for f in fields]
    params += [
        inspect.Parameter(
            "from_",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Option("--from", metavar="FILE", help=FROM_HELP.format(what=name)),
            ],
        ),
        _param("quiet", bool, False, "No progress bar (it is off when stdout is no terminal)."),
    ]
    params += [_revision_param(), _json_param(), *_target_params()]
    return _command(add, params, f"Add a {name}, or a batch of them (--from).")


FROM_HELP = (
    "Add every {what} of this file instead, one JSON object per line (- for stdin), "
    "as one revision: all or nothing."
)


def _mapping(field: Field, text: str) -> Any:
    """An object option's YAML text, read (the API judges what it holds)."""
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as error:
        raise typer.BadParameter(f"not YAML: {error}", param_hint=field.option) from None


def _get(name: str, resource: str, fields: list[Field]) -> Any:
    def get(**values: Any) -> None:
        target, values = _split(values)
        as_json = values.pop("json_out")
        with talking(target) as api:
            answer = api.request("GET", f"/v1/{resource}", params=values)
        show(answer["items"], f"{resource} (policy revision {answer['revision']})", as_json)

    filters = [f for f in fields if f.filter]
    params = [_field_param(f, for_add=False) for f in filters]
    params += [_json_param(), *_target_params()]
    return _command(get, params, f"List the {name}s matching every filter given.")


def _remove(name: str, resource: str, fields: list[Field]) -> Any:
    def remove(**values: Any) -> None:
        target, values = _split(values)
        if_revision, as_json = values.pop("if_revision"), values.pop("json_out")
        filters = {key: value for key, value in values.items() if value is not None}
        if not filters:
            raise typer.BadParameter(f"name what to remove with at least one filter: {options}")
        with talking(target) as api:
            answer = api.request(
                "DELETE", f"/v1/{resource}", params=filters, if_revision=if_revision
            )
        removed = answer["removed"]
        title = f"removed {len(removed)} of the {resource} (policy revision {answer['revision']})"
        show(removed, title, as_json)

    filters = [f for f in fields if f.filter]
    options = ", ".join(f.option for f in filters)
    params = [_field_param(f, for_add=False) for f in filters]
    params += [_revision_param(), _json_param(), *_target_params()]
    return _command(remove, params, f"Remove the {name}s matching every filter given.")


# ---------------------------------------------------------------- whole-policy verbs


def migrate(
    vm: Annotated[str, typer.Option(help="The VM to move (its records' vm: name).")],
    pa: Annotated[str, typer.Option(help="The PA of the host it now runs on.")],
    if_revision: RevisionOpt = None,
    json_out: JsonOpt = False,
    api: ApiOpt = DEFAULT_SOCKET,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
    api_ca: CaOpt = None,
) -> None:
    """Live-migrate a VM: its records take the PA, its port moves to that PA's node.

    One change, so no moment exists where the records and the port disagree."""
    with talking(Target(api, url, token_file, api_ca)) as client:
        answer = client.request(
            "POST", "/v1/migrate", json={"vm": vm, "pa": pa}, if_revision=if_revision
        )
    if json_out:
        console.print_json(json.dumps(answer))
        return
    moved = answer["migrated"]
    console.print(
        f"{vm} now at PA {pa} on node {moved['node']} (policy revision {answer['revision']})"
    )


def apply(
    file: Annotated[Path, typer.Argument(help="The whole policy to run (a config file).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would change and break.")
    ] = False,
    if_revision: RevisionOpt = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Apply to this store directly (sqlite:PATH or etcd://HOST:PORT/PREFIX), "
            "not through a daemon's API."
        ),
    ] = None,
    api: ApiOpt = DEFAULT_SOCKET,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
    api_ca: CaOpt = None,
) -> None:
    """Make the policy equal to FILE's, removals included, in one revision that
    writes only what differs; --dry-run shows what would change.

    Through the daemon's API, or with --store straight to a database (an empty one
    is seeded). Exit 0: no difference (dry run) or applied; 1: differences (dry run)
    or refused; 2: FILE is invalid."""
    from gateway.control import load_config
    from gateway.errors import ConfigError
    from gateway.policy import load_policy

    try:
        new = load_config(file)
    except ConfigError as error:
        for issue in error.issues:
            errors.print(str(issue), markup=False)
        raise typer.Exit(2) from None
    if store is not None:
        from gateway.cli.store_verbs import apply_to_store

        apply_to_store(file, store, new, dry_run, if_revision)
        return
    with talking(Target(api, url, token_file, api_ca)) as client:
        live = client.request("GET", "/v1/policy")
        if not dry_run:
            answer = client.request(
                "PUT", "/v1/policy", content=file.read_bytes(), if_revision=if_revision
            )
    against = f"the live policy (revision {live['revision']})"
    show_diff(load_policy(live["policy"]), new, dry_run, against)
    console.print(f"applied: policy revision {answer['revision']}")


def show_diff(old: Any, new: Any, dry_run: bool, against: str) -> None:
    """What ``nvgw apply`` changes and breaks; with ``dry_run``, the verdict and the
    exit (0: no difference, 1: differences)."""
    from gateway.control import diff

    result = diff(old, new)
    for change in result.changes:
        console.print(str(change), markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    if dry_run:
        verdict = "would change" if result.changes else "no difference"
        console.print(f"{verdict} against {against}")
        raise typer.Exit(1 if result.changes else 0)


def trace_live(target: Target, body: dict[str, Any]) -> dict[str, Any]:
    """A trace against the daemon's running policy (``nvgw trace`` without --config)."""
    with talking(target) as client:
        return client.request("POST", "/v1/trace", json=body)
