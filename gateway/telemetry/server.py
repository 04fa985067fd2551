"""The /metrics endpoint: prometheus-client's own server, on loopback by default.

It runs in prometheus-client's thread, not in the event loop, so a slow scrape
never delays a batch and a busy data plane never starves a scrape. Port 0 picks a
free port; the bound address is returned so the daemon can report it when ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server

from gateway.netnames import parse_listen_address


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: object

    def close(self) -> None:
        self._server.shutdown()  # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]


def serve_metrics(registry: CollectorRegistry, listen: str) -> MetricsServer:
    """Serve ``registry`` at ``listen`` (``--metrics`` HOST:PORT; ``ListenAddressError``
    names the flag if it is not one)."""
    host, port = parse_listen_address(listen, "--metrics")
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server)
