"""The /metrics endpoint: prometheus-client's own server, on loopback by default.

It runs in prometheus-client's thread, not in the event loop, so a slow scrape
never delays a batch and a busy data plane never starves a scrape. Port 0 picks a
free port; the bound address is returned so the daemon can report it when ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server


@dataclass
class MetricsServer:
    host: str
    port: int
    _server: object

    def close(self) -> None:
        self._server.shutdown()  # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9550``, ``[::1]:0`` or ``:9550`` (loopback) into host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (port 0..65535)")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def serve_metrics(registry: CollectorRegistry, listen: str) -> MetricsServer:
    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server)
