"""The control API: the running policy as JSON resources over HTTP (starlette).

Resources follow the HNV cmdlets: ``/v1/lookup-records`` is Get-/New-/Remove-
NetVirtualizationLookupRecord, filters are query parameters named like the file's
keys (``?vsid=5010&ca=10.10.10.11``). Every answer carries the policy revision in
``ETag``; a change sent with ``If-Match: "<revision>"`` is applied only if the policy
is still at that revision (412 otherwise), so two admins cannot overwrite each other.

A POST of a JSON list adds a batch of entries of the kind as one revision, all or
nothing (``batches.py``): 201 with how many were added, or 422 naming each bad entry
by its index (``entry``).

Answers: 200/201 with the entries; 400 for a request that is not understood; 413
for a body larger than the route takes (counted as it streams in); 404 when nothing
matches; 409 when an entry is added under a key that has one (a routing domain the
gateway serves already); 412 for a stale revision; 422 with every reason when the
change would make the policy invalid (``issues``: path, value, message, as
``nvgw check`` prints them); 405 when the store is read-only (``--store file:``,
the message naming the alternative); 503 when another writer holds the store's lock
too long; 507 (disk full) or 500 when a valid change could not be written to the
store, none of it kept.
"""

from __future__ import annotations

import errno
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import anyio
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.dataplane import Counters, PortCounters
from gateway.errors import ConfigError, Drop
from gateway.policy import Policy

from .batches import AddAll, BatchRefused
from .edits import Exists, NotFound, add, find, migrate, remove, replace_all
from .entries import listing, policy_json
from .kinds import KINDS, Kind, served
from .nat_sessions import SessionsSource, sessions_handler
from .openapi import openapi_document
from .store import (
    Accepted,
    ApplyError,
    NotSaved,
    PolicyStore,
    ReadOnly,
    RevisionMismatch,
    StoreBusy,
    refusal,
)
from .trace import TraceError, trace
from .tunnel_state import TunnelsSource, tunnels_handler
from .untrusted import MAX_DOCUMENT_BYTES, parse_json, parse_yaml

log = structlog.get_logger("nvgw.api")
MAX_POLICY_BODY: Final = MAX_DOCUMENT_BYTES  # PUT /v1/policy: a whole config file
# Every other body is one entry or a few fields, under a kilobyte: 1 MiB is generous,
# and bounds what a hostile body can make the JSON parser build.
MAX_ENTRY_BODY: Final = 1024 * 1024
MAX_BATCH_BODY: Final = MAX_DOCUMENT_BYTES  # a POST of a list: 10^5 records are ~10 MB
MAX_REVISION_DIGITS: Final = 18  # a revision fits an int64; int() never meets 4300 digits
BODY: Final = "the body"  # where a body's problems are, in their messages


class BadRequest(Exception):
    """The request itself is malformed: bad JSON, an unknown filter, a bad header."""


