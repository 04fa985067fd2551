"""Serving the control API with hypercorn, on whichever anyio backend runs the daemon.

The Unix socket is the default and the safe one: it is created mode 0600, owned by
the daemon's user, so the kernel lets only that user and root connect (the check
SO_PEERCRED would repeat; hypercorn gives the app no handle on the connection to
repeat it with). A stale socket left by a crash is replaced; a live one, answered by
another daemon, is refused rather than stolen. TCP is opt-in and needs a bearer
token read from a file (never from the command line, where ``ps`` shows it), and
TLS (a certificate and key) on any address but loopback, where the token would
otherwise cross the network in clear. Both
hypercorn backends are imported up front: after the daemon drops to its own user,
the Python installation may no longer be readable.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import ssl
import stat
from pathlib import Path
from typing import Final

import anyio
import hypercorn.asyncio
import hypercorn.trio
import sniffio
from hypercorn.config import Config
from starlette.types import ASGIApp

from gateway.netnames import ListenAddressError, parse_listen_address

from .api import BearerToken

BACKLOG: Final = 64


class ApiListenError(OSError):
    """The API cannot listen where it was asked to: the message says why and what to do."""


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600: the umask makes it so as bind
    creates it, so no chmod by name (which would follow a link swapped in) follows."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # never world-connectable, not even for an instant
    try:
        sock.bind(os.fspath(path))
    except OSError as error:
        sock.close()
        raise ApiListenError(
            error.errno, f"cannot bind the API socket {path}: {error.strerror}"
        ) from None
    finally:
        os.umask(previous)
    sock.listen(BACKLOG)
    return sock


def hand_over_socket(path: Path, uid: int, gid: int) -> None:
    """Give the bound socket to the daemon's user (a 0600 socket admits its owner and
    root), by fd rather than by name: ``path`` is opened without following a link
    (O_PATH | O_NOFOLLOW), must still be a socket, and that inode alone changes owner.
    A link or a file swapped in meanwhile is refused, never given away by root."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ApiListenError(
                errno.EEXIST, f"{path} is no longer the API socket: its owner stays as it is"
            )
        os.chown(f"/proc/self/fd/{fd}", uid, gid)  # the inode opened, whatever the name holds
    finally:
        os.close(fd)


def _clear_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiListenError(errno.EEXIST, f"{path} exists and is not a socket: not ours to remove")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        path.unlink()  # nobody answers: a crashed daemon's leftover
        return
    finally:
        probe.close()
    raise ApiListenError(
        errno.EADDRINUSE, f"another daemon serves its API on {path}: give this one --api PATH"
    )


def bind_tcp(listen: str, tls: bool) -> socket.socket:
    """A listening TCP socket at ``listen`` (HOST:PORT). Without ``tls``, only on a
    loopback address: elsewhere the bearer token would cross the network in clear."""
    try:
        host, port = parse_listen_address(listen, "--api-tcp")
    except ListenAddressError as error:
        raise ApiListenError(errno.EINVAL, str(error)) from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ApiListenError(errno.EINVAL, f"--api-tcp {listen!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    if not tls and not ipaddress.ip_address(address[0].partition("%")[0]).is_loopback:
        raise ApiListenError(
            errno.EINVAL,
            f"--api-tcp {listen}: {address[0]} is not a loopback address, and the bearer "
            "token would cross the network in clear: serve it with TLS "
            "(--api-tls-cert FILE --api-tls-key FILE) or listen on 127.0.0.1",
        )
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ApiListenError(error.errno, f"cannot listen on {listen}: {error.strerror}") from None
    sock.listen(BACKLOG)
    return sock


def protect(
    app: ASGIApp, sock: socket.socket, token: str | None, tls: ssl.SSLContext | None
) -> tuple[ASGIApp, ssl.SSLContext | None]:
    """What a listener serves, and over what: a Unix socket's app as it is (its mode
    says who may connect); a TCP listener's behind the token, over ``tls`` if any."""
    if sock.family == socket.AF_UNIX:
        return app, None
    if token is None:
        raise ApiListenError(errno.EINVAL, "the API on TCP needs --api-token-file")
    return BearerToken(app, token), tls


def tls_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """The API's TLS, as hypercorn sets it up (TLS 1.2 or later, no compression),
    loaded now: before the daemon drops to its own user, who may not read the key."""
    config = Config()
    config.certfile, config.keyfile = os.fspath(certfile), os.fspath(keyfile)
    try:
        context = config.create_ssl_context()
    except (OSError, ssl.SSLError) as error:
        raise ApiListenError(
            errno.EINVAL,
            f"cannot use --api-tls-cert {certfile} --api-tls-key {keyfile}: "
            f"{error.strerror or error}",
        ) from None
    assert context is not None
    return context


class _PreparedTls(Config):
    """hypercorn's Config with a TLS context made earlier (``tls_context``)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._context


async def serve(app: ASGIApp, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
    """Serve ``app`` on a bound, listening socket until cancelled, over ``tls`` if given.

    Cancellation becomes hypercorn's own shutdown (its trigger fires, it closes its
    connections within ``graceful_timeout``), in a shielded scope: cancelling
    hypercorn's asyncio server while a connection is open raises InvalidStateError
    out of it (pgjones/hypercorn#184), which would end the daemon with a traceback.
    A trigger of ours also keeps hypercorn from installing SIGINT/SIGTERM handlers
    over the daemon's."""
    config = Config() if tls is None else _PreparedTls(tls)
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns and closes it from here
    config.errorlog = _quiet_log()
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = anyio.Event()
    hypercorn_serve = (
        hypercorn.trio.serve
        if sniffio.current_async_library() == "trio"
        else hypercorn.asyncio.serve
    )

    async def run() -> None:
        with anyio.CancelScope(shield=True):
            await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()


def _quiet_log() -> logging.Logger:
    """hypercorn's own messages, warnings and worse only: the daemon logs the rest."""
    logger = logging.getLogger("nvgw.api.hypercorn")
    logger.setLevel(logging.WARNING)
    return logger
