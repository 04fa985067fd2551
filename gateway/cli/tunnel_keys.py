"""``nvgw tunnel genkey`` / ``nvgw tunnel pubkey``: WireGuard keys as ``wg`` makes them.

Both read stdin and write stdout, so a key goes from one to the other (and into a
file) through a pipe, never a command line: ``nvgw tunnel genkey | tee wg.key |
nvgw tunnel pubkey``. The private key is a file on the gateway node
(``nodes.NAME.tunnel_keys``), readable by its owner only (``umask 077`` first); the
public key is what the peer's config names. They join the registry's ``nvgw tunnel``
group (add, get, remove: ``verbs.py``) rather than a group of their own.
"""

from __future__ import annotations

import base64
import os
import sys

import typer

from gateway.cli.tunnel_show import show
from gateway.policy import decode_key
from gateway.wireguard import KEY_SIZE, public_key_of

# Curve25519 clamping (RFC 7748 sec. 5), as ``wg genkey`` writes its keys: X25519
# clamps anyway, so the same key prints the same public key either way.
_LOW_BITS, _HIGH_BIT, _SECOND_HIGH = 0xF8, 0x7F, 0x40


def genkey() -> None:
    """Print a new private key (base64, as `wg genkey`)."""
    key = bytearray(os.urandom(KEY_SIZE))
    key[0] &= _LOW_BITS
    key[-1] = (key[-1] & _HIGH_BIT) | _SECOND_HIGH
    sys.stdout.write(base64.b64encode(key).decode() + "\n")


def pubkey() -> None:
    """Read a private key on stdin, print its public key (as `wg pubkey`)."""
    try:
        secret = decode_key(sys.stdin.read().strip())
    except ValueError as error:
        sys.stderr.write(f"nvgw tunnel pubkey: {error}\n")
        raise typer.Exit(1) from None
    sys.stdout.write(base64.b64encode(public_key_of(secret)).decode() + "\n")


def register(app: typer.Typer) -> None:
    """Add genkey, pubkey and show (``tunnel_show.py``) to the ``tunnel`` group the
    registry's verbs made."""
    group = next(g.typer_instance for g in app.registered_groups if g.name == "tunnel")
    assert group is not None
    group.command("genkey")(genkey)
    group.command("pubkey")(pubkey)
    group.command("show")(show)
