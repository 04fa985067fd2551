"""``nvgw tunnel show [NAME]``: a gateway's tunnels as they run, as ``wg show`` prints
a WireGuard interface, from the daemon's API (``GET /v1/tunnels/state``,
``gateway/control/tunnel_state.py``); ``--json`` gives the API's answer whole.

Per listen port its public key (as ``wg show``'s interface), then per tunnel its
peer's public key, endpoint, allowed IPs, latest handshake ("1 minute, 3 seconds
ago"), transfer ("1.20 MiB received, 3.40 MiB sent") and persistent keepalive. No
private or preshared key is ever shown: the API has none to give.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

import typer
from rich.console import Console

from gateway.cli import verbs
from gateway.control import DEFAULT_SOCKET

_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB")
_PERIODS: Final = (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def ago(seconds: float | None) -> str:
    """How long ago, as ``wg show`` says it ("none" when there was no handshake)."""
    if seconds is None:
        return "none"
    left = int(seconds)
    if left == 0:
        return "now"
    parts = []
    for unit, length in (*_PERIODS, ("second", 1)):
        count, left = divmod(left, length)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return ", ".join(parts) + " ago"


def size(count: int) -> str:
    """A byte count as ``wg show`` prints it: B, then KiB, MiB... with two decimals."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{count} B" if unit == 0 else f"{value:.2f} {_UNITS[unit]}"


def show(
    name: Annotated[str | None, typer.Argument(help="Only this tunnel.")] = None,
    api: verbs.ApiOpt = DEFAULT_SOCKET,
    url: verbs.UrlOpt = None,
    token_file: verbs.TokenOpt = None,
    api_ca: verbs.CaOpt = None,
    json_out: verbs.JsonOpt = False,
) -> None:
    """The tunnels of the gateway at --api as they run (as `wg show`)."""
    params = {} if name is None else {"name": name}
    with verbs.talking(verbs.Target(api, url, token_file, api_ca)) as client:
        answer: dict[str, Any] = client.request("GET", "/v1/tunnels/state", params=params)
    console = Console(highlight=False, soft_wrap=True)
    if json_out:
        console.print_json(json.dumps(answer))
        return
    tunnels = {row["name"]: row for row in answer["tunnels"]}
    blocks = []
    for port in answer["listen_ports"]:
        key = port["public_key"] or "(none: the node has no private key for this port)"
        blocks.append(f"listen port: {port['listen_port']}\n  public key: {key}")
        blocks += [_tunnel_text(tunnels[tunnel]) for tunnel in port["tunnels"]]
    console.print("\n\n".join(blocks) if blocks else "no tunnels on this node", markup=False)


def _tunnel_text(row: dict[str, Any]) -> str:
    lines = [
        f"tunnel: {row['name']}",
        f"  routing domain: {row['routing_domain']}",
        f"  peer: {row['public_key']}",
        f"  endpoint: {row['endpoint'] or '(none yet: learnt from the peer)'}",
        f"  allowed ips: {', '.join(row['allowed_ips'])}",
        f"  latest handshake: {ago(row['latest_handshake_age_s'])}",
        f"  transfer: {size(row['rx_bytes'])} received, {size(row['tx_bytes'])} sent",
    ]
    if row["persistent_keepalive"]:
        lines.append(f"  persistent keepalive: every {row['persistent_keepalive']} seconds")
    return "\n".join(lines)