class TooLarge(Exception):
    """The body is larger than the route takes (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes, the most this route takes")


def build_api(
    store: PolicyStore[Any],
    node: str,
    counters: Callable[[], dict[str, Any]],
    kinds: Sequence[Kind] = KINDS,
    nat_sessions: SessionsSource = lambda: None,
    tunnels: TunnelsSource = lambda: None,
) -> Starlette:
    """The API of one daemon: its store for policy, ``counters`` for the data plane's
    counts (read when asked, like a scrape), ``nat_sessions`` for a gateway's NAT
    sessions (``nat_sessions.py``), ``tunnels`` for its tunnels' state
    (``tunnel_state.py``), and a resource per kind of entry."""
    handlers = _Handlers(store, node, counters, kinds)
    routes = [
        Route("/v1/health", handlers.health, methods=["GET"]),
        Route("/v1/openapi.json", handlers.openapi, methods=["GET"]),
        Route("/v1/policy", handlers.get_policy, methods=["GET"]),
        Route("/v1/policy", handlers.put_policy, methods=["PUT"]),
        Route("/v1/counters", handlers.counters, methods=["GET"]),
        Route("/v1/migrate", handlers.migrate, methods=["POST"]),
        Route("/v1/trace", handlers.trace, methods=["POST"]),
        Route(
            "/v1/nat/sessions",
            sessions_handler(
                nat_sessions, lambda: handlers.policy, handlers._off_loop, handlers._answer
            ),
            methods=["GET"],
        ),
        Route(
            "/v1/tunnels/state",
            tunnels_handler(tunnels, lambda: handlers.policy, handlers._answer),
            methods=["GET"],
        ),
    ]
    for kind in served(kinds):
        routes += [
            Route(f"/v1/{kind.name}", handlers.lister(kind), methods=["GET"]),
            Route(f"/v1/{kind.name}", handlers.adder(kind), methods=["POST"]),
            Route(f"/v1/{kind.name}", handlers.remover(kind), methods=["DELETE"]),
        ]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


Handler = Callable[[Request], Awaitable[JSONResponse]]


class _Handlers:
    def __init__(
        self,
        store: PolicyStore[Any],
        node: str,
        counters: Callable[[], dict[str, Any]],
        kinds: Sequence[Kind],
    ) -> None:
        self.store = store
        self.node = node
        self.read_counters = counters
        self.kinds = kinds
        self.openapi_document = openapi_document(kinds)
        # Work that grows with the policy or the body (parsing, listing, tracing,
        # rendering a large answer) runs in a worker thread, one request at a time:
        # the event loop forwards packets meanwhile, and a crowd of clients queues
        # here rather than splitting the loop's share of the GIL between them.
        self._worker = anyio.CapacityLimiter(1)

    @property
    def policy(self) -> Policy:
        assert self.store.policy is not None, "the API is served only once a policy runs"
        return self.store.policy

    async def _off_loop(self, work: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(work, *args, limiter=self._worker)

    def _answer(
        self, body: dict[str, Any], status: int = 200, policy: Policy | None = None
    ) -> JSONResponse:
        """The answer, with the revision of ``policy`` (the one it was computed from;
        by default the running one)."""
        revision = (self.policy if policy is None else policy).revision
        return JSONResponse(
            {"revision": revision, **body}, status, headers={"ETag": f'"{revision}"'}
        )

    async def health(self, request: Request) -> JSONResponse:
        return self._answer({"status": "ok", "node": self.node})

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(self.openapi_document)

    async def get_policy(self, request: Request) -> JSONResponse:
        policy = self.policy

        def whole() -> JSONResponse:
            return self._answer(
                {"policy": policy_json(policy), "counts": policy.counts()}, 200, policy
            )

        return await self._off_loop(whole)

    async def put_policy(self, request: Request) -> JSONResponse:
        """A whole config (YAML or JSON): the store becomes equal to it, removals
        included, in one revision that writes only the entries that differ."""
        body = await _body(request, MAX_POLICY_BODY)
        document = await self._off_loop(_whole_config, body)
        return await self._change(request, replace_all(document), lambda _: {})

    async def counters(self, request: Request) -> JSONResponse:
        return self._answer({"node": self.node, "counters": self.read_counters()})

    async def migrate(self, request: Request) -> JSONResponse:
        body = await self._json_object(request, required=("vm", "pa"))
        edit = await self._off_loop(migrate, str(body["vm"]), str(body["pa"]), self.policy)
        return await self._change(request, edit, lambda moved: {"migrated": moved})

    async def trace(self, request: Request) -> JSONResponse:
        body = await self._json_object(request, required=("from", "to"))
        ports = {"sport": body.get("sport", 49152), "dport": body.get("dport", 80)}
        if not all(type(port) is int for port in ports.values()):
            raise BadRequest(f"sport and dport are integers in 0..65535, not {ports}")
        vm, to, proto = str(body["from"]), str(body["to"]), str(body.get("proto", "icmp"))
        policy = self.policy

        def hop_by_hop() -> JSONResponse:
            result = trace(policy, vm, to, proto, ports["sport"], ports["dport"])
            return self._answer(result.as_json(), 200, policy)

        return await self._off_loop(hop_by_hop)

    def lister(self, kind: Kind) -> Handler:
        async def get(request: Request) -> JSONResponse:
            filters = _filters(request, kind)
            policy = self.policy

            def matching() -> JSONResponse:
                items = find(listing(policy, kind, self.kinds), filters)
                return self._answer({"items": items}, 200, policy)

            return await self._off_loop(matching)

        return get

    def adder(self, kind: Kind) -> Handler:
        """One entry (a JSON object), or a batch (a JSON list of them: one revision,
        all or nothing, every bad entry named by its index, ``batches.py``)."""

        async def post(request: Request) -> JSONResponse:
            body = await _body(request, MAX_BATCH_BODY)
            value = await self._off_loop(_json_value, body)
            if isinstance(value, list):
                return await self._batch(request, kind, value)
            if not isinstance(value, dict):
                raise BadRequest("the body must be a JSON object, or a list of them (a batch)")
            if len(body) > MAX_ENTRY_BODY:
                raise TooLarge(MAX_ENTRY_BODY)
            edit = add(kind, value, self.kinds)
            return await self._change(request, edit, lambda item: {"item": item}, 201)

        return post

    async def _batch(self, request: Request, kind: Kind, entries: list[Any]) -> JSONResponse:
        bad = [n for n, entry in enumerate(entries) if not isinstance(entry, dict)]
        if bad or not entries:
            where = f"entries {', '.join(map(str, bad[:10]))} are not" if bad else "it has none"
            raise BadRequest(f"a batch is a list of JSON objects, one per {kind.what}: {where}")
        edit = AddAll(kind, entries, self.kinds)
        try:
            return await self._change(request, edit, lambda added: added, 201)
        except ConfigError as error:
            raise edit.numbered(error) from None

    def remover(self, kind: Kind) -> Handler:
        async def delete(request: Request) -> JSONResponse:
            filters = _filters(request, kind)
            if not filters:
                raise BadRequest(
                    f"name the {kind.what}s to remove: filter by {', '.join(kind.filters)}"
                )
            edit = remove(kind, filters)
            return await self._change(request, edit, lambda gone: {"removed": gone})

        return delete

    async def _change(
        self,
        request: Request,
        edit: Callable[[Any], Any],
        report: Callable[[Any], dict[str, Any]],
        status: int = 200,
    ) -> JSONResponse:
        """Apply an edit, and leave an audit trail of every attempt in the log."""
        what = {"method": request.method, "path": request.url.path}
        if request.url.query:
            what["query"] = request.url.query
        try:
            accepted: Accepted = await self.store.change(edit, _if_match(request))
        except ConfigError as error:
            log.warning("policy change refused", **what, issues=[str(i) for i in error.issues])
            raise
        except (NotFound, Exists, RevisionMismatch, StoreBusy, ReadOnly) as error:
            log.warning("policy change refused", **what, reason=str(error))
            raise
        except ApplyError as error:
            log.error("policy change saved but not fully applied", **what, reason=str(error))
            raise
        except NotSaved as error:
            log.error("policy change not saved", **what, reason=str(error))
            raise
        answer = report(accepted.result)
        log.info("policy changed", **what, revision=accepted.policy.revision, **answer)
        return await self._off_loop(self._answer, answer, status, accepted.policy)

    async def _json_object(self, request: Request, required: tuple[str, ...] = ()) -> dict:
        body = await _body(request, MAX_ENTRY_BODY)
        value = await self._off_loop(_json_value, body)
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        missing = [key for key in required if key not in value]
        if missing:
            raise BadRequest(f"the body lacks {', '.join(missing)}")
        return value


def counters_json(counters: Counters) -> dict[str, Any]:
    """The data plane's counts as JSON: node totals, drops by reason (non-zero ones),
    and per port; the same numbers /metrics serves, for scripts that speak JSON."""
    totals = {name: getattr(counters, name) for name, _ in Counters.TOTALS}
    drops = {Drop(i).label: n for i, n in enumerate(list(counters.drops)) if n}
    ports = {
        name: {field: getattr(port, field) for field, _ in PortCounters.TOTALS}
        for name, port in list(counters.ports.items())  # one C call: a new port may come
    }
    return {**totals, "drops": drops, "ports": ports}


# ---------------------------------------------------------------- request parsing


async def _body(request: Request, limit: int) -> bytearray:
    """The body, counted as it streams in and refused (413) past ``limit`` bytes: a
    declared Content-Length past it is refused unread, and a chunked body (which
    declares none) is read no further than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        digits = _ascii_digits(declared)
        if digits is None:
            raise BadRequest(f"Content-Length must be a number of bytes, not {declared!r}")
        if len(digits) > MAX_REVISION_DIGITS or int(digits) > limit:
            raise TooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(limit)
    return body


