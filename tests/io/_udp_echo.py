"""An internet server for NAT tests: a UDP echo on ADDRESS:PORT. Prints ``ready`` once
bound, then, for each datagram, echoes it and prints ``HOST:PORT`` of its sender (the
NAT's external endpoint, as the internet sees it). Runs until killed.

    python _udp_echo.py ADDRESS PORT
"""

import socket
import sys

with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        data, sender = sock.recvfrom(65535)
        sock.sendto(data, sender)
        print(f"{sender[0]}:{sender[1]}", flush=True)
