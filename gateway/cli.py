"""The ``nvgw`` command.

For now one real command, ``nvgw check FILE...``; ``run``, ``lab`` and the API verbs
join as they are built (no stubs before). Exit status: 0 when every file is valid, 1
when any is not, 2 for a usage error (typer's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.control import load_config
from gateway.errors import ConfigError
from gateway.policy import Policy

app = typer.Typer(
    name="nvgw",
    help="nvgw: an NVGRE gateway for Hyper-V Network Virtualization style networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        import gateway

        typer.echo(f"nvgw {gateway.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """nvgw: an NVGRE gateway for Hyper-V Network Virtualization style networks."""


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Config files to validate.", metavar="FILE")],
) -> None:
    """Validate config files: a summary of each, or every problem, one per line."""
    console = Console(highlight=False, soft_wrap=True)
    failed = False
    for path in files:
        try:
            policy = load_config(path)
        except ConfigError as error:
            failed = True
            for issue in error.issues:
                console.print(str(issue), markup=False)
            continue
        _summary(console, str(path), policy)
    raise typer.Exit(1 if failed else 0)


def _summary(console: Console, name: str, policy: Policy) -> None:
    counts = policy.counts()
    console.print(f"{name}: valid (revision {policy.revision})", markup=False, style="bold")
    lines = [
        f"routing domains     {counts['routing_domains']}",
        f"virtual subnets     {counts['virtual_subnets']}",
        f"lookup records      {counts['lookup_records']} "
        f"(encap {counts['encap_records']}, nat {counts['ip_rewrite_records']})",
        f"customer routes     {counts['customer_routes']}",
        f"nodes               {counts['nodes']} "
        f"(provider addresses {counts['provider_addresses']}, ports {counts['ports']})",
    ]
    for line in lines:
        console.print(f"  {line}", markup=False)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="nvgw")