def _ascii_digits(text: str) -> str | None:
    """The decimal number a header holds, without leading zeros, or None. ASCII
    only: ``str.isdigit`` also takes '²' (a Latin-1 byte in a header), which ``int()``
    refuses."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return text.lstrip("0") or "0"


def _json_value(body: bytearray) -> Any:
    """A body's JSON (in a worker thread: its cost grows with its size)."""
    try:
        return parse_json(body, BODY)
    except ConfigError as error:
        raise _unreadable(error) from None


def _whole_config(body: bytearray) -> Any:
    """A PUT body's round-trip document (in a worker thread: a whole policy)."""
    try:
        document = parse_yaml(body.decode("utf-8"), BODY)
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 (at byte {error.start})") from None
    except ConfigError as error:
        raise _unreadable(error) from None
    if not isinstance(document, Mapping):
        raise BadRequest("the body must be a whole config: a mapping (routing_domains:, …)")
    return document


def _unreadable(error: ConfigError) -> BadRequest:
    """A reader's refusal (one issue, located in the body) as a 400's message."""
    [issue] = error.issues
    where = BODY if issue.line is None else f"{BODY} (line {issue.line})"
    return BadRequest(f"{where}: {issue.message}")


def _filters(request: Request, kind: Kind) -> dict[str, str]:
    unknown = [key for key in request.query_params if key not in kind.filters]
    if unknown:
        raise BadRequest(
            f"{kind.name} cannot be filtered by {', '.join(unknown)} "
            f"(filters: {', '.join(kind.filters)})"
        )
    return dict(request.query_params)


