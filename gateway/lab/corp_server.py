"""The server of a lab's corp network or on-prem site: it answers with its name.

Run by the lab inside the corp or site namespace (``python -m
gateway.lab.corp_server NAME NAMESPACE PROTOCOL:ADDRESS:PORT...``; the namespace only
so that ``ps`` tells whose server it is). Both tenants' corp networks (and sites) use
the same addresses, so what a VM reached is told by what answered: each server says
its routing domain's name. A TCP connection gets the name and is closed; a UDP
datagram gets the name back. A corp network listens on its address with both
protocols on ``PORT``; a site has one service per address (directory, DNS, SQL:
``plan.SITE_SERVICES``). It prints ``ready`` once every socket listens, so that the
lab starts nothing before it is.
"""

from __future__ import annotations

import selectors
import socket
import sys
from typing import Final

PORT: Final = 7  # a corp's: the echo port, both protocols, one number to remember


def serve(name: str, endpoints: list[str]) -> None:
    answer = f"{name}\n".encode()
    selector = selectors.DefaultSelector()
    for endpoint in endpoints:
        protocol, address, port = endpoint.split(":")
        if protocol == "tcp":
            listener = socket.create_server((address, int(port)))
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            listener.bind((address, int(port)))
        selector.register(listener, selectors.EVENT_READ, protocol)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            ready: socket.socket = key.fileobj  # type: ignore[assignment]
            if key.data == "tcp":
                connection, _ = ready.accept()
                with connection:
                    connection.sendall(answer)
            else:
                _, sender = ready.recvfrom(2048)
                ready.sendto(answer, sender)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[3:])  # argv[2], the namespace, is for people reading ps
