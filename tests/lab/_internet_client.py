"""A VM's client of the lab's internet servers, run inside the VM's namespace by the
tests, from fixed source ports (so that two tenants' VMs with one address can use the
same port, and the translation log can be searched for it).

    python _internet_client.py http ADDRESS SPORT
        GET / from SPORT; prints the page.
    python _internet_client.py udp ADDRESS PORT PAYLOAD SPORT [SPORT...]
        PAYLOAD from each SPORT at once; prints a line per SPORT: the answer,
        ``refused`` (an ICMP port unreachable came back) or ``-`` (nothing within the
        wait).
"""

import selectors
import socket
import sys
import time

WAIT_S = 3.0  # only bounds what never comes


def http(address: str, sport: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(WAIT_S * 3)
        sock.bind(("", sport))
        sock.connect((address, 80))
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    sys.stdout.write(answer.split(b"\r\n\r\n", 1)[1].decode())


def udp(address: str, port: int, payload: bytes, sports: list[int]) -> None:
    selector = selectors.DefaultSelector()
    answers: dict[int, str] = {}
    for sport in sports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("", sport))
        sock.connect((address, port))
        sock.send(payload)
        selector.register(sock, selectors.EVENT_READ, sport)
    deadline = time.monotonic() + WAIT_S
    while len(answers) < len(sports) and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            try:
                answers[key.data] = key.fileobj.recv(65535).decode()  # type: ignore[union-attr]
            except ConnectionRefusedError:
                answers[key.data] = "refused"
            selector.unregister(key.fileobj)
    for sport in sports:
        print(answers.get(sport, "-"))


if __name__ == "__main__":
    if sys.argv[1] == "http":
        http(sys.argv[2], int(sys.argv[3]))
    else:
        udp(sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), [int(p) for p in sys.argv[5:]])