def _if_match(request: Request) -> int | None:
    """The revision a change is conditional on: ``If-Match: "7"`` (an ETag) or ``7``."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    digits = _ascii_digits(value.strip().removeprefix("W/").strip('"'))
    if digits is None or len(digits) > MAX_REVISION_DIGITS:
        raise BadRequest(f'If-Match must be a revision such as "7", not {value!r}')
    return int(digits)


# ---------------------------------------------------------------- errors


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status)


async def _bad_request(request: Request, error: Exception) -> JSONResponse:
    return _error(400, str(error))


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return _error(404, str(error))


async def _exists(request: Request, error: Exception) -> JSONResponse:
    return _error(409, str(error))


async def _stale(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RevisionMismatch)
    return _error(412, str(error), revision=error.actual)


async def _invalid(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ConfigError)
    issues = refusal(error)
    if isinstance(error, BatchRefused):  # each issue names its entry of the batch
        for issue, entry in zip(issues, error.entries, strict=True):
            issue.update({} if entry is None else {"entry": entry})
    return _error(422, "refused: the policy would be invalid", issues=issues)


async def _too_large(request: Request, error: Exception) -> JSONResponse:
    return _error(413, str(error))


async def _busy(request: Request, error: Exception) -> JSONResponse:
    return _error(503, str(error))


async def _read_only(request: Request, error: Exception) -> JSONResponse:
    return _error(405, str(error))


async def _partly_applied(request: Request, error: Exception) -> JSONResponse:
    return _error(500, f"the change is saved and in force, but {error}")


async def _not_saved(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, NotSaved)
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return _error(507 if full else 500, str(error))  # 507 Insufficient Storage (RFC 4918)


EXCEPTION_HANDLERS: Final[dict[Any, Any]] = {
    BadRequest: _bad_request,
    TooLarge: _too_large,
    TraceError: _bad_request,
    NotFound: _not_found,
    Exists: _exists,
    RevisionMismatch: _stale,
    ConfigError: _invalid,
    StoreBusy: _busy,
    ReadOnly: _read_only,
    ApplyError: _partly_applied,
    NotSaved: _not_saved,
}


class BearerToken:
    """Admits a request only with ``Authorization: Bearer <token>`` (for TCP: the
    Unix socket's own permissions already say who may connect). The scheme is
    case-insensitive (RFC 7235 section 2.1: ``bearer`` is ``Bearer``); the token is
    compared in constant time, whatever the scheme."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    def _admits(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credentials = given.partition(b" ")
        same = hmac.compare_digest(credentials.lstrip(b" "), self.expected)
        return same and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._admits(scope):
            response = JSONResponse(
                {"error": "a bearer token is required (Authorization: Bearer …)"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="nvgw"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
