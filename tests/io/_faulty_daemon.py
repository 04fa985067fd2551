"""`nvgw` with a data plane that has a bug: it raises on every frame that ends in 0xEE.

The barrier test (test_barrier_daemon.py) runs this in its namespace with `nvgw run`'s
arguments. nvgw has no fault-injection switch: this script wraps the two entry points
the readers call (``from_port`` for the TAPs, ``from_provider`` for the receive ring)
where the daemon imports them from (``gateway.dataplane``, before ``nvgw run`` imports
``gateway.io``), and then hands over to the real command line.
"""

import sys

import gateway.dataplane
from gateway.cli import main

assert "gateway.io" not in sys.modules, "the daemon would keep the real entry points"
MARKER = 0xEE
from_port, from_provider = gateway.dataplane.from_port, gateway.dataplane.from_provider


def faulty_from_port(node, port, frame):  # type: ignore[no-untyped-def]
    if frame[-1] == MARKER:
        raise RuntimeError("injected fault in from_port")
    from_port(node, port, frame)


def faulty_from_provider(node, datagram):  # type: ignore[no-untyped-def]
    if datagram[-1] == MARKER:
        raise RuntimeError("injected fault in from_provider")
    from_provider(node, datagram)


gateway.dataplane.from_port = faulty_from_port
gateway.dataplane.from_provider = faulty_from_provider
sys.argv[0] = "nvgw"
main()
