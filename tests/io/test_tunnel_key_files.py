"""The gateway's tunnel keys, read from the files its policy names (start and every
reload): refused, with the file named, when others may read it or it holds no key;
the key itself never in a message."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.io.gateway import read_tunnel_keys
from gateway.policy import compile_policy, load_policy
from tests.dataplane._gateway_lab import gateway_snapshot
from tests.dataplane._tunnel_lab import GW_KEY, PORT, tunnel_document

PSK = bytes(range(200, 232))


def _write(path: Path, raw: bytes, mode: int = 0o600) -> str:
    path.write_text(base64.b64encode(raw).decode() + "\n")
    os.chmod(path, mode)
    return str(path)


def _policy(private: str, preshared: str | None = None):  # type: ignore[no-untyped-def]

    def edit(doc: dict) -> None:
        tunnel_document(doc)
        doc["nodes"]["gw"]["tunnel_keys"] = {PORT: private}
        if preshared is not None:
            doc["tunnels"][0]["preshared_key_file"] = preshared

    return gateway_snapshot(edit).policy


def test_the_keys_are_read_from_owner_only_files(tmp_path: Path) -> None:
    private = _write(tmp_path / "wg.key", GW_KEY)
    preshared = _write(tmp_path / "blue.psk", PSK, 0o400)
    keys = read_tunnel_keys(_policy(private, preshared), "gw")
    assert dict(keys.private) == {PORT: GW_KEY}
    assert dict(keys.preshared) == {"onprem-blue": PSK}
    shown = repr(keys)
    assert base64.b64encode(GW_KEY).decode() not in shown and "51820" in shown


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_file_others_may_read_is_refused_naming_it(tmp_path: Path, mode: int) -> None:
    private = _write(tmp_path / "wg.key", GW_KEY, mode)
    with pytest.raises(ConfigError) as caught:
        read_tunnel_keys(_policy(private), "gw")
    [issue] = caught.value.issues
    assert (issue.path, issue.value) == (f"nodes.gw.tunnel_keys.{PORT}", private)
    assert f"mode {mode:04o}" in issue.message and "chmod 600" in issue.message


@pytest.mark.parametrize(
    "content", [b"not a key\n", base64.b64encode(bytes(31)) + b"\n", b"\xff" * 44, b""]
)
def test_a_file_without_a_key_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    private = _write(tmp_path / "wg.key", GW_KEY)
    preshared = tmp_path / "blue.psk"
    preshared.write_bytes(content)
    os.chmod(preshared, 0o600)
    with pytest.raises(ConfigError) as caught:
        read_tunnel_keys(_policy(private, str(preshared)), "gw")
    [issue] = caught.value.issues
    assert (issue.path, issue.value) == ("tunnels[0].preshared_key_file", str(preshared))
    assert "base64 of 32 bytes" in issue.message


def test_every_file_that_will_not_do_is_named_in_one_pass(tmp_path: Path) -> None:
    private = _write(tmp_path / "wg.key", GW_KEY, 0o660)
    with pytest.raises(ConfigError) as caught:
        read_tunnel_keys(_policy(private, str(tmp_path / "gone.psk")), "gw")
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [f"nodes.gw.tunnel_keys.{PORT}", "tunnels[0].preshared_key_file"]
    text = str(caught.value)
    assert "cannot read this key file: No such file or directory" in text
    assert base64.b64encode(GW_KEY).decode() not in text


def test_a_link_to_an_owner_only_file_is_followed(tmp_path: Path) -> None:
    """Secret stores mount keys through links: the mode that counts is the key's."""
    link = tmp_path / "wg.key"
    link.symlink_to(_write(tmp_path / "real.key", GW_KEY))
    assert dict(read_tunnel_keys(_policy(str(link)), "gw").private) == {PORT: GW_KEY}


def test_no_tunnels_no_keys() -> None:
    policy = load_policy({"routing_domains": [], "nodes": {"gw": {"role": "gateway"}}})
    keys = read_tunnel_keys(compile_policy(policy).policy, "gw")
    assert not keys.private and not keys.preshared
