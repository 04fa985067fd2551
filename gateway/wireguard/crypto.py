"""WireGuard's primitives, named as the paper names them (section 5.4), and nothing else.

Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s needs: HASH (BLAKE2s-256), MAC (keyed
BLAKE2s-128, for mac1/mac2 and the cookie), HMAC over BLAKE2s, the HKDF built on it
(KDF1..KDF3), DH (X25519), AEAD (ChaCha20-Poly1305, a 64-bit little-endian counter in
the nonce's last 8 bytes) and XAEAD (XChaCha20-Poly1305, cookie replies only).

``cryptography`` gives X25519 and ChaCha20-Poly1305, ``hashlib`` BLAKE2s, and PyNaCl
(libsodium) XChaCha20-Poly1305, which ``cryptography`` lacks (decisions.md). Every
function here takes and returns bytes, so the handshake reads like the paper.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

KEY_SIZE: Final = 32  # X25519 keys, ChaCha20 keys, preshared keys (paper 5.4)
HASH_SIZE: Final = 32  # BLAKE2s-256 output: the handshake's hash and chaining key
MAC_SIZE: Final = 16  # keyed BLAKE2s-128: mac1, mac2 and the cookie
TAG_SIZE: Final = 16  # Poly1305 tag
XNONCE_SIZE: Final = 24  # XChaCha20-Poly1305 nonce of a cookie reply
TAI64N_SIZE: Final = 12  # 8 bytes of seconds, 4 of nanoseconds, big-endian
# TAI64N's label for 1970 (TAI is 10 s ahead of UTC there), as wireguard-go's tai64n.
_TAI64_BASE: Final = 0x400000000000000A
# Nanoseconds are rounded down to 2^24 ns (~16.8 ms), as wireguard-go does, so the
# timestamp does not tell a peer our clock to the nanosecond.
_TAI64N_WHITEN: Final = ~(0x1000000 - 1) & 0xFFFFFFFF
_TAI64N: Final = struct.Struct(">QI")
NONCE: Final = struct.Struct("<4xQ")  # 32 zero bits, then the 64-bit counter (paper 5.4)
ZERO_NONCE: Final = bytes(12)


class CryptoRefused(Exception):
    """A peer's ciphertext did not authenticate, or its public key gave a zero secret."""


def digest(*parts: bytes) -> bytes:
    """HASH(parts concatenated): BLAKE2s-256."""
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, data): BLAKE2s keyed, 16-byte output (mac1, mac2, the cookie)."""
    return hashlib.blake2s(data, digest_size=MAC_SIZE, key=key).digest()


def hmac(key: bytes, data: bytes) -> bytes:
    """HMAC(key, data) with BLAKE2s-256 (RFC 2104, block 64 bytes)."""
    return _hmac.new(key, data, hashlib.blake2s).digest()


def kdf(count: int, key: bytes, data: bytes) -> list[bytes]:
    """KDF_n(key, data): HKDF (RFC 5869) over HMAC-BLAKE2s, ``count`` (1..3) outputs."""
    prk = hmac(key, data)
    out: list[bytes] = []
    previous = b""
    for i in range(1, count + 1):
        previous = hmac(prk, previous + bytes([i]))
        out.append(previous)
    return out


def private_key(secret: bytes) -> X25519PrivateKey:
    """An X25519 private key from its 32 bytes (clamped by X25519 itself, RFC 7748 5)."""
    return X25519PrivateKey.from_private_bytes(secret)


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def public_key_of(secret: bytes) -> bytes:
    """The public key of a private key's 32 bytes (what ``wg pubkey`` prints)."""
    return public_bytes(private_key(secret))


def dh(key: X25519PrivateKey, public: bytes) -> bytes:
    """DH(private, public): X25519; a zero result (a low-order point) is refused."""
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as error:  # OpenSSL refuses an all-zero shared secret
        raise CryptoRefused("low-order public key") from error
    if shared == bytes(KEY_SIZE):
        raise CryptoRefused("low-order public key")
    return shared


def aead_seal(key: bytes, counter: int, plaintext: bytes, aad: bytes) -> bytes:
    """AEAD(key, counter, plaintext, aad) of the handshake (a fresh key each time)."""
    return ChaCha20Poly1305(key).encrypt(NONCE.pack(counter), plaintext, aad)


def aead_open(key: bytes, counter: int, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(NONCE.pack(counter), ciphertext, aad)
    except InvalidTag as error:
        raise CryptoRefused("AEAD tag") from error


def xaead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """XAEAD(key, nonce, plaintext, aad): XChaCha20-Poly1305 (cookie replies)."""
    return crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)


def xaead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
    except CryptoError as error:
        raise CryptoRefused("XAEAD tag") from error


def tai64n(wall_s: float) -> bytes:
    """TAI64N of a Unix time in seconds, nanoseconds whitened as wireguard-go does."""
    seconds = int(wall_s // 1)
    nanos = int((wall_s - seconds) * 1e9) & _TAI64N_WHITEN
    return _TAI64N.pack(_TAI64_BASE + seconds, nanos)
