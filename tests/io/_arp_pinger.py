"""Ask a host daemon for one CA's MAC over and over, as a VM would: one ARP request
at a time out of the VM's interface (the kernel end of its TAP), the next sent when
the daemon's reply comes back. Writes a line to LOG per reply, the time it came (the
system's monotonic clock, which the test shares), and ``ready`` to stdout after the
first three, so a test counts how many frames the daemon answered while it did
something else. Runs until killed.

    python _arp_pinger.py IFACE VM_MAC VM_IP TARGET_IP LOG
"""

import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
REPLY_TIMEOUT_S = 60.0  # a daemon that never answers: stop, and the test sees why
READY_AFTER = 3

iface, mac_text, sender, target, log_path = sys.argv[1:6]
mac = bytes.fromhex(mac_text.replace(":", "").replace("-", ""))
request = (
    b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
    + mac + socket.inet_aton(sender) + b"\0" * 6 + socket.inet_aton(target)
)  # fmt: skip
with (
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock,
    open(log_path, "w", buffering=1) as log,
):
    sock.bind((iface, ETH_P_ARP))
    answered = 0
    while True:
        sock.send(request)
        while True:
            if not select.select([sock], [], [], REPLY_TIMEOUT_S)[0]:
                sys.exit(f"no ARP reply for {target} on {iface} in {REPLY_TIMEOUT_S} s")
            frame, (_, _, kind, _, _) = sock.recvfrom(2048)
            is_reply = frame[20:22] == b"\0\2" and frame[28:32] == socket.inet_aton(target)
            if kind == socket.PACKET_HOST and is_reply:
                break
        log.write(f"{time.monotonic()}\n")
        answered += 1
        if answered == READY_AFTER:
            print("ready", flush=True)
