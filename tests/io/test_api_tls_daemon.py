"""The TCP API off loopback, end to end: a daemon in a namespace of its own serves it
on its PA (198.18.0.1) over TLS with a throwaway certificate; the CLI in that
namespace gets in with the CA and the token, and with nothing less; without TLS such
a daemon refuses to start, saying why. Once per backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab import netns
from tests._tls import Pki, make_pki
from tests.conftest import require_root

from ._host import host_namespace
from .test_api_daemon import CONFIGS, Daemon, daemon_in_namespace

pytestmark = pytest.mark.netns
PA = "198.18.0.1"  # host1's PA, on pa0 in the daemon's namespace


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Daemon, Pki]]:
    require_root()
    namespace = f"nvt-tls{os.getpid() % 10000}{request.param[0]}"
    directory = tmp_path_factory.mktemp(f"tls-{request.param}")
    pki = make_pki(directory, [PA])
    tcp = ["--api-tcp", f"{PA}:0", "--api-token-file", str(directory / "token"),
           "--api-tls-cert", str(pki.cert), "--api-tls-key", str(pki.key)]  # fmt: skip
    with daemon_in_namespace(namespace, directory, request.param, tcp_args=tcp) as running:
        yield running, pki


def nvgw_in(namespace: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "gateway", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def test_the_cli_gets_in_over_tls_with_the_ca_and_the_token(served: tuple[Daemon, Pki]) -> None:
    daemon, pki = served
    assert daemon.ready["api_tcp"].startswith(f"{PA}:")
    url = f"https://{daemon.ready['api_tcp']}"
    get = ["lookup-record", "get", "--vm", "blue1", "--json", "--url", url]
    token = ["--token-file", str(daemon.token_file)]
    ok = nvgw_in(daemon.namespace, *get, *token, "--api-ca", str(pki.ca))
    assert ok.returncode == 0, ok.stderr
    assert [r["ca"] for r in json.loads(ok.stdout)] == ["10.10.10.11"]
    by_env = nvgw_in(daemon.namespace, *get, *token, NVGW_API_CA=str(pki.ca))
    assert by_env.returncode == 0, by_env.stderr
    untrusted = nvgw_in(daemon.namespace, *get, *token)
    assert untrusted.returncode == 1 and "certificate verify failed" in untrusted.stderr
    assert "--api-ca FILE" in untrusted.stderr
    no_token = nvgw_in(daemon.namespace, *get, "--api-ca", str(pki.ca))
    assert no_token.returncode == 1 and "bearer token is required" in no_token.stderr
    clear = nvgw_in(daemon.namespace, *get[:-1], url.replace("https", "http"), *token)
    assert clear.returncode == 1 and "10.10.10.11" not in clear.stdout


def test_off_loopback_without_tls_a_daemon_refuses_to_start(tmp_path: Path) -> None:
    require_root()
    namespace = f"nvt-notls{os.getpid() % 10000}"
    config = tmp_path / "two-hosts.yaml"
    config.write_bytes((CONFIGS / "two-hosts.yaml").read_bytes())
    token = tmp_path / "token"
    token.touch(mode=0o600)
    token.write_text("a-token-long-enough-to-count\n")
    try:
        host_namespace(namespace)
        refused = nvgw_in(
            namespace, "run", "-c", str(config), "--node", "host1",
            "--metrics", "127.0.0.1:0", "--api", str(tmp_path / "api.sock"),
            "--api-tcp", f"{PA}:0", "--api-token-file", str(token),
        )  # fmt: skip
    finally:
        netns.remove(namespace)
    assert refused.returncode == 1, refused.stderr
    assert f"--api-tcp {PA}:0: {PA} is not a loopback address" in refused.stderr
    assert "--api-tls-cert FILE --api-tls-key FILE" in refused.stderr
