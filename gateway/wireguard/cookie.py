"""mac1, mac2 and cookie replies (paper 5.3 and 5.4.7): DoS mitigation before any DH.

Every handshake message ends in mac1 = MAC(HASH("mac1----" || receiver's public
key), message up to mac1), so a message for someone else's key costs us one BLAKE2s
and no Curve25519. Under load (the caller decides when: its queue, its rate), a
handshake message must also carry mac2 = MAC(cookie, message up to mac2), where the
cookie is MAC(secret, the sender's IP address and port) and the secret is random and
replaced every two minutes; without a valid mac2 the sender gets a cookie reply
instead of a response: the cookie, encrypted with XChaCha20-Poly1305 under
HASH("cookie--" || our public key), the message's mac1 as associated data.

``CookieChecker`` is the receiving side (one per static key); ``CookieGenerator``
the sending side (one per peer: it keys mac1 by the peer's public key and keeps the
cookie the peer gave us). Time is an argument; randomness is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from hmac import compare_digest
from typing import Final

from gateway.wireguard.crypto import (
    HASH_SIZE,
    MAC_SIZE,
    XNONCE_SIZE,
    CryptoRefused,
    digest,
    mac,
    xaead_open,
    xaead_seal,
)
from gateway.wireguard.messages import CookieReply, build_cookie_reply

LABEL_MAC1: Final = b"mac1----"
LABEL_COOKIE: Final = b"cookie--"
# Secrets and cookies live two minutes (wireguard-go's CookieRefreshTime, the paper's
# "every two minutes"); the checker makes a new secret on the first reply after that.
COOKIE_REFRESH_S: Final = 120.0
_NEVER: Final = float("-inf")


def _macs_at(message: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Offsets of mac1 and mac2: the last 32 bytes of a handshake message."""
    mac2 = len(message) - MAC_SIZE
    return mac2 - MAC_SIZE, mac2


def _keys(public_key: bytes) -> tuple[bytes, bytes]:
    """(mac1 key, cookie encryption key) of the party whose public key this is."""
    return digest(LABEL_MAC1, public_key), digest(LABEL_COOKIE, public_key)


class CookieChecker:
    """Checks mac1 and mac2 of handshake messages sent to ``public_key``, and writes
    cookie replies."""

    __slots__ = ("_cookie_key", "_mac1_key", "_random", "_secret", "_secret_set", "refresh_s")

    def __init__(
        self,
        public_key: bytes,
        random_bytes: Callable[[int], bytes],
        refresh_s: float = COOKIE_REFRESH_S,
    ) -> None:
        self._mac1_key, self._cookie_key = _keys(public_key)
        self._random = random_bytes
        self.refresh_s = refresh_s
        self._secret = bytes(HASH_SIZE)
        self._secret_set = _NEVER

    def check_mac1(self, message: bytes | memoryview) -> bool:
        at1, at2 = _macs_at(message)
        return _equal(mac(self._mac1_key, message[:at1]), message[at1:at2])

    def check_mac2(self, message: bytes | memoryview, source: bytes, now: float) -> bool:
        """Whether mac2 is keyed by the cookie we would give ``source`` now (a secret
        older than ``refresh_s`` validates nothing)."""
        if now - self._secret_set > self.refresh_s:
            return False
        _, at2 = _macs_at(message)
        cookie = mac(self._secret, source)
        return _equal(mac(cookie, message[:at2]), message[at2:])

    def create_cookie_reply(
        self, message: bytes | memoryview, receiver: int, source: bytes, now: float
    ) -> bytes:
        """The cookie reply to a handshake message from ``source`` whose sender index
        is ``receiver``; a new secret first when the old one is ``refresh_s`` old."""
        if now - self._secret_set > self.refresh_s:
            self._secret = self._random(HASH_SIZE)
            self._secret_set = now
        at1, at2 = _macs_at(message)
        nonce = self._random(XNONCE_SIZE)
        cookie = mac(self._secret, source)
        sealed = xaead_seal(self._cookie_key, nonce, cookie, bytes(message[at1:at2]))
        return build_cookie_reply(CookieReply(receiver, nonce, sealed))


class CookieGenerator:
    """Fills mac1 and mac2 of the handshake messages we send to one peer, and takes
    the cookie replies the peer sends us."""

    __slots__ = ("_cookie", "_cookie_key", "_cookie_set", "_last_mac1", "_mac1_key", "refresh_s")

    def __init__(self, peer_public_key: bytes, refresh_s: float = COOKIE_REFRESH_S) -> None:
        self._mac1_key, self._cookie_key = _keys(peer_public_key)
        self.refresh_s = refresh_s
        self._cookie = bytes(MAC_SIZE)
        self._cookie_set = _NEVER
        self._last_mac1: bytes | None = None

    def add_macs(self, message: bytearray, now: float) -> None:
        """Write mac1, and mac2 when we hold a cookie younger than ``refresh_s``."""
        at1, at2 = _macs_at(message)
        mac1 = mac(self._mac1_key, bytes(message[:at1]))
        message[at1:at2] = mac1
        self._last_mac1 = mac1
        if now - self._cookie_set <= self.refresh_s:
            message[at2:] = mac(self._cookie, bytes(message[:at2]))

    def consume_cookie_reply(self, reply: CookieReply, now: float) -> bool:
        """Take the cookie if the reply answers our last handshake message (its mac1 is
        the associated data); False for anything else."""
        if self._last_mac1 is None:
            return False
        try:
            cookie = xaead_open(
                self._cookie_key, reply.nonce, reply.encrypted_cookie, self._last_mac1
            )
        except CryptoRefused:
            return False
        self._cookie, self._cookie_set = cookie, now
        return True


def _equal(a: bytes, b: bytes | memoryview) -> bool:
    """Constant-time comparison (a MAC compared byte by byte leaks how much matched)."""
    return compare_digest(a, bytes(b))
