"""The ``nvgw`` command.

``nvgw check FILE...`` validates configs (exit 0 when every file is valid, 1 when
any is not, 2 for a usage error, typer's); ``nvgw run`` runs one node of a policy
store; ``nvgw lab`` builds the seed's labs in network namespaces.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Final

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from gateway.cli import nat, store_verbs, tunnel_keys, verbs
from gateway.cli.import_hnv import import_hnv_command
from gateway.control import DEFAULT_SOCKET, DEFAULT_STORE, StoreConflict, load_config, parse_store
from gateway.errors import ConfigError
from gateway.netnames import ListenAddressError, parse_listen_address
from gateway.policy import Policy

# The daemon's control work (the API's parsing, listing, tracing) runs in a worker
# thread; when packets wake the event loop meanwhile, it waits for that thread to let
# go of the GIL: up to the switch interval, 5 ms by default. At 0.5 ms the loop answers
# three to four times as many frames while a trace runs (tests/io/test_control_off_loop.py),
# and nothing changes while no other thread runs, which is nearly always.
GIL_SWITCH_INTERVAL_S: Final = 0.0005

__all__ = ["app", "main"]  # the command, and its entry point (pyproject.toml)


class _Commands(TyperGroup):
    """nvgw's commands, ``lab`` among them loaded only when it is asked for, by name
    or by the help's list: the lab brings pyroute2 and the namespaces' tooling, a
    tenth of a second that no other command needs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return names if "lab" in names else [*names, "lab"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "lab" and "lab" not in self.commands:
            from gateway.lab import lab_app

            self.add_command(typer.main.get_group(lab_app), "lab")
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="nvgw",
    help="nvgw: an NVGRE gateway for Hyper-V Network Virtualization style networks.",
    cls=_Commands,
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
            _print_issues(console, error)
            continue
        _summary(console, str(path), policy)
    raise typer.Exit(1 if failed else 0)


def _print_issues(console: Console, error: ConfigError) -> None:
    """Every problem, one per line: file:line: path = value: message."""
    for issue in error.issues:
        console.print(str(issue), markup=False)


@contextmanager
def _exit_1_on(*errors: type[Exception], command: str) -> Iterator[None]:
    """Exit 1 with what the user needs: every config issue, or the error's message."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        yield
    except ConfigError as error:
        _print_issues(console, error)
        raise typer.Exit(1) from None
    except errors as error:
        message = getattr(error, "strerror", None) or error
        console.print(f"nvgw {command}: {message}", markup=False)
        raise typer.Exit(1) from None


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


def _listen_address(value: str | None, param: typer.CallbackParam) -> str | None:
    """Refuse a bad HOST:PORT before the daemon opens anything (it parses it again
    where it listens: the same parser, ``gateway.netnames``)."""
    if value is not None:
        try:
            parse_listen_address(value, f"--{param.name.replace('_', '-')}")
        except ListenAddressError as error:
            raise typer.BadParameter(f"{value!r}: {error.reason}") from None
    return value


class Backend(enum.StrEnum):
    asyncio = "asyncio"
    trio = "trio"


def _loop_options(backend: Backend, uvloop: bool) -> dict[str, object]:
    """anyio's options for the backend: uvloop's loop for asyncio unless declined."""
    return {"use_uvloop": True} if backend is Backend.asyncio and uvloop else {}


class ProviderRx(enum.StrEnum):
    ring = "ring"
    socket = "socket"


class ProviderTx(enum.StrEnum):
    link = "link"
    kernel = "kernel"


def store_and_seed(store: str | None, config: Path | None) -> tuple[str | Path, Path | None]:
    """What ``nvgw run`` reads its policy from, and the config that seeds it.

    ``--store sqlite:PATH`` (or neither option: the default database) with
    ``--config FILE`` seeds an empty database from FILE; ``--config FILE`` alone
    runs read-only from FILE (``file:FILE``), as nvgw always has. A ``file:`` store
    is its own config, so naming another is a usage error."""
    if store is None:
        return (DEFAULT_STORE, None) if config is None else (config, None)
    try:
        scheme, _ = parse_store(store)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--store") from None
    if scheme == "file" and config is not None:
        raise typer.BadParameter(
            "a file: store is its own config: give --store file:PATH or --config FILE, "
            "or --store sqlite:PATH --config FILE to seed a database",
            param_hint="--config",
        )
    return store, config


@app.command()
def run(
    node: Annotated[str, typer.Option("--node", "-n", help="Which node of it this daemon is.")],
    store: Annotated[
        str | None,
        typer.Option(
            help=f"The policy store: sqlite:PATH (default {DEFAULT_STORE.removeprefix('sqlite:')}),"
            " etcd://HOST:PORT/PREFIX (a cluster's, shared by every daemon naming it)"
            " or file:PATH (a YAML config, read-only, SIGHUP re-reads it).",
            envvar="NVGW_STORE",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="A config that seeds an empty --store database; alone, the store is "
            "this file, read-only (file:FILE).",
        ),
    ] = None,
    backend: Annotated[Backend, typer.Option(help="anyio event loop.")] = Backend.asyncio,
    uvloop: Annotated[
        bool,
        typer.Option(
            help="On the asyncio backend, run its event loop on uvloop (libuv's, in C), "
            "whose wake-ups cost less CPU (README, Running a node); --no-uvloop: the "
            "standard library's loop. trio ignores it.",
        ),
    ] = True,
    metrics: Annotated[
        str,
        typer.Option(
            help="Where /metrics listens (HOST:PORT, [IPv6]:PORT; port 0 picks one).",
            callback=_listen_address,
        ),
    ] = "127.0.0.1:9550",
    ready_fd: Annotated[
        int | None,
        typer.Option(help="Write one JSON line to this fd once serving (then close it)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    provider_rx: Annotated[
        ProviderRx, typer.Option(help="Receive NVGRE with an AF_PACKET ring or a raw socket.")
    ] = ProviderRx.ring,
    provider_tx: Annotated[
        ProviderTx,
        typer.Option(
            help="Send NVGRE framed by the daemon on the provider link, or by the kernel "
            "(a raw socket: its netfilter hooks and path MTU apply)."
        ),
    ] = ProviderTx.link,
    api: Annotated[
        Path, typer.Option(help="The control API's Unix socket (mode 0600).", envvar="NVGW_API")
    ] = DEFAULT_SOCKET,
    no_api: Annotated[bool, typer.Option("--no-api", help="Serve no control API.")] = False,
    api_tcp: Annotated[
        str | None,
        typer.Option(
            help="Also serve the API on HOST:PORT (a token; TLS off loopback).",
            callback=_listen_address,
        ),
    ] = None,
    api_token_file: Annotated[
        Path | None,
        typer.Option(help="A file (mode 0600) whose first line is the bearer token for --api-tcp."),
    ] = None,
    api_tls_cert: Annotated[
        Path | None, typer.Option(help="Serve --api-tcp over TLS with this certificate (PEM).")
    ] = None,
    api_tls_key: Annotated[
        Path | None, typer.Option(help="The private key (PEM) of --api-tls-cert.")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help="Once set up, run as this user with CAP_NET_ADMIN and CAP_NET_RAW only."),
    ] = None,
) -> None:
    """Run one node of a policy store.

    The control API changes its policy live (a database store), a change another
    daemon commits to the same database is in force here within 0.1 s, SIGHUP
    re-reads the store, SIGTERM stops cleanly."""
    import anyio

    from gateway.io import ApiListen, Daemon, ready_line
    from gateway.telemetry import configure_logging

    where, seed = store_and_seed(store, config)
    configure_logging(log_level)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    listen = None
    if not no_api:
        listen = ApiListen(api, api_tcp, api_token_file, api_tls_cert, api_tls_key)
    daemon = Daemon(where, node, metrics, provider_rx.value, listen, user, seed, provider_tx.value)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            ready = await tg.start(daemon.run)
            if ready_fd is not None:
                os.write(ready_fd, ready_line(ready))
                os.close(ready_fd)

    try:
        with _exit_1_on(OSError, StoreConflict, command="run"):
            anyio.run(serve, backend=backend.value, backend_options=_loop_options(backend, uvloop))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("trace")
def trace_command(
    source: Annotated[str, typer.Option("--from", help="The VM (port name) that sends.")],
    destination: Annotated[str, typer.Option("--to", help="The CA it sends to.")],
    protocol: Annotated[str, typer.Option("--proto", help="icmp, udp or tcp.")] = "icmp",
    src_port: Annotated[int, typer.Option("--sport", help="UDP/TCP source port.")] = 49152,
    dst_port: Annotated[int, typer.Option("--dport", help="UDP/TCP destination port.")] = 80,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Trace against this file, not the live policy."),
    ] = None,
    api: verbs.ApiOpt = DEFAULT_SOCKET,
    url: verbs.UrlOpt = None,
    token_file: verbs.TokenOpt = None,
    api_ca: verbs.CaOpt = None,
    json_out: verbs.JsonOpt = False,
) -> None:
    """What the data plane does with one packet, hop by hop.

    Against the live policy of the daemon at --api, or a config file (--config)."""
    from rich.table import Table

    from gateway.control import TraceError, trace

    console = Console(highlight=False, soft_wrap=True)
    if config is None:
        body = {"from": source, "to": destination, "proto": protocol}
        body |= {"sport": src_port, "dport": dst_port}
        result = verbs.trace_live(verbs.Target(api, url, token_file, api_ca), body)
    else:
        with _exit_1_on(TraceError, command="trace"):
            policy = load_config(config)
            result = trace(policy, source, destination, protocol, src_port, dst_port).as_json()
    if json_out:
        console.print_json(json.dumps(result))
        return
    table = Table("node", "step", "what", title=f"{source} -> {destination} ({protocol})")
    for hop in result["hops"]:
        table.add_row(hop["node"], hop["step"], hop["detail"])
    console.print(table)
    if result["delivered_to"]:
        console.print(f"delivered to {result['delivered_to']}")
    else:
        console.print(f"dropped: {result['dropped']}")


@app.command()
def replay(
    config: Annotated[Path, typer.Argument(help="The deployment's config file.")],
    capture: Annotated[Path, typer.Argument(help="A pcap of provider or VM-side frames.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write what would leave here.")
    ] = None,
) -> None:
    """Run a capture through the data plane offline: a verdict per frame."""
    from rich.table import Table
    from scapy.error import Scapy_Exception

    from gateway.lab import read_frames, replay, summary, write_frames

    console = Console(highlight=False, soft_wrap=True)
    try:
        policy = load_config(config)
        frames = read_frames(capture)
    except ConfigError as error:
        _print_issues(console, error)
        raise typer.Exit(1) from None
    except (OSError, Scapy_Exception) as error:
        console.print(f"nvgw replay: cannot read {capture}: {error}", markup=False)
        raise typer.Exit(1) from None
    verdicts, sent = replay(policy, frames)
    table = Table("#", "node", "verdict", title=f"{capture}: {len(frames)} frames")
    for verdict in verdicts:
        table.add_row(str(verdict.index), verdict.node, verdict.result)
    console.print(table)
    console.print(", ".join(f"{kind}: {n}" for kind, n in sorted(summary(verdicts).items())))
    if output is not None:
        write_frames(output, sent)
        console.print(f"wrote {len(sent)} frames to {output}")


policy_app = typer.Typer(help="Compare and export policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
policy_app.command("export")(store_verbs.export)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="The policy in force.")],
    new: Annotated[Path, typer.Argument(help="The policy to compare it with.")],
) -> None:
    """What NEW adds (+), removes (-) and alters (~) against OLD, and what it breaks.
    Exit 0: no difference; 1: differences; 2: a file is invalid."""
    from gateway.control import diff

    console = Console(highlight=False, soft_wrap=True)
    try:
        result = diff(load_config(old), load_config(new))
    except ConfigError as error:
        _print_issues(console, error)
        raise typer.Exit(2) from None
    for change in result.changes:
        console.print(str(change), markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    if not result.changes:
        console.print("no difference")
    raise typer.Exit(1 if result.changes else 0)


verbs.register(app)
tunnel_keys.register(app)
nat.register(app)
app.command()(verbs.migrate)
app.command()(verbs.apply)
app.command("import-hnv")(import_hnv_command)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="nvgw")
