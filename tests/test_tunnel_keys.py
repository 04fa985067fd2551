"""``nvgw tunnel genkey`` / ``pubkey``: keys as ``wg`` writes them, stdin to stdout."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy import decode_key

# RFC 7748 sec. 6.1: Alice's private key and the public key X25519 gives it.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_pubkey_prints_the_public_key_of_the_private_key_on_stdin() -> None:
    result = CliRunner().invoke(app, ["tunnel", "pubkey"], input=_b64(ALICE_PRIVATE) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == _b64(ALICE_PUBLIC) + "\n"


def test_genkey_prints_a_new_clamped_key_each_time() -> None:
    runner = CliRunner()
    first, second = (runner.invoke(app, ["tunnel", "genkey"]) for _ in range(2))
    assert first.exit_code == second.exit_code == 0
    assert first.stdout != second.stdout
    key = decode_key(first.stdout.strip())  # base64 of 32 bytes, one line
    assert first.stdout.endswith("=\n")
    assert key[0] & 7 == 0 and key[31] & 0xC0 == 0x40  # clamped as wg genkey clamps
    piped = runner.invoke(app, ["tunnel", "pubkey"], input=first.stdout)
    assert piped.exit_code == 0 and len(decode_key(piped.stdout.strip())) == 32


def test_pubkey_refuses_what_is_no_key() -> None:
    result = CliRunner().invoke(app, ["tunnel", "pubkey"], input="not a key\n")
    assert result.exit_code == 1
    assert "base64 of 32 bytes" in result.output and result.stdout.count("=") == 0


def test_the_registry_gives_the_tunnel_verbs_beside_them() -> None:
    result = CliRunner().invoke(app, ["tunnel", "--help"])
    for verb in ("add", "get", "remove", "genkey", "pubkey"):
        assert verb in result.output


def test_tunnel_add_get_and_remove_through_the_api(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The registry's verbs for tunnels, against host1's API over the gateway config
    (which has Blue's tunnel): Red gets one with the same on-prem prefix (tenants may
    overlap), and an invalid one is refused at its path."""
    from tests.control._gateway_config import RED, gateway_config
    from tests.test_cli import nvgw, verbs_talk_to_host1

    with verbs_talk_to_host1(gateway_config(tmp_path), monkeypatch):
        peer = _b64(ALICE_PUBLIC)
        prefixes = ("--allowed-ip", "172.16.60.0/24", "--allowed-ip", "172.16.61.0/24")
        added = nvgw("tunnel", "add", "--name", "onprem-red", "--rdid", RED, "--node", "gw",
                     "--listen-port", "51820", "--public-key", peer, *prefixes)  # fmt: skip
        assert added.exit_code == 0, added.output
        found = json.loads(nvgw("tunnel", "get", "--rdid", RED, "--json").output)
        assert found == [
            {"name": "onprem-red", "rdid": RED, "node": "gw", "listen_port": 51820,
             "public_key": peer, "allowed_ips": ["172.16.60.0/24", "172.16.61.0/24"]}
        ]  # fmt: skip
        refused = nvgw("tunnel", "add", "--name", "bad", "--rdid", RED, "--node", "gw",
                       "--listen-port", "51821", "--public-key", peer,
                       "--allowed-ip", "172.16.62.0/24")  # fmt: skip
        assert refused.exit_code == 1
        assert "tunnels[2].listen_port = 51821: node gw has no private key" in refused.output
        assert nvgw("tunnel", "remove", "--name", "onprem-red").exit_code == 0
        names = [t["name"] for t in json.loads(nvgw("tunnel", "get", "--json").output)]
        assert names == ["onprem-blue"]
