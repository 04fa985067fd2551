"""``nvgw import-hnv``: a config file from a Windows HNV deployment's JSON exports.

The output goes to stdout (or ``--output``), so warnings and errors go to stderr:
a redirected import never mixes them into the YAML. Nothing is written unless the
whole import is valid, and ``--output`` is replaced atomically, its mode kept (a
symlink given there is written through, to the file it points to). ``--apply``
sends it to the store as ``nvgw apply`` does (one revision that writes only what
differs, removals included): through the daemon's API with a progress bar, or
straight to ``--store``; a ``file:`` store refuses it, naming the alternative.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from ruamel.yaml.comments import CommentedMap

from gateway.cli.batch_input import body_chunks, progress
from gateway.cli.store_verbs import apply_document
from gateway.cli.verbs import (
    ApiOpt,
    CaOpt,
    Target,
    TokenOpt,
    UrlOpt,
    console,
    talking,
)
from gateway.control import (
    DEFAULT_SOCKET,
    Export,
    NodeSpec,
    import_hnv,
    new_yaml,
    parse_nodes,
    policy_from_document,
    read_export,
    write_document,
)
from gateway.errors import ConfigError, ConfigIssue


def import_hnv_command(
    lookup_records: Annotated[
        list[Path],
        typer.Option(
            "--lookup-records",
            metavar="FILE",
            help="Get-NetVirtualizationLookupRecord | ConvertTo-Json output; repeat per "
            "host: what several hosts list alike is imported once.",
        ),
    ],
    customer_routes: Annotated[
        list[Path] | None,
        typer.Option(
            "--customer-routes",
            metavar="FILE",
            help="Get-NetVirtualizationCustomerRoute | ConvertTo-Json output: its on-link "
            "routes give the virtual subnets their prefixes. Repeat per host.",
        ),
    ] = None,
    provider_addresses: Annotated[
        list[Path] | None,
        typer.Option(
            "--provider-addresses",
            metavar="FILE",
            help="Get-NetVirtualizationProviderAddress | ConvertTo-Json output: prefix "
            "lengths and VLANs of the nodes' PAs. Repeat per host.",
        ),
    ] = None,
    nodes: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            metavar="NAME=PA[,PA]",
            help="A node and its provider addresses (PA or PA/LENGTH); repeat per node. "
            "It gets a port for each record whose PA it owns.",
        ),
    ] = None,
    interface: Annotated[
        str, typer.Option("--interface", help="The nodes' provider interface.")
    ] = "pa0",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write here instead of stdout."),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Also make the policy equal to the import, in one revision (as nvgw "
            "apply): through the daemon's API, or --store.",
        ),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            help="With --apply: this store directly (sqlite:PATH or etcd://HOST:PORT/PREFIX), "
            "not through a daemon's API."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    api: ApiOpt = DEFAULT_SOCKET,
    url: UrlOpt = None,
    token_file: TokenOpt = None,
    api_ca: CaOpt = None,
) -> None:
    """Build a config file from Windows HNV exports (ConvertTo-Json output); with
    --apply, send it to the store as one change (the YAML only with --output)."""
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        document, warnings = _import(
            lookup_records, customer_routes or [], provider_addresses or [], nodes or [], interface
        )
    except ConfigError as error:
        for issue in error.issues:
            stderr.print(str(issue), markup=False)
        raise typer.Exit(1) from None
    for warning in warnings:
        stderr.print(f"warning: {warning}", markup=False)
    if store is not None and not apply:
        raise typer.BadParameter("--store is where --apply applies the import: add --apply")
    if output is None and not apply:
        new_yaml().dump(document, sys.stdout)
        return
    if output is not None:
        _write(output, document, stderr)
    if apply:
        _apply(document, store, quiet, Target(api, url, token_file, api_ca))


def _apply(document: CommentedMap, store: str | None, quiet: bool, target: Target) -> None:
    """The import as one change: the store's, or the daemon's through its API
    (the YAML sent with a progress bar, then "committing..." until it answers)."""
    new = policy_from_document(document, "the import")
    if store is not None:
        apply_document("the import", document, new, store, "import-hnv")
        return
    text = io.StringIO()
    new_yaml().dump(document, text)
    with progress(quiet) as shown, talking(target) as client:
        body = text.getvalue().encode("utf-8")
        answer = client.request(
            "PUT", "/v1/policy", content=body_chunks(body, shown), size=len(body)
        )
    console.print(f"applied to {client.where}: policy revision {answer['revision']}")


def _write(output: Path, document: CommentedMap, stderr: Console) -> None:
    try:
        write_document(output.resolve(), document)  # through a link, as a shell's > would
    except OSError as error:
        message = f"nvgw import-hnv: cannot write {output}: {error.strerror or error}"
        stderr.print(message, markup=False)
        raise typer.Exit(1) from None


def _import(
    records_paths: list[Path],
    routes_paths: list[Path],
    addresses_paths: list[Path],
    node_texts: list[str],
    interface: str,
) -> tuple[CommentedMap, list[str]]:
    """Every file read and every --node parsed before giving up, so that one run
    shows all that needs fixing."""
    issues: list[ConfigIssue] = []
    records = _read(records_paths, issues)
    routes = _read(routes_paths, issues)
    addresses = _read(addresses_paths, issues)
    specs: list[NodeSpec] = []
    try:
        specs = parse_nodes(node_texts)
    except ConfigError as error:
        issues.extend(error.issues)
    if issues:
        raise ConfigError(issues)
    return import_hnv(records, routes, specs, provider_addresses=addresses, interface=interface)


def _read(paths: list[Path], issues: list[ConfigIssue]) -> list[Export]:
    """The exports at ``paths`` that can be used (the others' issues are added)."""
    exports = []
    for path in paths:
        try:
            exports.append(Export(str(path), read_export(path)))
        except ConfigError as error:
            issues.extend(error.issues)
    return exports
