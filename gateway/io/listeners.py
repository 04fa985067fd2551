"""The daemon's listeners: the control API (Unix socket; TCP with a token, over TLS)
and the metrics endpoint, whatever the node's role.

Everything here is bound before the data plane starts and while still root: a socket
already taken stops start-up with its reason, and the token and TLS key may be
readable by root alone. The API's Unix socket is handed to the daemon's user by fd
when privileges drop (never through a path a link could be swapped in for).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from gateway.control import (
    ApiListenError,
    bind_tcp,
    bind_unix,
    hand_over_socket,
    protect,
    read_token,
    tls_context,
)
from gateway.control import serve as serve_api
from gateway.dataplane import Counters, HostTables
from gateway.netnames import format_host_port
from gateway.telemetry import DataplaneCollector, MetricsServer, serve_metrics


@dataclass(frozen=True)
class ApiListen:
    """Where the control API listens: a Unix socket (0600), and TCP with a token,
    over TLS with a certificate and its key (which loopback may do without)."""

    socket: Path
    tcp: str | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class ApiListeners:
    """The API's bound sockets (none with ``--no-api``). TCP's token and TLS are read
    first, so a refused TCP listen leaves nothing bound."""

    def __init__(self, api: ApiListen | None) -> None:
        self.api = api
        self.sockets: list[socket.socket] = []
        self._token: str | None = None
        self._tls: ssl.SSLContext | None = None
        if api is None:
            return
        tcp = None
        if api.tcp is None:
            if api.token_file or api.tls_cert or api.tls_key:
                raise ApiListenError(
                    errno.EINVAL, "--api-token-file and --api-tls-* go with --api-tcp only"
                )
        else:
            if api.token_file is None:
                raise ApiListenError(errno.EINVAL, "--api-tcp needs --api-token-file")
            if (api.tls_cert is None) != (api.tls_key is None):
                raise ApiListenError(errno.EINVAL, "--api-tls-cert and --api-tls-key go together")
            if api.tls_cert is not None and api.tls_key is not None:
                self._tls = tls_context(api.tls_cert, api.tls_key)
            self._token = read_token(api.token_file)
            tcp = bind_tcp(api.tcp, tls=self._tls is not None)
        try:
            unix = bind_unix(api.socket)
        except OSError:
            if tcp is not None:
                tcp.close()
            raise
        self.sockets = [unix] if tcp is None else [unix, tcp]

    def serve(self, tg: TaskGroup, app: ASGIApp) -> None:
        for sock in self.sockets:
            served, tls = protect(app, sock, self._token, self._tls)
            tg.start_soon(serve_api, served, sock, tls)

    def hand_over(self, uid: int, gid: int) -> None:
        """Give the Unix socket to the daemon's user (by fd: never through a link)."""
        if self.api is not None:
            hand_over_socket(self.api.socket, uid, gid)

    def unix_path(self) -> str | None:
        return str(self.api.socket) if self.api else None

    def tcp_address(self) -> str | None:
        """Where the API listens on TCP (the port the kernel chose, for port 0)."""
        for sock in self.sockets:
            if sock.family != socket.AF_UNIX:
                host, port = sock.getsockname()[:2]
                return format_host_port(host, port)
        return None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        if self.api is not None:
            # As the daemon's user it may not own the directory: the next start clears it.
            with contextlib.suppress(PermissionError):
                self.api.socket.unlink(missing_ok=True)


def open_metrics(
    listen: str,
    node: str,
    counters: Counters,
    tables: Callable[[], HostTables],
    kernel_drops: Callable[[], int],
    reloads: Callable[[], dict[str, int]],
    changes: Callable[[], dict[str, int]],
) -> MetricsServer:
    """``/metrics`` at ``listen``, read from the node's counters at scrape time."""
    registry = CollectorRegistry()
    registry.register(DataplaneCollector(node, counters, tables, kernel_drops, reloads, changes))
    return serve_metrics(registry, listen)
