"""WireGuard, sans IO: the protocol core that site-to-site tunnels speak.

No sockets and no clocks: ``Device`` takes datagrams, packets to send and timer
ticks, each with the monotonic ``now``, and leaves what to send in its outbox
(``device.py`` says how; ``sessions.py`` is its sending half). The handshake is
Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s (``noise.py``) over the primitives of
``crypto.py``; mac1/mac2 and cookie replies are ``cookie.py``, the sliding replay
window ``replay.py``, keypair rotation and the protocol's limits ``keypairs.py``, a
peer's timers and counters ``peer.py``, the message layouts ``messages.py``, the
reasons for refusing ``reasons.py``. Proven against wireguard-go by
tests/wireguard/test_interop.py.
"""

from __future__ import annotations

from gateway.wireguard.crypto import KEY_SIZE, public_key_of
from gateway.wireguard.device import Device
from gateway.wireguard.keypairs import Limits
from gateway.wireguard.messages import KEEPALIVE_SIZE as TRANSPORT_OVERHEAD
from gateway.wireguard.messages import TRANSPORT as TRANSPORT_TYPE
from gateway.wireguard.peer import Peer
from gateway.wireguard.reasons import Reason
from gateway.wireguard.replay import WINDOW_SIZE, ReplayWindow

__all__ = [
    "KEY_SIZE",
    "TRANSPORT_OVERHEAD",
    "TRANSPORT_TYPE",
    "WINDOW_SIZE",
    "Device",
    "Limits",
    "Peer",
    "Reason",
    "ReplayWindow",
    "public_key_of",
]
