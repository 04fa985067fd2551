"""``nvgw nat sessions``: the NAT sessions a gateway holds, from its API
(``GET /v1/nat/sessions``, ``gateway/control/nat_sessions.py``), as a table or JSON.

A table shows the columns an operator reads a session by (tenant side, external
side, remote end, state, idle time left, packets each way); ``--json`` gives every
field the API has, bytes and age included.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli import verbs
from gateway.control import DEFAULT_SOCKET

nat_app = typer.Typer(help="The gateway's NAT: its sessions.", no_args_is_help=True)


# A session's columns; ``--json`` has every field (bytes, age, who opened it).
COLUMNS = ("domain", "proto", "tenant", "external", "remote", "state", "idle left s", "packets")


def _endpoint(address: str, port: int) -> str:
    return f"{address}:{port}"


@nat_app.command("sessions")
def sessions(
    rdid: Annotated[
        str | None, typer.Option(help="Only this routing domain's (its RDID or name).")
    ] = None,
    ca: Annotated[str | None, typer.Option(help="Only this tenant address's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many sessions.")] = 1000,
    api: verbs.ApiOpt = DEFAULT_SOCKET,
    url: verbs.UrlOpt = None,
    token_file: verbs.TokenOpt = None,
    api_ca: verbs.CaOpt = None,
    json_out: verbs.JsonOpt = False,
) -> None:
    """The NAT sessions of the gateway at --api, oldest first."""
    params = {"rdid": rdid, "ca": ca, "limit": limit}
    with verbs.talking(verbs.Target(api, url, token_file, api_ca)) as client:
        answer: dict[str, Any] = client.request("GET", "/v1/nat/sessions", params=params)
    found = answer["sessions"]
    console = Console(highlight=False, soft_wrap=True)  # the terminal's width now
    if json_out:
        console.print_json(json.dumps(answer))
        return
    title = f"NAT sessions (policy revision {answer['revision']})"
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")  # an address is no use cut short
    for s in found:
        table.add_row(
            s["routing_domain"],
            s["protocol"],
            _endpoint(s["ca"], s["ca_port"]),
            _endpoint(s["external"], s["external_port"]),
            _endpoint(s["remote"], s["remote_port"]),
            s["state"] if s["opened_by"] == "tenant" else f"{s['state']} (in)",
            f"{s['expires_in_s']:.0f}",
            f"{s['out_packets']} out, {s['in_packets']} in",
        )
    console.print(table)
    if answer["matched"] > len(found):
        console.print(f"{len(found)} of {answer['matched']} sessions shown (--limit)")


def register(app: typer.Typer) -> None:
    app.add_typer(nat_app, name="nat")
