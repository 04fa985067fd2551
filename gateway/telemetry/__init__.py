"""Telemetry: the Prometheus collector over the data plane's counters, the /metrics
server, and structured logging."""

from __future__ import annotations

from .collector import DataplaneCollector
from .logs import configure_logging
from .server import MetricsServer, serve_metrics

__all__ = [
    "DataplaneCollector",
    "MetricsServer",
    "configure_logging",
    "serve_metrics",
]
