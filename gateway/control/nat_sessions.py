"""``GET /v1/nat/sessions``: the NAT sessions a gateway holds, read-only, from its
running table (``nvgw nat sessions`` prints them).

The packet loop owns the table and changes it between batches, so the handler takes
one consistent list of the sessions on the event loop (``list(dict.values())`` is one
C call under the GIL: no iteration the loop could interrupt), and filters, sorts and
renders it in the API's worker thread, out of the loop's way. The answer is bounded:
at most ``limit`` sessions (``DEFAULT_LIMIT`` unless asked, ``MAX_LIMIT`` at most),
with the number that matched, so a table of 65,536 sessions never becomes a reply of
that size by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.dataplane import NAPT_STATE_NAMES as STATE_NAMES
from gateway.dataplane import NaptSession as Session
from gateway.policy import Policy, filter_value
from gateway.wire import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 100_000
PROTOCOLS: Final = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp"}
FILTERS: Final = ("rdid", "ca", "limit")

# The endpoint in the API's OpenAPI document (``openapi.py``).
OPENAPI_PATH: Final = {
    "get": {
        "summary": "A gateway's NAT sessions, oldest first (nvgw nat sessions)",
        "parameters": [
            {"name": "rdid", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "ca", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        ],
        "responses": {
            "200": {"description": "matched (a count) and sessions (at most limit)"},
            "400": {"description": "a filter not understood"},
            "404": {"description": "this node has no NAT"},
        },
    }
}

# What the daemon gives the API: the gateway's sessions and its clock (the ``now`` of
# its last batch), or None on a node without NAT.
SessionsSource = Callable[[], tuple[list[Session], float] | None]


class Refused(ValueError):
    """A filter the endpoint does not understand (400)."""


def session_json(session: Session, now: float, names: dict[str, str | None]) -> dict[str, Any]:
    """One session as the API lists it: the tenant's side, the external side, the
    remote end, its state, who opened it, its age and idle time left, what it carried."""
    m = session.mapping
    rdid = session.tenant.rdid
    return {
        "rdid": rdid,
        "routing_domain": names.get(rdid) or rdid,
        "protocol": PROTOCOLS.get(session.protocol, str(session.protocol)),
        "ca": str(ipaddress.IPv4Address(m.ca)),
        "ca_port": m.ca_port,
        "external": str(ipaddress.IPv4Address(m.ext_addr)),
        "external_port": m.ext_port,
        "remote": str(ipaddress.IPv4Address(session.remote)),
        "remote_port": session.remote_port,
        "state": STATE_NAMES[session.state],
        "opened_by": "internet" if session.opener else "tenant",
        "age_s": round(max(now - session.start, 0.0), 3),
        "expires_in_s": round(max(session.expires - now, 0.0), 3),
        "out_packets": session.out_packets,
        "out_bytes": session.out_bytes,
        "in_packets": session.in_packets,
        "in_bytes": session.in_bytes,
    }


def matching(
    sessions: Iterable[Session],
    now: float,
    policy: Policy,
    rdid: str | None = None,
    ca: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The sessions of routing domain ``rdid`` (its RDID or name) and tenant address
    ``ca``, oldest first, at most ``limit`` of them, and how many matched."""
    names = {domain.rdid: domain.name for domain in policy.routing_domains}
    wanted_rdids = None
    if rdid is not None:
        canonical = filter_value("rdid", rdid)
        wanted_rdids = {
            found
            for found, name in names.items()
            if found == canonical or (name is not None and name.lower() == rdid.lower())
        }
    wanted_ca = None
    if ca is not None:
        try:
            wanted_ca = ipaddress.IPv4Address(ca.strip()).packed
        except ValueError:
            raise Refused(f"ca={ca!r} is not an IPv4 address") from None
    found = [
        s
        for s in sessions
        if (wanted_rdids is None or s.tenant.rdid in wanted_rdids)
        and (wanted_ca is None or s.mapping.ca == wanted_ca)
    ]
    found.sort(key=lambda s: s.start)
    return {
        "matched": len(found),
        "sessions": [session_json(s, now, names) for s in found[:limit]],
    }


def refuse_unknown(params: Mapping[str, str], filters: tuple[str, ...]) -> None:
    """``Refused`` naming the first query parameter that is none of ``filters``."""
    unknown = sorted(set(params) - set(filters))
    if unknown:
        raise Refused(f"unknown filter {unknown[0]!r}: this resource takes {filters}")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise Refused(f"limit={text!r}: a number of sessions, 1..{MAX_LIMIT}")
    return int(text)


def sessions_handler(
    source: SessionsSource,
    policy: Callable[[], Policy],
    off_loop: Callable[..., Awaitable[Any]],
    answer: Callable[[dict[str, Any], int, Policy], JSONResponse],
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The GET handler over the node's sessions (``source``), rendered by ``answer``
    with the policy's revision, the work done by ``off_loop``."""

    async def get(request: Request) -> JSONResponse:
        params = request.query_params
        try:
            refuse_unknown(params, FILTERS)
            limit = _limit(params.get("limit"))
        except Refused as error:
            return JSONResponse({"error": str(error)}, 400)
        running = policy()
        taken = source()  # on the loop: one consistent list
        if taken is None:
            message = "this node has no NAT (a gateway node's nodes.NAME.nat)"
            return JSONResponse({"error": message}, 404)
        sessions, now = taken

        def render() -> JSONResponse:
            try:
                found = matching(
                    sessions, now, running, params.get("rdid"), params.get("ca"), limit
                )
            except Refused as error:
                return JSONResponse({"error": str(error)}, 400)
            return answer(found, 200, running)

        return await off_loop(render)

    return get


def node_sessions(node: Any) -> tuple[list[Session], float] | None:
    """A data-plane node's NAT sessions and clock, or None when it has no NAT (a host,
    or a gateway without ``nat:``): the ``SessionsSource`` the daemon hands the API."""
    napt = getattr(node, "napt", None)
    if napt is None:
        return None
    return list(napt.by_out.values()), node.now
