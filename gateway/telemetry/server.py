"""The /metrics endpoint: prometheus-client's own server, on loopback by default.

It runs in prometheus-client's thread, not in the event loop, so a slow scrape
never delays a batch and a busy data plane never starves a scrape. Port 0 picks a
free port; the bound address is returned so the daemon can report it when ready.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server

from gateway.netnames import parse_listen_address

# How long a stop waits between wake-ups of the server's loop (see ``close``).
WAKE_INTERVAL_S: Final = 0.02


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: object

    def close(self) -> None:
        """Stop serving, at once. The server's loop (socketserver's ``serve_forever``)
        looks for a stop request only every half second, between waits for a
        connection, which made every daemon's stop half a second longer; a connection
        of our own wakes it as soon as the request is made."""
        stopping = threading.Thread(target=self._server.shutdown)  # type: ignore[attr-defined]
        stopping.start()
        while stopping.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection(self._wake_address(), WAKE_INTERVAL_S).close()
            stopping.join(WAKE_INTERVAL_S)
        self._server.server_close()  # type: ignore[attr-defined]

    def _wake_address(self) -> tuple[str, int]:
        """Where a connection reaches the server: a wildcard address by loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return host, self.port


def serve_metrics(registry: CollectorRegistry, listen: str) -> MetricsServer:
    """Serve ``registry`` at ``listen`` (``--metrics`` HOST:PORT; ``ListenAddressError``
    names the flag if it is not one)."""
    host, port = parse_listen_address(listen, "--metrics")
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server)
