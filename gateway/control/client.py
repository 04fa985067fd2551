"""A client of the control API (httpx), for the CLI and the lab.

Errors come back typed: ``ApiError`` carries the HTTP status and, for a refused
change, every issue the daemon found; ``ApiUnreachable`` says which socket or URL
failed and why (no daemon, or a permission the socket's mode denies).
"""

from __future__ import annotations

import json as jsonlib
import os
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import httpx

from gateway.errors import ConfigError

from .untrusted import parse_json

DEFAULT_SOCKET: Final = Path("/run/nvgw/nvgw.sock")  # where `nvgw run` serves by default
TIMEOUT_S: Final = 30.0  # what a small request may take, a whole-policy change included
# A request's time-out grows with its body: a batch or an apply of 100,000 records
# (about 10 MB of JSON) took 7 s on SQLite and 49 s on etcd on a loaded 2-core VM
# (one atomic transaction of 210,901 operations), so 100 kB a second allows twice that.
BODY_BYTES_PER_S: Final = 100_000


class ApiUnreachable(ConnectionError):
    """No answer from the API: the message names where we looked and why it failed."""


class ApiError(Exception):
    """The daemon answered with an error."""

    def __init__(self, status: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def issues(self) -> list[dict[str, Any]]:
        return list(self.body.get("issues", []))


class ApiClient:
    """Talks to one daemon: over its Unix socket, or over HTTP(S) with a token; an
    https URL's certificate is checked against ``ca`` (a PEM file), or else against
    the system's CAs."""

    def __init__(
        self,
        socket: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        ca: Path | None = None,
    ) -> None:
        self.where = url or str(socket or DEFAULT_SOCKET)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url is not None:
            verify = _trusting(ca) if ca is not None else True
            self._http = httpx.Client(
                base_url=url, headers=headers, timeout=TIMEOUT_S, verify=verify
            )
        else:
            transport = httpx.HTTPTransport(uds=os.fspath(socket or DEFAULT_SOCKET))
            self._http = httpx.Client(
                transport=transport, base_url="http://nvgw", headers=headers, timeout=TIMEOUT_S
            )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        size: int | None = None,
        if_revision: int | None = None,
    ) -> dict[str, Any]:
        """One call; the decoded JSON answer, or ApiError / ApiUnreachable.
        ``size``: the body's, when ``content`` is a stream (a progress bar's chunks)."""
        headers = {"If-Match": f'"{if_revision}"'} if if_revision is not None else {}
        if json is not None:  # encoded here, as httpx would, to know the body's size
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        if isinstance(content, bytes):
            size = len(content)
        timeout = TIMEOUT_S + (size or 0) / BODY_BYTES_PER_S
        try:
            response = self._http.request(
                method, path, params=query, content=content, headers=headers, timeout=timeout
            )
        except httpx.ReadTimeout:
            late = f"no answer from the nvgw API at {self.where} within {timeout:.0f} s"
            if method != "GET":
                late += (
                    ": the change may still be committed; read the policy's revision"
                    " (nvgw policy export) before sending it again"
                )
            raise ApiUnreachable(late) from None
        except httpx.TransportError as error:
            why = _why(error)
            raise ApiUnreachable(f"cannot reach the nvgw API at {self.where}: {why}") from None
        try:
            body = parse_json(response.content, f"the answer from {self.where}")
        except ConfigError:
            body = None
        if not isinstance(body, dict):  # not the daemon's JSON: a proxy's page, say
            body = {"error": response.text[:500] or response.reason_phrase}
        if response.is_error:
            raise ApiError(response.status_code, str(body.get("error", body)), body)
        return body


def _trusting(ca: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as error:
        raise ApiUnreachable(f"cannot use --api-ca {ca}: {error.strerror or error}") from None


def _why(error: httpx.TransportError) -> str:
    cause = error.__context__ or error.__cause__
    text = str(cause or error)
    if any(isinstance(link, ssl.SSLCertVerificationError) for link in _chain(error)):
        return f"{text} (--api-ca FILE names the CA that signed the daemon's certificate)"
    if isinstance(cause, PermissionError) or "Permission denied" in text:
        return f"{text} (the socket admits root and the daemon's user only)"
    if isinstance(cause, FileNotFoundError | ConnectionRefusedError) or "No such file" in text:
        return f"{text} (is `nvgw run` running with this --api?)"
    return text


def _chain(error: BaseException) -> list[BaseException]:
    """The error and what caused it, down to the first (httpx wraps httpcore's, which
    wraps the ssl module's)."""
    chain = [error]
    while (link := chain[-1].__cause__ or chain[-1].__context__) and len(chain) < 16:
        chain.append(link)
    return chain
