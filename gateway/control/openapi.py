"""The control API's OpenAPI document (``GET /v1/openapi.json``).

The fixed routes are written out here; each kind of the registry (``kinds.py``) adds
its resource (GET with its filters, POST one entry, DELETE by filters) and the
schema of one entry, so the document describes exactly what ``build_api`` serves.
The models an entry's schema refers to (a routing domain's ``VirtualSubnet``s, a
served domain's ``Tap``s) are components too, so that every ``$ref`` resolves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .kinds import KINDS, Kind, schema, served, used_models
from .nat_sessions import OPENAPI_PATH as NAT_SESSIONS
from .tunnel_state import OPENAPI_PATH as TUNNEL_STATE

API_VERSION: Final = "v1"


def openapi_document(kinds: Sequence[Kind] = KINDS) -> dict[str, Any]:
    """The document for an API serving ``kinds`` (built once per API: it is small)."""
    text = {"type": "string"}
    revision_header = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'Apply only at this revision ("7"); 412 otherwise.',
        "schema": text,
    }
    refused = {
        "400": {"description": "malformed request"},
        "413": {"description": "the body is larger than the route takes"},
        "412": {"description": "the policy moved past the If-Match revision"},
        "422": {"description": "refused: every reason, the policy and file unchanged"},
        "507": {"description": "not saved, the disk is full: the policy and file unchanged"},
    }
    paths: dict[str, Any] = {
        "/v1/health": {"get": {"summary": "The daemon is serving", "responses": _ok()}},
        "/v1/policy": {
            "get": {"summary": "The running policy, whole", "responses": _ok()},
            "put": {
                "summary": "Replace the whole policy (nvgw apply)",
                "parameters": [revision_header],
                "requestBody": {"content": {"application/yaml": {"schema": {"type": "object"}}}},
                "responses": {**_ok(), **refused},
            },
        },
        "/v1/counters": {"get": {"summary": "The data plane's counters", "responses": _ok()}},
        "/v1/migrate": {
            "post": {
                "summary": "Move a VM: its records take the PA, its port moves to that node",
                "parameters": [revision_header],
                "requestBody": _json_body({"vm": text, "pa": text}),
                "responses": {**_ok(), **refused, "404": {"description": "no such VM or PA"}},
            }
        },
        "/v1/trace": {
            "post": {
                "summary": "One packet through the data plane of every node, hop by hop",
                "requestBody": _json_body(
                    {"from": text, "to": text, "proto": text, "sport": {"type": "integer"}}
                ),
                "responses": _ok(),
            }
        },
        "/v1/nat/sessions": NAT_SESSIONS,
        "/v1/tunnels/state": TUNNEL_STATE,
    }
    for kind in served(kinds):
        filters = [
            {"name": name, "in": "query", "required": False, "schema": text}
            for name in kind.filters
        ]
        ref = {"$ref": f"#/components/schemas/{kind.name}"}
        exists = {"409": {"description": "its key has an entry already"}} if kind.keyed_by else {}
        paths[f"/v1/{kind.name}"] = {
            "get": {"summary": f"List {kind.what}s", "parameters": filters, "responses": _ok()},
            "post": {
                "summary": f"Add a {kind.what}, or a batch of them (a list: one revision)",
                "parameters": [revision_header],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [ref, {"type": "array", "items": ref}]}
                        }
                    }
                },
                "responses": {"201": {"description": "added"}, **refused, **exists},
            },
            "delete": {
                "summary": f"Remove the {kind.what}s matching every filter",
                "parameters": [*filters, revision_header],
                "responses": {**_ok(), **refused, "404": {"description": "none matches"}},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "nvgw control API", "version": API_VERSION},
        "paths": paths,
        "components": {
            "schemas": {
                **used_models(served(kinds)),
                **{kind.name: schema(kind) for kind in served(kinds)},
            }
        },
    }


def _ok() -> dict[str, Any]:
    return {"200": {"description": "ok; ETag holds the policy revision"}}


def _json_body(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {"content": {"application/json": {"schema": schema}}}
