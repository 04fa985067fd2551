"""The handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard runs it (paper 5.4).

One ``Handshake`` per peer holds the transcript hash, the chaining key and the
ephemeral keys between the two messages; the four steps are one Create/Consume pair
per message, and ``derive_keys`` turns a finished handshake into the two transport
keys. What each step needs the handshake to be in, and what it leaves it in, is the
one table ``_TRANSITIONS`` (h11's ``_state.py`` habit): a response that arrives when
we sent no initiation is refused by the table, not by an ``if`` somewhere.

Hostile input raises only ``Refused``. A consume step changes the handshake only
once everything authenticated, so a forged message leaves it as it was. The
initiator's TAI64N comes from the wall time the caller passes in (decisions.md,
"Clocks"), so it keeps rising across restarts; the responder refuses a timestamp not
newer than the last one it accepted from that peer (a replayed initiation), and a
second initiation within ``initiation_rate_s`` (a flood).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.wireguard.crypto import (
    KEY_SIZE,
    TAI64N_SIZE,
    CryptoRefused,
    aead_open,
    aead_seal,
    dh,
    digest,
    kdf,
    private_key,
    public_bytes,
    tai64n,
)
from gateway.wireguard.messages import Initiation, Response
from gateway.wireguard.reasons import Reason, Refused

CONSTRUCTION: Final = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER: Final = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
INITIAL_CHAIN_KEY: Final = digest(CONSTRUCTION)
INITIAL_HASH: Final = digest(INITIAL_CHAIN_KEY, IDENTIFIER)
# At most one initiation per peer per 1/50 s is consumed (wireguard-go's
# HandshakeInitationRate): a replayed one is refused by its timestamp, a flood of new
# ones costs us no more than 50 DH rounds a second per peer.
INITIATION_RATE_S: Final = 1 / 50
_ZERO_TIMESTAMP: Final = bytes(TAI64N_SIZE)


class State(enum.Enum):
    ZEROED = "zeroed"
    INITIATION_CREATED = "initiation created"  # we initiated; awaiting the response
    INITIATION_CONSUMED = "initiation consumed"  # the peer initiated; we answer next
    RESPONSE_CREATED = "response created"  # we answered; keys can be derived
    RESPONSE_CONSUMED = "response consumed"  # the peer answered; keys can be derived


_ANY: Final = frozenset(State)
# step -> (the states it may start from, the state it leaves)
_TRANSITIONS: Final[dict[str, tuple[frozenset[State], State]]] = {
    "create_initiation": (_ANY, State.INITIATION_CREATED),
    "consume_initiation": (_ANY, State.INITIATION_CONSUMED),
    "create_response": (frozenset({State.INITIATION_CONSUMED}), State.RESPONSE_CREATED),
    "consume_response": (frozenset({State.INITIATION_CREATED}), State.RESPONSE_CONSUMED),
    "derive_keys": (frozenset({State.RESPONSE_CREATED, State.RESPONSE_CONSUMED}), State.ZEROED),
}


def _allowed(step: str, state: State) -> State:
    """The state ``step`` leaves from ``state``. A step out of order is the caller's
    bug (``ValueError``); consume_response checks first, as a peer can cause it."""
    starts, ends = _TRANSITIONS[step]
    if state not in starts:
        raise ValueError(f"{step} in state {state.value}")
    return ends


class StaticIdentity:
    """Our static key pair (one per listen port, as a wg interface has one)."""

    __slots__ = ("private", "public")

    def __init__(self, private_key_bytes: bytes) -> None:
        if len(private_key_bytes) != KEY_SIZE:
            raise ValueError(f"a private key is {KEY_SIZE} bytes, not {len(private_key_bytes)}")
        self.private = private_key(private_key_bytes)
        self.public = public_bytes(self.private)


class Handshake:
    """One peer's handshake state, and what we know of the peer's keys."""

    __slots__ = (
        "chain_key",
        "hash",
        "last_initiation_consumed",
        "last_timestamp",
        "local_ephemeral",
        "local_index",
        "preshared_key",
        "remote_ephemeral",
        "remote_index",
        "remote_static",
        "state",
        "static_static",
    )

    def __init__(
        self, identity: StaticIdentity, remote_static: bytes, preshared_key: bytes | None
    ) -> None:
        if len(remote_static) != KEY_SIZE:
            raise ValueError(f"a public key is {KEY_SIZE} bytes, not {len(remote_static)}")
        if preshared_key is not None and len(preshared_key) != KEY_SIZE:
            raise ValueError(f"a preshared key is {KEY_SIZE} bytes, not {len(preshared_key)}")
        try:
            self.static_static = dh(identity.private, remote_static)
        except CryptoRefused as error:
            raise ValueError("the peer's public key is a low-order point") from error
        self.remote_static = remote_static
        # No preshared key is the all-zero key (the paper's psk2 with Q = 0^32).
        self.preshared_key = preshared_key or bytes(KEY_SIZE)
        self.last_timestamp = _ZERO_TIMESTAMP
        self.last_initiation_consumed = float("-inf")
        self.clear()

    def clear(self) -> None:
        """Forget the handshake in progress (not the peer's keys or last timestamp)."""
        self.state = State.ZEROED
        self.hash = b""
        self.chain_key = b""
        self.local_ephemeral: X25519PrivateKey | None = None
        self.remote_ephemeral = b""
        self.local_index = 0
        self.remote_index = 0


def create_initiation(
    identity: StaticIdentity,
    handshake: Handshake,
    ephemeral_secret: bytes,
    sender_index: int,
    wall_s: float,
) -> Initiation:
    """The initiation to ``handshake``'s peer (paper 5.4.2), mac1/mac2 not yet added."""
    state = _allowed("create_initiation", handshake.state)
    ephemeral = private_key(ephemeral_secret)
    e_public = public_bytes(ephemeral)
    h = digest(INITIAL_HASH, handshake.remote_static)
    ck = kdf(1, INITIAL_CHAIN_KEY, e_public)[0]
    h = digest(h, e_public)
    ck, key = kdf(2, ck, dh(ephemeral, handshake.remote_static))
    encrypted_static = aead_seal(key, 0, identity.public, h)
    h = digest(h, encrypted_static)
    ck, key = kdf(2, ck, handshake.static_static)
    encrypted_timestamp = aead_seal(key, 0, tai64n(wall_s), h)
    handshake.hash = digest(h, encrypted_timestamp)
    handshake.chain_key = ck
    handshake.local_ephemeral = ephemeral
    handshake.local_index = sender_index
    handshake.state = state
    return Initiation(sender_index, e_public, encrypted_static, encrypted_timestamp)


def consume_initiation(
    identity: StaticIdentity,
    message: Initiation,
    handshakes: Mapping[bytes, Handshake],
    now: float,
    initiation_rate_s: float = INITIATION_RATE_S,
) -> Handshake:
    """The handshake of the peer that sent ``message``, now ready to answer; ``Refused``
    for anything that does not authenticate, an unknown key, a replay or a flood."""
    h = digest(digest(INITIAL_HASH, identity.public), message.ephemeral)
    ck = kdf(1, INITIAL_CHAIN_KEY, message.ephemeral)[0]
    try:
        ck, key = kdf(2, ck, dh(identity.private, message.ephemeral))
        remote_static = aead_open(key, 0, message.encrypted_static, h)
    except CryptoRefused as error:
        raise Refused(Reason.HANDSHAKE_AUTH) from error
    h = digest(h, message.encrypted_static)
    handshake = handshakes.get(remote_static)
    if handshake is None:
        raise Refused(Reason.UNKNOWN_PEER)
    ck, key = kdf(2, ck, handshake.static_static)
    try:
        timestamp = aead_open(key, 0, message.encrypted_timestamp, h)
    except CryptoRefused as error:
        raise Refused(Reason.HANDSHAKE_AUTH) from error
    if timestamp <= handshake.last_timestamp:  # big-endian: bytes compare as numbers
        raise Refused(Reason.TIMESTAMP_REPLAY)
    if now - handshake.last_initiation_consumed <= initiation_rate_s:
        raise Refused(Reason.INITIATION_FLOOD)
    handshake.state = _allowed("consume_initiation", handshake.state)
    handshake.hash = digest(h, message.encrypted_timestamp)
    handshake.chain_key = ck
    handshake.remote_index = message.sender
    handshake.remote_ephemeral = message.ephemeral
    handshake.last_timestamp = timestamp
    handshake.last_initiation_consumed = now
    return handshake


def create_response(handshake: Handshake, ephemeral_secret: bytes, sender_index: int) -> Response:
    """The response to the initiation ``handshake`` consumed (paper 5.4.3)."""
    state = _allowed("create_response", handshake.state)
    ephemeral = private_key(ephemeral_secret)
    e_public = public_bytes(ephemeral)
    h = digest(handshake.hash, e_public)
    ck = kdf(1, handshake.chain_key, e_public)[0]
    try:
        ck = kdf(1, ck, dh(ephemeral, handshake.remote_ephemeral))[0]
    except CryptoRefused as error:  # the initiator's ephemeral is a low-order point
        raise Refused(Reason.HANDSHAKE_AUTH) from error
    ck = kdf(1, ck, dh(ephemeral, handshake.remote_static))[0]
    ck, tau, key = kdf(3, ck, handshake.preshared_key)
    h = digest(h, tau)
    encrypted_empty = aead_seal(key, 0, b"", h)
    handshake.hash = digest(h, encrypted_empty)
    handshake.chain_key = ck
    handshake.local_ephemeral = ephemeral
    handshake.local_index = sender_index
    handshake.state = state
    return Response(sender_index, handshake.remote_index, e_public, encrypted_empty)


def consume_response(identity: StaticIdentity, handshake: Handshake, message: Response) -> None:
    """Finish the handshake we initiated with the peer's response; ``Refused`` when we
    are not awaiting one or it does not authenticate (the handshake is unchanged)."""
    if handshake.state not in _TRANSITIONS["consume_response"][0]:
        raise Refused(Reason.UNEXPECTED_RESPONSE)
    ephemeral = handshake.local_ephemeral
    assert ephemeral is not None  # set with INITIATION_CREATED
    h = digest(handshake.hash, message.ephemeral)
    ck = kdf(1, handshake.chain_key, message.ephemeral)[0]
    try:
        ck = kdf(1, ck, dh(ephemeral, message.ephemeral))[0]
        ck = kdf(1, ck, dh(identity.private, message.ephemeral))[0]
        ck, tau, key = kdf(3, ck, handshake.preshared_key)
        h = digest(h, tau)
        aead_open(key, 0, message.encrypted_empty, h)
    except CryptoRefused as error:
        raise Refused(Reason.HANDSHAKE_AUTH) from error
    handshake.state = _allowed("consume_response", handshake.state)
    handshake.hash = digest(h, message.encrypted_empty)
    handshake.chain_key = ck
    handshake.remote_index = message.sender


def derive_keys(handshake: Handshake) -> tuple[bytes, bytes, bool]:
    """(send key, receive key, whether we initiated) of a finished handshake (paper
    5.4.5), which is then cleared: its ephemeral secrets are not kept."""
    initiator = handshake.state is State.RESPONSE_CONSUMED
    _allowed("derive_keys", handshake.state)
    first, second = kdf(2, handshake.chain_key, b"")
    handshake.clear()
    return (first, second, True) if initiator else (second, first, False)
