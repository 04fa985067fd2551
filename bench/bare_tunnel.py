"""The Python ceiling for the gateway's tunnel: a bare NVGRE <-> WireGuard loop.

    python bench/bare_tunnel.py PA VSID KEYFILE PEER_PUBLIC PEER_ADDR:PORT LISTEN \\
        REMOTE_PA VM_MAC GW_MAC

Run by ``gateway_tunnel.py`` in its host namespace, pinned to the receiver core, in
the daemon's place (its PA, its listen port and key, the site's peer for it), as
``bare_decap.py`` stands in for the host's daemon. It makes the handshake with the
project's own sans-IO WireGuard (``gateway.wireguard.Device``, once, before it says
``ready``: that is set-up, not the loop), then runs two loops, each in its own thread
and each one syscall in and one out per packet:

* in: a blocking raw IPPROTO_GRE ``recv_into``, the GRE flags, protocol and VSID
  checked, the inner IPv4 packet (behind the inner Ethernet header) padded to 16
  bytes in place, sealed with ChaCha20-Poly1305 (``cryptography``, as the daemon
  does) behind the 16-byte transport header, one ``sendto`` to the peer;
* back (TCP's ACKs): a blocking UDP ``recv_into``, a transport message on our index
  opened, cut to its IPv4 length and sent as NVGRE (VSID, FlowID 0, the VM's MAC from
  the gateway's record's) to REMOTE_PA on a raw GRE socket.

Nothing else: no routing, no TTL, no allowed IPs, no replay window, no timers (a run
is far shorter than a session's 120 s), no counters, no batching. It keeps no time
and counts nothing: the benchmark reads the kernel's counters and this process's CPU
time from /proc. Runs until SIGTERM.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from bare_decap import NVGRE_WORD, RECEIVE_BUFFER_BYTES
from bare_encap import GRE_HEADER, GRE_K, TEB
from cryptography.exceptions import InvalidTag

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gateway, for the handshake

from gateway.wireguard import TRANSPORT_OVERHEAD, TRANSPORT_TYPE, Device, Peer
from gateway.wireguard.crypto import NONCE
from gateway.wireguard.messages import TRANSPORT_HEADER as HEADER

ETH_IPV4 = b"\x08\x00"
HANDSHAKE_S = 8.0


def handshake(udp: socket.socket, device: Device, peer: Peer) -> None:
    """Initiate and wait for the response (the device retransmits on its timers)."""
    clock = time.monotonic
    t_end = clock() + HANDSHAKE_S
    device.initiate(peer, clock())
    udp.settimeout(0.2)
    while peer.keypairs.current is None:
        if clock() > t_end:
            sys.exit(f"no handshake with {peer.endpoint} in {HANDSHAKE_S:.0f} s")
        for datagram, endpoint in device.outbox:
            udp.sendto(datagram, endpoint)
        device.outbox.clear()
        try:
            datagram, source = udp.recvfrom(2048)
        except TimeoutError:
            device.tick(clock())
            continue
        device.receive(datagram, source, clock())
    udp.settimeout(None)


def into_tunnel(gre: socket.socket, udp: socket.socket, vsid: int, peer: Peer) -> None:
    """NVGRE in, sealed out, forever."""
    keypair = peer.keypairs.current
    assert keypair is not None and peer.endpoint is not None
    seal, remote, endpoint = keypair.send.encrypt, keypair.remote_index, peer.endpoint
    counter = keypair.send_counter
    buffer = bytearray(65535 + 16)
    view = memoryview(buffer)
    recv_into, sendto = gre.recv_into, udp.sendto
    unpack_from, pack, nonce = struct.Struct("!II").unpack_from, HEADER.pack, NONCE.pack
    zeros = bytes(16)
    while True:
        size = recv_into(buffer, 65535)
        ihl = (buffer[0] & 0x0F) << 2
        word, key = unpack_from(buffer, ihl)
        if word != NVGRE_WORD or key >> 8 != vsid:
            continue  # not NVGRE, or another VSID: dropped
        start = ihl + 8 + 14  # the inner IPv4 packet
        end = start + ((size - start + 15) & ~15)
        buffer[size:end] = zeros[: end - size]
        sealed = seal(nonce(counter), view[start:end], None)
        sendto(pack(TRANSPORT_TYPE, remote, counter) + sealed, endpoint)
        counter += 1


def out_of_tunnel(
    udp: socket.socket, gre: socket.socket, vsid: int, peer: Peer, head: bytes
) -> None:
    """Transport data in, opened, NVGRE out, forever."""
    keypair = peer.keypairs.current
    assert keypair is not None
    open_, index = keypair.receive.decrypt, keypair.local_index
    buffer = bytearray(65535)
    view = memoryview(buffer)
    recv_into, sendmsg = udp.recv_into, gre.sendmsg
    unpack_from, nonce = HEADER.unpack_from, NONCE.pack
    while True:
        size = recv_into(buffer)
        if size < TRANSPORT_OVERHEAD:
            continue
        kind, receiver, counter = unpack_from(buffer)
        if kind != TRANSPORT_TYPE or receiver != index:
            continue
        try:
            packet = open_(nonce(counter), view[HEADER.size : size], None)
        except InvalidTag:
            continue
        if len(packet) >= 4:  # not a keepalive
            sendmsg([head, memoryview(packet)[: int.from_bytes(packet[2:4], "big")]])


def main() -> None:
    pa, vsid, key_file, peer_public, peer_at, listen = sys.argv[1:7]
    remote_pa, vm_mac, gw_mac = sys.argv[7:10]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    address, port = peer_at.rsplit(":", 1)
    private = base64.b64decode(Path(key_file).read_text().strip())
    device = Device(private, wall_offset_s=time.time() - time.monotonic())
    peer = device.add_peer(base64.b64decode(peer_public), endpoint=(address, int(port)))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", int(listen)))
    gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    gre.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    gre.bind((pa, 0))
    gre.connect((remote_pa, 0))
    handshake(udp, device, peer)
    head = GRE_HEADER.pack(GRE_K, TEB, int(vsid) << 8)
    head += bytes.fromhex(vm_mac.replace(":", "")) + bytes.fromhex(gw_mac.replace(":", ""))
    back = threading.Thread(
        target=out_of_tunnel, args=(udp, gre, int(vsid), peer, head + ETH_IPV4), daemon=True
    )
    back.start()
    print("ready", flush=True)
    into_tunnel(gre, udp, int(vsid), peer)


if __name__ == "__main__":
    main()
