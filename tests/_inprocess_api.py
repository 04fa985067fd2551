"""The nvgw CLI's verbs against a control API running in this process: the real
app, store and config file, reached through httpx instead of the daemon's socket,
so the verbs' output can be checked without root or a daemon."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from starlette.types import ASGIApp

from gateway.cli import verbs
from gateway.control.client import ApiClient


class _InProcess(httpx.BaseTransport):
    """A synchronous transport (the CLI's client is synchronous) that hands each
    request to an ASGI app running in a blocking portal's event loop."""

    def __init__(self, app: ASGIApp, portal: anyio.from_thread.BlockingPortal) -> None:
        self._app = app
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._portal.call(self._send, request, request.read())

    async def _send(self, request: httpx.Request, body: bytes) -> httpx.Response:
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await client.request(
                request.method, request.url, headers=request.headers, content=body
            )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@contextmanager
def cli_talks_to(
    app: ASGIApp, portal: anyio.from_thread.BlockingPortal, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every verb's client, within the block, talks to ``app`` (whatever ``--api``)."""

    def client(target: Any) -> ApiClient:
        api = ApiClient(Path("/nonexistent"))
        api._http = httpx.Client(transport=_InProcess(app, portal), base_url="http://nvgw")
        return api

    with monkeypatch.context() as patched:
        patched.setattr(verbs.Target, "client", client)
        yield
