"""Control: where policy meets files, people and other programs.

Config files (YAML with line numbers in every error) and every file nvgw writes, the
bounded readers for untrusted YAML and JSON, the policy store, the HTTP API, its
server and client, the registry of entry kinds, ``nvgw trace``, ``policy diff`` and
the Windows import. Other packages import these names from here, never from the
modules; they load on first use (``gateway._lazy``), so a command that reads a
config does not pay for the HTTP server.
"""

from __future__ import annotations

from gateway._lazy import lazy_exports

# Imported now, not lazily: each shares its name with its module, and a module
# imported later (``gateway.control.trace``) would shadow a lazy export of that name.
from .diff import diff as diff
from .trace import TraceError as TraceError
from .trace import trace as trace

_EXPORTS = {
    # config files, and every file nvgw writes
    "line_of": ".config_file",
    "load_config": ".config_file",
    "new_yaml": ".config_file",
    "policy_from_document": ".config_file",
    "read_document": ".config_file",
    "to_plain": ".config_file",
    "write_document": ".config_file",
    "replace_file": ".safe_files",
    "parse_json": ".untrusted",
    "read_bounded": ".untrusted",
    # the policy store
    "DEFAULT_STORE": ".store",
    "STORE_ERRORS": ".store",
    "ApplyError": ".store",
    "Backend": ".store",
    "PolicyStore": ".store",
    "StoreConflict": ".store",
    "open_backend": ".store",
    "parse_store": ".store",
    "policy_json": ".entries",
    "replace_all": ".edits",
    # the API: its app, server, token and client
    "build_api": ".api",
    "counters_json": ".api",
    "node_sessions": ".nat_sessions",
    "node_tunnels": ".tunnel_state",
    "ApiListenError": ".api_server",
    "bind_tcp": ".api_server",
    "bind_unix": ".api_server",
    "hand_over_socket": ".api_server",
    "protect": ".api_server",
    "serve": ".api_server",
    "tls_context": ".api_server",
    "read_token": ".api_token",
    "DEFAULT_SOCKET": ".client",
    "ApiClient": ".client",
    "ApiError": ".client",
    "ApiUnreachable": ".client",
    # the registry of entry kinds
    "KINDS": ".kinds",
    "Kind": ".kinds",
    "schema": ".kinds",
    "served": ".kinds",
    # the Windows import
    "Export": ".hnv_import",
    "NodeSpec": ".hnv_import",
    "import_hnv": ".hnv_import",
    "parse_nodes": ".hnv_import",
    "read_export": ".hnv_import",
}
__all__ = sorted([*_EXPORTS, "TraceError", "diff", "trace"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
