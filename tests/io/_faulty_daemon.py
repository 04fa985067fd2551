"""`nvgw` with a data plane that has a bug: it raises on every frame that ends in 0xEE.

The barrier test (test_barrier_daemon.py) runs this in its namespace with `nvgw run`'s
arguments. nvgw has no fault-injection switch: this script wraps the two entry points
the readers call (``from_port`` for the TAPs, ``from_provider`` for the receive ring)
and then hands over to the real command line.
"""

import sys

from gateway.cli import main
from gateway.dataplane import HostDataplane

MARKER = 0xEE
from_port, from_provider = HostDataplane.from_port, HostDataplane.from_provider


def faulty_from_port(self, port, frame, out, now):  # type: ignore[no-untyped-def]
    if frame[-1] == MARKER:
        raise RuntimeError("injected fault in from_port")
    from_port(self, port, frame, out, now)


def faulty_from_provider(self, datagram, out, now):  # type: ignore[no-untyped-def]
    if datagram[-1] == MARKER:
        raise RuntimeError("injected fault in from_provider")
    from_provider(self, datagram, out, now)


HostDataplane.from_port = faulty_from_port  # type: ignore[method-assign]
HostDataplane.from_provider = faulty_from_provider  # type: ignore[method-assign]
sys.argv[0] = "nvgw"
main()
