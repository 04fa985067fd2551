"""The handshake and transport between two of our devices, through lists.

Both directions, with and without a preshared key; key confirmation (the responder
sends nothing with a new keypair until the initiator used it); a mismatched PSK, a
replayed initiation, a flood and an unknown key refused, counted, unanswered;
roaming only on authenticated packets.
"""

from __future__ import annotations

import pytest

from gateway.wireguard import Reason

from ._pair import A, device, established, make_pair, packet

PSK = bytes(range(32))


def _refused(device) -> dict[str, int]:
    return {reason.label: n for reason, n in zip(Reason, device.refused, strict=True) if n}


@pytest.mark.parametrize("psk", [None, PSK], ids=["no-psk", "psk"])
@pytest.mark.parametrize("first", ["a", "b"])
def test_a_handshake_either_side_starts_carries_data_both_ways(psk, first) -> None:
    pair = make_pair(psk, b_knows_a=True)
    starter, other = (pair.a, pair.b) if first == "a" else (pair.b, pair.a)
    to_other = pair.ab if first == "a" else pair.ba
    starter.send(to_other, packet(100, ident=1), 0.0)
    assert [d[0] for d, _ in starter.outbox] == [1]  # held; an initiation goes
    pair.deliver(starter, 0.1)
    assert [d[0] for d, _ in other.outbox] == [2]  # the response
    pair.deliver(other, 0.2)
    # The initiator sends the held packet (which confirms the keypair): no keepalive.
    assert [len(d) for d, _ in starter.outbox] == [16 + 112 + 16]
    pair.deliver(starter, 0.3)
    assert [(d, p.public_key, pkt) for d, p, pkt in pair.delivered] == [
        (other, starter.identity.public, packet(100, ident=1))
    ]
    back = other.peers[starter.identity.public]
    other.send(back, packet(61, ident=2), 0.4)
    pair.deliver(other, 0.4)
    assert pair.delivered[-1][1:] == (to_other, packet(61, ident=2))  # padding trimmed
    assert pair.ab.handshakes == pair.ba.handshakes == 1
    assert _refused(pair.a) == _refused(pair.b) == {}


def test_the_responder_waits_for_key_confirmation() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0)
    pair.b.send(pair.ba, packet(), 0.0)  # B has a keypair, unconfirmed: it must wait
    assert pair.ba.keypairs.current is None and pair.ba.keypairs.next is not None
    assert pair.b.outbox and all(d[0] == 2 for d, _ in pair.b.outbox)  # the response only
    pair.deliver(pair.b, 0.0)
    assert [len(d) for d, _ in pair.a.outbox] == [32]  # A's keepalive confirms
    pair.deliver(pair.a, 0.0)
    assert pair.ba.keypairs.current is not None and pair.ba.keypairs.next is None
    assert [d[0] for d, _ in pair.b.outbox] == [4]  # now B's held packet goes
    pair.deliver(pair.b, 0.0)
    assert pair.delivered[-1][2] == packet()


def test_a_preshared_key_on_one_side_only_fails_the_handshake() -> None:
    pair = make_pair()
    pair.ba.handshake.preshared_key = PSK
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0)  # B cannot know yet: the PSK enters with the response
    pair.deliver(pair.b, 0.0)
    assert _refused(pair.a) == {"handshake_auth": 1}
    assert pair.a.outbox == [] and pair.ab.handshakes == 0


def test_a_replayed_initiation_is_refused_unanswered() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    (initiation,) = pair.deliver(pair.a, 0.0)
    pair.b.outbox.clear()
    assert pair.b.receive(initiation, A, 1.0) is None
    assert _refused(pair.b) == {"timestamp_replay": 1} and pair.b.outbox == []


def test_an_initiation_flood_is_refused() -> None:
    """Two genuine initiations 10 ms apart (the second with a later wall time)."""
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0)
    pair.ab.last_sent_handshake = float("-inf")  # let A initiate again at once
    pair.a.initiate(pair.ab, 0.5)
    (second,) = [bytes(d) for d, _ in pair.a.outbox]
    pair.b.outbox.clear()
    pair.b.receive(second, A, 0.01)
    assert _refused(pair.b) == {"initiation_flood": 1} and pair.b.outbox == []
    pair.b.receive(second, A, 0.5)  # the same, later: not a flood, a new timestamp
    assert [d[0] for d, _ in pair.b.outbox] == [2]


def test_an_initiation_from_an_unknown_key_is_refused() -> None:
    pair = make_pair()
    pair.b.remove_peer(pair.ba)
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0)
    assert _refused(pair.b) == {"unknown_peer": 1} and pair.b.outbox == []


def test_the_endpoint_moves_only_with_an_authenticated_packet() -> None:
    pair = established()
    roamed = ("203.0.113.9", 40000)
    pair.a.send(pair.ab, packet(), 1.0)
    datagram = bytes(pair.a.outbox.pop()[0])
    forged = bytearray(datagram)
    forged[-1] ^= 1
    pair.b.receive(bytes(forged), roamed, 1.0)
    assert pair.ba.endpoint == A and _refused(pair.b) == {"decrypt_failed": 1}
    assert pair.b.receive(bytes(datagram), roamed, 1.0) is not None
    assert pair.ba.endpoint == roamed
    pair.b.send(pair.ba, packet(), 1.1)
    assert pair.b.outbox[-1][1] == roamed


def test_a_replayed_or_old_data_packet_is_refused_and_counted() -> None:
    pair = established()
    sent = []
    for i in range(3):
        pair.a.send(pair.ab, packet(ident=i), 1.0)
        sent += [bytes(d) for d, _ in pair.a.outbox]
        pair.a.outbox.clear()
    for datagram in (sent[2], sent[0], sent[1]):  # out of order: all accepted
        assert pair.b.receive(datagram, A, 1.0) is not None
    assert pair.b.receive(sent[1], A, 1.0) is None
    assert pair.ba.replays == 1 and _refused(pair.b) == {"replayed": 1}
    assert pair.ba.rx_packets == 3


def test_removing_a_peer_forgets_its_indexes_only() -> None:
    pair = established()
    third = device(3)  # another device, another key
    other = pair.a.add_peer(third.identity.public, endpoint=("192.0.2.7", 51820))
    pair.a.initiate(other, 0.0)
    before = {i for i, (p, _) in pair.a.indexes.items() if p is other}
    assert before
    pair.a.remove_peer(pair.ab)
    assert set(pair.a.indexes) == before
    pair.b.send(pair.ba, packet(), 1.0)
    pair.deliver(pair.b, 1.0)
    assert _refused(pair.a) == {"unknown_index": 1}


def test_mistakes_in_configuration_are_value_errors() -> None:
    pair = make_pair()
    with pytest.raises(ValueError, match="a peer already"):
        pair.a.add_peer(pair.b.identity.public)
    with pytest.raises(ValueError, match="own public key"):
        pair.a.add_peer(pair.a.identity.public)
    with pytest.raises(ValueError, match="low-order"):
        pair.a.add_peer(bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        pair.a.add_peer(b"short")
    with pytest.raises(ValueError, match="preshared key is 32 bytes"):
        pair.a.add_peer(device(3).identity.public, preshared_key=b"x")
