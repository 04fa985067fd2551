"""The TCP API's guards: the token file read as ssh reads a key, TLS a client checks
against its CA, and no token in clear off loopback (a daemon in a namespace does it
end to end in tests/io/test_api_tls_daemon.py)."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.control.api import build_api
from gateway.control.api_server import ApiListenError, bind_tcp, protect, serve, tls_context
from gateway.control.api_token import TokenFileError, read_token
from gateway.control.store import PolicyStore
from tests._tls import make_pki, write_token

from ._node import host1_prepare
from ._stores import seeded

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOKEN = "a-token-long-enough-to-count"


def test_the_token_is_the_first_line_only(tmp_path: Path) -> None:
    path = write_token(tmp_path / "token", f"  {TOKEN}  \r\nthe second line is a comment\n")
    assert read_token(path) == TOKEN


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o700])
def test_a_token_file_others_may_use_is_refused_as_ssh_would(tmp_path: Path, mode: int) -> None:
    path = write_token(tmp_path / "token")
    path.chmod(mode)
    if not mode & 0o077:
        assert read_token(path) == TOKEN  # 0700: still the owner's alone
        return
    with pytest.raises(TokenFileError) as refused:
        read_token(path)
    assert refused.value.strerror == (
        f"the API token file {path} is open to others (mode {mode:04o}): chmod 600 {path}"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("short\n" + TOKEN + "\n", "shorter than 16"),
        ("", "shorter than 16"),
        ("x" * 5000, "longer than 4096"),
    ],
)
def test_unusable_tokens_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    path = write_token(tmp_path / "token")
    path.write_text(content)
    with pytest.raises(TokenFileError, match=reason):
        read_token(path)
    with pytest.raises(TokenFileError, match="cannot read the API token file"):
        read_token(tmp_path / "missing")


def test_tcp_off_loopback_needs_tls_before_anything_is_bound() -> None:
    """198.18.0.1 is no address of this namespace: the refusal comes before bind."""
    with pytest.raises(ApiListenError) as refused:
        bind_tcp("198.18.0.1:0", tls=False)
    message = refused.value.strerror
    assert "198.18.0.1 is not a loopback address" in message
    assert "--api-tls-cert FILE --api-tls-key FILE" in message
    bind_tcp("127.0.0.1:0", tls=False).close()


def test_unusable_tls_files_are_named(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, ["127.0.0.1"])
    with pytest.raises(ApiListenError, match=r"cannot use --api-tls-cert .*No such file"):
        tls_context(tmp_path / "missing.pem", pki.key)
    with pytest.raises(ApiListenError, match="cannot use --api-tls-cert"):
        tls_context(pki.cert, pki.ca)  # a certificate where the key should be


async def loaded_store(tmp_path: Path) -> PolicyStore[Any]:
    """A store (``each_store``'s) seeded from a copy of the two-hosts config, loaded,
    swapping into nothing."""
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)

    async def swap(policy: Any) -> None:
        pass

    return await seeded(config, host1_prepare(), swap)


@pytest.mark.anyio
@pytest.mark.usefixtures("each_store")
async def test_the_api_over_tls_wants_the_token_and_a_trusted_ca(tmp_path: Path) -> None:
    """hypercorn on a real loopback socket, on both backends: the CA's client gets in
    with the token (any case of ``Bearer``), others are refused at the handshake."""
    store = await loaded_store(tmp_path)
    pki = make_pki(tmp_path, ["127.0.0.1"])
    sock = bind_tcp("127.0.0.1:0", tls=True)  # listening already: clients may connect
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    served, tls = protect(
        build_api(store, "host1", dict), sock, TOKEN, tls_context(pki.cert, pki.key)
    )
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, served, sock, tls)
        async with httpx.AsyncClient(base_url=url, verify=trusted) as client:
            right = await client.get("/v1/health", headers={"Authorization": f"bearer {TOKEN}"})
            assert right.status_code == 200 and right.json()["node"] == "host1"
            assert (await client.get("/v1/health")).status_code == 401
        async with httpx.AsyncClient(base_url=url) as untrusting:  # the system's CAs
            with pytest.raises(httpx.ConnectError) as refused:
                await untrusting.get("/v1/health")
            assert isinstance(_cause(refused.value), ssl.SSLCertVerificationError)
        async with httpx.AsyncClient(base_url=url.replace("https", "http")) as clear:
            with pytest.raises(httpx.TransportError):
                await clear.get("/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
        tg.cancel_scope.cancel()


def _cause(error: BaseException) -> BaseException:
    """The first cause in the chain (httpx on trio says no more than ``ConnectError``)."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return error


def test_the_cli_refuses_a_token_file_others_may_read(tmp_path: Path) -> None:
    token = write_token(tmp_path / "token")
    token.chmod(0o644)
    url = "https://127.0.0.1:1"
    get = ["lookup-record", "get", "--url", url, "--token-file", str(token)]
    result = CliRunner().invoke(cli, get, prog_name="nvgw")
    assert result.exit_code == 1 and f"chmod 600 {token}" in result.output
    plain = ["lookup-record", "get", "--url", "http://127.0.0.1:1", "--api-ca", str(token)]
    result = CliRunner().invoke(cli, plain, prog_name="nvgw")
    assert result.exit_code == 2 and "--api-ca is for an https:// --url" in result.output


@pytest.mark.anyio
@pytest.mark.usefixtures("each_store")
async def test_cancelling_the_server_with_a_connection_open_ends_it_cleanly(
    tmp_path: Path,
) -> None:
    """How the daemon stops its API (SIGTERM cancels its task group): a client still
    connected must not turn that into an error (pgjones/hypercorn#184 on asyncio)."""
    store = await loaded_store(tmp_path)
    sock = bind_tcp("127.0.0.1:0", tls=False)
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, build_api(store, "host1", dict), sock)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"GET /v1/health HTTP/1.1\r\nHost: nvgw\r\n\r\n")
            assert b"200" in await client.receive()  # served, and kept alive
            tg.cancel_scope.cancel()
