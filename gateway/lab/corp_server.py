"""The server of a lab's corp network: it answers with its name, over TCP and UDP.

Run by the lab inside the corp namespace (``python -m gateway.lab.corp_server NAME
ADDRESS NAMESPACE``; the namespace only so that ``ps`` tells whose server it is).
Both tenants' corp networks use the same address, so what a VM reached is told by
what answered: each server says its routing domain's name. A TCP connection gets the
name and is closed; a UDP datagram gets the name back. It prints ``ready`` once both
sockets listen, so that the lab starts nothing before it is.
"""

from __future__ import annotations

import selectors
import socket
import sys
from typing import Final

PORT: Final = 7  # the echo port: both protocols, one number to remember


def serve(name: str, address: str) -> None:
    answer = f"{name}\n".encode()
    tcp = socket.create_server((address, PORT))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, PORT))
    selector = selectors.DefaultSelector()
    selector.register(tcp, selectors.EVENT_READ)
    selector.register(udp, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is tcp:
                connection, _ = tcp.accept()
                with connection:
                    connection.sendall(answer)
            else:
                _, sender = udp.recvfrom(2048)
                udp.sendto(answer, sender)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])  # argv[3], the namespace, is for people reading ps
