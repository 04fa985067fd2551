"""The servers of a lab's internet: a page over HTTP and a UDP echo, each telling who
asked as the internet saw it.

Run by the lab inside the internet namespace, and in the far network behind it
(``python -m gateway.lab.internet_server ADDRESS LOG NAMESPACE``; the namespace only
so that ``ps`` tells whose server it is). Behind the gateway's NAT every tenant's VM
reaches these servers from one of the NAT's addresses, so what they saw is what the
NAT made of each flow: the page says ``you are ADDRESS:PORT`` (the client's address
and port as the server saw them), and each server appends ``tcp|udp ADDRESS:PORT``
to LOG per connection or datagram, which the translation log can be checked
against. The UDP echo answers each datagram with its own bytes. Nothing listens on
any other UDP port, so a datagram to one is answered by the kernel with port
unreachable: the lab's ICMP errors. It prints ``ready`` once all sockets listen.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, TextIO

HTTP_PORT: Final = 80
ECHO_PORT: Final = 7
ANSWER_TIMEOUT_S: Final = 10.0  # a client that stops talking mid-request is let go


class _Log:
    """Lines appended to the server's log, whole, from the HTTP threads and the echo."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def saw(self, protocol: str, client: tuple[str, int]) -> None:
        with self._lock:
            self._out.write(f"{protocol} {client[0]}:{client[1]}\n")
            self._out.flush()


def _page_handler(log: _Log) -> type[BaseHTTPRequestHandler]:
    class Page(BaseHTTPRequestHandler):
        timeout = ANSWER_TIMEOUT_S

        def do_GET(self) -> None:
            client = self.client_address[:2]
            log.saw("tcp", client)
            body = f"you are {client[0]}:{client[1]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the log file says who asked."""

    return Page


def serve(address: str, log_path: str) -> None:
    with open(log_path, "a") as out:
        log = _Log(out)
        http = ThreadingHTTPServer((address, HTTP_PORT), _page_handler(log))
        http.daemon_threads = True
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((address, ECHO_PORT))
        threading.Thread(target=http.serve_forever, daemon=True).start()
        print("ready", flush=True)
        while True:
            data, sender = echo.recvfrom(65535)
            log.saw("udp", sender)
            echo.sendto(data, sender)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])  # argv[3], the namespace, is for people reading ps
