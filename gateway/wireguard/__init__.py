"""WireGuard, sans IO: the protocol core that site-to-site tunnels speak.

No sockets and no clocks: ``Device`` takes datagrams, packets to send and timer
ticks, each with the monotonic ``now``, and leaves what to send in its outbox
(``device.py`` says how). The handshake is Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
(``noise.py``), mac1/mac2 and cookie replies are ``cookie.py``, the sliding replay
window ``replay.py``, keypair rotation and the protocol's timers and limits
``session.py`` and ``peer.py``, the message layouts ``messages.py``. Proven against
wireguard-go by tests/wireguard/test_interop.py.
"""

from __future__ import annotations

from gateway.wireguard.device import Device
from gateway.wireguard.peer import Peer
from gateway.wireguard.reasons import Reason
from gateway.wireguard.replay import WINDOW_SIZE, ReplayWindow
from gateway.wireguard.session import Limits

__all__ = ["WINDOW_SIZE", "Device", "Limits", "Peer", "Reason", "ReplayWindow"]
