"""The primitives against their published vectors, and the constructions built on them.

X25519: RFC 7748 sections 5.2 and 6.1. ChaCha20-Poly1305: RFC 8439 section 2.8.2.
XChaCha20-Poly1305: draft-irtf-cfrg-xchacha-03 appendix A.3.1. BLAKE2s-256: RFC 7693
appendix B. HMAC and HKDF: the RFC 2104 and RFC 5869 definitions written out here,
an oracle independent of the stdlib's ``hmac``. TAI64N: the label of 1970.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.wireguard.crypto import (
    NONCE,
    CryptoRefused,
    aead_open,
    aead_seal,
    dh,
    digest,
    hmac,
    kdf,
    mac,
    private_key,
    public_bytes,
    tai64n,
    xaead_open,
    xaead_seal,
)

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
KEY = bytes(range(0x80, 0xA0))


@pytest.mark.parametrize(
    ("scalar", "u", "out"),
    [
        (  # RFC 7748 5.2, first vector
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (  # RFC 7748 5.2, second vector
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ],
)
def test_x25519_rfc7748_section_5_2(scalar: str, u: str, out: str) -> None:
    assert dh(private_key(bytes.fromhex(scalar)), bytes.fromhex(u)).hex() == out


def test_x25519_rfc7748_section_6_1() -> None:
    alice = private_key(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = private_key(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert (
        public_bytes(alice).hex()
        == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert (
        public_bytes(bob).hex()
        == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert dh(alice, public_bytes(bob)).hex() == dh(bob, public_bytes(alice)).hex() == shared


def test_x25519_refuses_a_low_order_point() -> None:
    with pytest.raises(CryptoRefused):
        dh(private_key(bytes(range(32))), bytes(32))


def test_chacha20_poly1305_rfc8439_section_2_8_2() -> None:
    nonce = bytes.fromhex("070000004041424344454647")
    sealed = ChaCha20Poly1305(KEY).encrypt(nonce, SUNSCREEN, AAD)
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


def test_the_transport_nonce_is_32_zero_bits_then_the_counter_little_endian() -> None:
    assert NONCE.pack(0x0102030405060708) == bytes(4) + bytes.fromhex("0807060504030201")
    sealed = aead_seal(KEY, 7, b"data", b"aad")
    assert sealed == ChaCha20Poly1305(KEY).encrypt(
        bytes(4) + (7).to_bytes(8, "little"), b"data", b"aad"
    )
    assert aead_open(KEY, 7, sealed, b"aad") == b"data"
    with pytest.raises(CryptoRefused):
        aead_open(KEY, 8, sealed, b"aad")


def test_xchacha20_poly1305_draft_irtf_cfrg_xchacha_a_3_1() -> None:
    nonce = bytes.fromhex("404142434445464748494a4b4c4d4e4f5051525354555657")
    sealed = xaead_seal(KEY, nonce, SUNSCREEN, AAD)
    assert sealed[:16].hex() == "bd6d179d3e83d43b9576579493c0e939"
    assert sealed[-16:].hex() == "c0875924c1c7987947deafd8780acf49"
    assert xaead_open(KEY, nonce, sealed, AAD) == SUNSCREEN
    with pytest.raises(CryptoRefused):
        xaead_open(KEY, nonce, sealed, AAD + b"x")


def test_blake2s_rfc7693_appendix_b() -> None:
    assert (
        digest(b"abc").hex() == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    )
    assert digest(b"a", b"bc") == digest(b"abc")  # HASH of a concatenation


def test_mac_is_keyed_blake2s_128() -> None:
    assert mac(b"k" * 32, b"m") == hashlib.blake2s(b"m", key=b"k" * 32, digest_size=16).digest()
    assert len(mac(b"k" * 32, b"m")) == 16


def _rfc2104(key: bytes, message: bytes) -> bytes:
    block = 64  # BLAKE2s's block size
    key = key.ljust(block, b"\0")
    inner = hashlib.blake2s(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.blake2s(bytes(k ^ 0x5C for k in key) + inner).digest()


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"K" * 64])
def test_hmac_is_rfc2104_over_blake2s(key: bytes) -> None:
    assert hmac(key, b"message") == _rfc2104(key, b"message")


def test_kdf_is_hkdf_rfc5869_over_hmac_blake2s() -> None:
    prk = _rfc2104(b"chaining key", b"input")
    t1 = _rfc2104(prk, b"\x01")
    t2 = _rfc2104(prk, t1 + b"\x02")
    t3 = _rfc2104(prk, t2 + b"\x03")
    assert kdf(3, b"chaining key", b"input") == [t1, t2, t3]
    assert kdf(1, b"chaining key", b"input") == [t1]


def test_tai64n() -> None:
    assert tai64n(0.0) == bytes.fromhex("400000000000000a00000000")
    # 0.5 s = 500,000,000 ns = 0x1dcd6500, whitened to 2^24 ns: 0x1d000000
    assert tai64n(1.5) == bytes.fromhex("400000000000000b1d000000")
    assert tai64n(1_700_000_000.25) < tai64n(1_700_000_000.5)  # rises; compares as bytes
