"""``GET /v1/tunnels/state``: a gateway's site-to-site tunnels as they run, read-only
(``nvgw tunnel show`` prints them as ``wg show`` would).

Per listen port: its public key (the one the sites' configs name; the private key
never leaves the node's file) and the tunnels it serves. Per tunnel: its peer's
public key, its endpoint (configured, or learnt from the peer's authenticated
packets: roaming), allowed IPs, persistent keepalive, the latest handshake (seconds
since the epoch, 0 before the first, and its age on the daemon's clock) and what
its peer counts (``TUNNEL_TOTALS``, as in ``/metrics``). No preshared key, nor
whether one is set, is in it.

As ``/v1/nat/sessions`` does, the handler reads the state on the event loop, where
the packet loop changes it between batches: a few ints per tunnel, each tunnel read
whole before the loop can run again. ``?name=`` asks for one tunnel (404 naming it
when the node has none of that name); a node that is not a gateway answers 404.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.dataplane import TUNNEL_TOTALS
from gateway.netnames import format_host_port
from gateway.policy import Policy

from .nat_sessions import Refused, refuse_unknown

FILTERS: Final = ("name",)

# The endpoint in the API's OpenAPI document (``openapi.py``).
OPENAPI_PATH: Final = {
    "get": {
        "summary": "A gateway's tunnels as they run: keys, endpoints, handshakes, transfer "
        "(nvgw tunnel show)",
        "parameters": [
            {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "listen_ports and tunnels (by name)"},
            "400": {"description": "a filter not understood"},
            "404": {"description": "no tunnel of that name, or this node is not a gateway"},
        },
    }
}

# What the daemon gives the API: its tunnels' state now, or None on a node that is
# not a gateway.
TunnelsSource = Callable[[], dict[str, Any] | None]


def node_tunnels(node: Any) -> dict[str, Any] | None:
    """A data-plane node's tunnels and listen ports as the API lists them, or None
    when the node is no gateway (a host has no ``tunnel_ports``): the daemon's
    ``TunnelsSource``. Runs on the event loop: nothing here waits."""
    ports = getattr(node, "tunnel_ports", None)
    if ports is None:
        return None
    tunnels = [_tunnel_json(action.tunnel, node.now) for action in node.tables.to_tunnel.values()]
    tunnels.sort(key=lambda row: row["name"])
    listen_ports = []
    for listen_port in sorted({row["listen_port"] for row in tunnels}):
        port = ports.get(listen_port)
        listen_ports.append(
            {
                "listen_port": listen_port,
                # None: the node has no private key for it (nodes.NAME.tunnel_keys)
                "public_key": None if port is None else _b64(port.device.identity.public),
                "tunnels": [row["name"] for row in tunnels if row["listen_port"] == listen_port],
            }
        )
    return {"listen_ports": listen_ports, "tunnels": tunnels}


def _tunnel_json(tunnel: Any, now: float) -> dict[str, Any]:
    config, peer = tunnel.config, tunnel.peer
    endpoint = config.endpoint if peer is None else peer.endpoint
    if isinstance(endpoint, tuple):
        endpoint = format_host_port(*endpoint)
    last = None if peer is None else peer.last_handshake_s
    return {
        "name": tunnel.name,
        "rdid": tunnel.domain.rdid,
        "routing_domain": tunnel.domain.name,
        "listen_port": config.listen_port,
        "public_key": config.public_key,
        "endpoint": endpoint,  # None: not configured, and the peer has not reached us
        "allowed_ips": [str(prefix) for prefix in config.allowed_ips],
        "persistent_keepalive": config.persistent_keepalive or 0,
        "latest_handshake": tunnel.latest_handshake(),
        "latest_handshake_age_s": None if last is None else round(max(now - last, 0.0), 3),
        **{name: 0 if peer is None else getattr(peer, name) for name, _ in TUNNEL_TOTALS},
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def tunnels_handler(
    source: TunnelsSource,
    policy: Callable[[], Policy],
    answer: Callable[[dict[str, Any], int, Policy], JSONResponse],
) -> Callable[[Request], Any]:
    """The GET handler over the node's tunnels (``source``), answered by ``answer``
    with the policy's revision."""

    async def get(request: Request) -> JSONResponse:
        params = request.query_params
        try:
            refuse_unknown(params, FILTERS)
        except Refused as error:
            return JSONResponse({"error": str(error)}, 400)
        running = policy()
        state = source()
        if state is None:
            message = "this node is not a gateway: tunnels are served by a gateway node"
            return JSONResponse({"error": message}, 404)
        name = params.get("name")
        if name is not None:
            state["tunnels"] = [row for row in state["tunnels"] if row["name"] == name]
            if not state["tunnels"]:
                return JSONResponse({"error": f"no tunnel {name!r} on this node"}, 404)
            port = state["tunnels"][0]["listen_port"]
            state["listen_ports"] = [p for p in state["listen_ports"] if p["listen_port"] == port]
        return answer(state, 200, running)

    return get
