"""A NAT session's states, their idle timeouts, and TCP's transitions, in one place
(h11's ``_state.py``: everything that moves the state machine lives here, as data).

One small int per session covers every protocol: TCP's states as Linux conntrack
names them, UDP unreplied and stream, ICMP echo. Each state has one idle timeout, so
the table keeps one queue per state, ordered by last use, and expiry reads only
their heads (``table.py``).

TCP follows Linux's ``tcp_conntracks`` (net/netfilter/nf_conntrack_proto_tcp.c)
without its window tracking: the event is the segment's flags (RST, then SYN or
SYN+ACK, then FIN, then ACK), the direction is the opener's (ORIGINAL) or the
answerer's (REPLY). A transition Linux marks invalid or ignored leaves the state as
it is and does not refresh the timer (the segment is still translated: dropping it
would only make the endpoints retransmit, and sending it untranslated would leak the
tenant's address, which is what Linux's NAT does with an INVALID segment). RST moves
every state to CLOSE, which holds the port for ``tcp_close_s``.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields
from typing import Final

# TCP (Linux's TCP_CONNTRACK_* without NONE: a session exists once a SYN opened it).
TCP_SYN_SENT: Final = 0
TCP_SYN_RECV: Final = 1
TCP_ESTABLISHED: Final = 2
TCP_FIN_WAIT: Final = 3
TCP_CLOSE_WAIT: Final = 4
TCP_LAST_ACK: Final = 5
TCP_TIME_WAIT: Final = 6
TCP_CLOSE: Final = 7
TCP_SYN_SENT2: Final = 8  # simultaneous open: a SYN came back before any SYN+ACK
UDP_UNREPLIED: Final = 9
UDP_STREAM: Final = 10  # a reply was seen
ICMP_ECHO: Final = 11
STATE_COUNT: Final = 12
STATE_NAMES: Final = (
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "last_ack",
    "time_wait",
    "close",
    "syn_sent2",
    "udp_unreplied",
    "udp_stream",
    "icmp_echo",
)

# Directions, relative to the session's opener (Linux's IP_CT_DIR_*).
ORIGINAL: Final = 0
REPLY: Final = 1

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10  # RFC 9293 sec. 3.1 control bits
# Events, Linux's get_conntrack_index order.
_EV_SYN, _EV_SYNACK, _EV_FIN, _EV_ACK, _EV_RST, _EV_NONE = range(6)


def _event(flags: int) -> int:
    if flags & _RST:
        return _EV_RST
    if flags & _SYN:
        return _EV_SYNACK if flags & _ACK else _EV_SYN
    if flags & _FIN:
        return _EV_FIN
    return _EV_ACK if flags & _ACK else _EV_NONE


# The flags byte (offset 13 of the TCP header) -> event, so a segment costs one index.
TCP_EVENT: Final = tuple(_event(flags) for flags in range(256))
# Only a SYN (no ACK, FIN or RST) opens a TCP session: picking up a connection in
# the middle (Linux's nf_conntrack_tcp_loose) would give it a new external port
# that the remote end has never seen, and it would answer with a reset anyway.
TCP_OPENS: Final = tuple(flags & (_SYN | _ACK | _FIN | _RST) == _SYN for flags in range(256))

_ = None  # Linux's sIV/sIG: the state stays, the timer is not refreshed
SS, SR, ES, FW = TCP_SYN_SENT, TCP_SYN_RECV, TCP_ESTABLISHED, TCP_FIN_WAIT
CW, LA, TW, CL, S2 = TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_TIME_WAIT, TCP_CLOSE, TCP_SYN_SENT2
# TCP_NEXT[direction][event][state] -> the next state, or None. Columns are the
# states in order: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
# TIME_WAIT, CLOSE, SYN_SENT2 (Linux's table without its NONE column).
TCP_NEXT: Final[tuple[tuple[tuple[int | None, ...], ...], ...]] = (
    (  # ORIGINAL: from the side that sent the first SYN
        (SS, _, _, _, _, _, SS, SS, S2),  # SYN: a retransmission, or a reopen after close
        (_, _, _, _, _, _, _, _, SR),  # SYN+ACK
        (_, FW, FW, LA, LA, LA, TW, CL, _),  # FIN
        (_, ES, ES, CW, CW, TW, TW, CL, _),  # ACK
        (CL, CL, CL, CL, CL, CL, CL, CL, CL),  # RST
        (_, _, _, _, _, _, _, _, _),  # none of them
    ),
    (  # REPLY: from the side that answered it
        (S2, _, _, _, _, _, _, _, S2),  # SYN
        (SR, _, _, _, _, _, _, _, SR),  # SYN+ACK
        (_, FW, FW, LA, LA, LA, TW, CL, _),  # FIN
        (_, SR, ES, CW, CW, TW, TW, CL, _),  # ACK
        (CL, CL, CL, CL, CL, CL, CL, CL, CL),  # RST
        (_, _, _, _, _, _, _, _, _),  # none of them
    ),
)
del _, SS, SR, ES, FW, CW, LA, TW, CL, S2


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts per state, in seconds: Linux conntrack's defaults (its
    ``nf_conntrack_tcp_timeout_*``, ``nf_conntrack_udp_timeout[_stream]``,
    ``nf_conntrack_icmp_timeout``), so the table behaves as the nftables masquerade
    the benchmark compares it with, and as operators know it.

    Where the RFCs ask for more: RFC 4787 REQ-5 wants a UDP mapping kept 2 minutes
    (Linux keeps an unreplied one 30 s, a replied one ``udp_stream_s`` = 120 s) and
    RFC 5508 REQ-2 an ICMP query mapping 60 s (Linux: 30 s); RFC 5382 REQ-5's
    2 h 4 min for an established TCP connection is met (5 days). Set
    ``udp_unreplied_s=120, icmp_s=60`` for the RFCs' minimums. Tests use seconds
    (configurable later from ``nodes.gw.nat``).
    """

    tcp_syn_sent_s: float = 120.0
    tcp_syn_recv_s: float = 60.0
    tcp_established_s: float = 5 * 24 * 3600.0
    tcp_fin_wait_s: float = 120.0
    tcp_close_wait_s: float = 60.0
    tcp_last_ack_s: float = 30.0
    tcp_time_wait_s: float = 120.0
    tcp_close_s: float = 10.0
    udp_unreplied_s: float = 30.0
    udp_stream_s: float = 120.0
    icmp_s: float = 30.0

    def __post_init__(self) -> None:
        for field, value in zip(fields(self), astuple(self), strict=True):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{field.name} must be a positive number of seconds: {value!r}")

    def by_state(self) -> tuple[float, ...]:
        """The timeout of each state, indexed by state (SYN_SENT2 is a SYN_SENT)."""
        return (
            self.tcp_syn_sent_s,
            self.tcp_syn_recv_s,
            self.tcp_established_s,
            self.tcp_fin_wait_s,
            self.tcp_close_wait_s,
            self.tcp_last_ack_s,
            self.tcp_time_wait_s,
            self.tcp_close_s,
            self.tcp_syn_sent_s,
            self.udp_unreplied_s,
            self.udp_stream_s,
            self.icmp_s,
        )
