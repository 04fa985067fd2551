"""Port forwards in the gateway lab, for real, on both backends (the gateway lab's
one bring-up per backend, shared with ``test_gateway_nat.py``): through the gateway's
API, Blue's 203.0.113.10:80 and Red's 203.0.113.10:81 are forwarded to port 8080 of
blue1 and red1 (one address, 10.10.10.11); a client in the internet's namespace
connects to each and each VM's own server answers, and ``GET /v1/nat/sessions`` lists
each session in its tenant; the forwards go again afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from gateway.lab.topology import Lab

pytestmark = pytest.mark.netns

CA, SERVED = "10.10.10.11", 8080
FORWARDS = {"blue": 80, "red": 81}
# A server in a VM's namespace: one line, its name, to every connection.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[3].encode() + b"\\n"); c.close()
"""
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as c:
    print(c.makefile().readline().strip())
"""


@pytest.fixture
def forwarded(gateway_lab: Lab) -> Iterator[Lab]:
    """Each tenant's server on its VM, and its forward in the policy (removed after)."""
    lab = gateway_lab
    servers = []
    try:
        for tenant in FORWARDS:
            vm = f"{tenant}1"
            server = subprocess.Popen(
                ["ip", "netns", "exec", f"{lab.prefix}-{vm}", sys.executable, "-c", SERVER,
                 CA, str(SERVED), vm],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline() == "ready\n"
        with lab.api("gw") as api:
            for tenant, port in FORWARDS.items():
                external = {"protocol": "tcp", "address": "203.0.113.10", "port": port}
                forward = {"node": "gw", "routing_domain": tenant, **external}
                api.request(
                    "POST",
                    "/v1/gateway-port-forwards",
                    json={**forward, "ca": CA, "ca_port": SERVED},
                )
        yield lab
    finally:
        with lab.api("gw") as api:
            api.request("DELETE", "/v1/gateway-port-forwards", params={"node": "gw"})
        for server in servers:
            server.kill()
            server.wait()


def test_the_internet_reaches_each_tenants_server_through_its_forward(forwarded: Lab) -> None:
    for tenant, port in FORWARDS.items():
        answered = subprocess.run(
            ["ip", "netns", "exec", f"{forwarded.prefix}-internet", sys.executable, "-c",
             CLIENT, "203.0.113.10", str(port)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip() == f"{tenant}1"
    # The gateway lists the sessions its forwards opened, each in its own tenant.
    with forwarded.api("gw") as api:
        for tenant, port in FORWARDS.items():
            listed = api.request("GET", "/v1/nat/sessions", params={"rdid": tenant})
            ours = [s for s in listed["sessions"] if s["external_port"] == port]
            assert ours, listed
            assert {(s["routing_domain"], s["ca"], s["ca_port"], s["opened_by"]) for s in ours} == {
                (tenant, CA, SERVED, "internet")
            }
