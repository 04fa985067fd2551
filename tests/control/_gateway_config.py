"""A config file with a gateway node, in the shipped files' style: the two-hosts lab
plus the gateway of design.md's gateway lab (node ``gw`` at PA 198.18.0.10, a
``gateway`` record on CA 10.10.10.254 per tenant and the customer route 0.0.0.0/0 to
it; the private-cloud TAPs ``gw-blue`` and ``gw-red``, both 172.16.0.1/24). Blue's
served domain is keyed by its name, Red's by its RDID, as the document may hold
either."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RED = "{11111111-2222-3333-4444-000000005011}"

RECORDS = """\
  - {vsid: 5010, ca: 10.10.10.254, mac: 02-00-00-00-50-10, pa: 198.18.0.10, rule: encap, type: gateway}
  - {vsid: 5011, ca: 10.10.10.254, mac: 02-00-00-00-50-11, pa: 198.18.0.10, rule: encap, type: gateway}
"""  # noqa: E501 (one line per record, as the shipped files write them)
ROUTES = """\
  - {rdid: "{11111111-2222-3333-4444-000000005010}", vsid: 5010, destination: 0.0.0.0/0, next_hop: 10.10.10.254, metric: 255}
  - {rdid: "{11111111-2222-3333-4444-000000005011}", vsid: 5011, destination: 0.0.0.0/0, next_hop: 10.10.10.254, metric: 255}
"""  # noqa: E501
# Blue's site-to-site tunnel (the peer's public key; the keys' files are the node's).
TUNNELS = """
tunnels:
  - name: onprem-blue
    rdid: "{11111111-2222-3333-4444-000000005010}"
    node: gw
    listen_port: 51820
    public_key: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=
    preshared_key_file: /etc/nvgw/onprem-blue.psk
    endpoint: 192.0.2.11:51820
    allowed_ips: [172.16.60.0/24]
"""
NODE = f"""\
  gw:
    role: gateway
    provider_addresses:
      - {{interface: pa0, pa: 198.18.0.10, prefix_length: 24}}
    mss_clamp: auto
    tunnel_keys: {{51820: /etc/nvgw/wg-51820.key}}
    routing_domains:
      blue:
        taps: [{{name: gw-blue, address: 172.16.0.1/24}}]
        routes:
          - {{destination: 172.16.0.0/24, next_hop: tap:gw-blue}}
          - {{destination: 172.16.50.0/24, next_hop: 172.16.0.2}}
      "{RED}":
        taps: [{{name: gw-red, address: 172.16.0.1/24}}]
        routes:
          - {{destination: 172.16.0.0/24, next_hop: tap:gw-red}}
"""


def gateway_text() -> str:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    records_end = text.index("\n# New-NetVirtualizationCustomerRoute")
    routes_end = text.index("\nnodes:")
    return (
        text[:records_end]
        + RECORDS
        + text[records_end:routes_end]
        + ROUTES
        + TUNNELS
        + text[routes_end:]
        + NODE
    )


# The node's NAT (issue 12), and a port forward of Blue's through it.
NAT = "    nat: {tap: gw-ext, addresses: [203.0.113.10/24], next_hop: 203.0.113.1}\n"
FORWARD = """\
        port_forwards:
          - {protocol: tcp, address: 203.0.113.10, port: 80, ca: 10.10.10.11, ca_port: 80}
"""
BLUE_LAST_ROUTE = "          - {destination: 172.16.50.0/24, next_hop: 172.16.0.2}\n"


def nat_gateway_text(forward: bool = True) -> str:
    """The gateway config with a NAT on node gw, and (``forward``) Blue's forward of
    203.0.113.10:80 (TCP) to blue1's port 80."""
    text = gateway_text().replace("    mss_clamp: auto\n", "    mss_clamp: auto\n" + NAT, 1)
    if forward:
        text = text.replace(BLUE_LAST_ROUTE, BLUE_LAST_ROUTE + FORWARD, 1)
    return text


def gateway_config(directory: Path, text: str | None = None) -> Path:
    """The gateway config (or ``text``, a variant of it) written to ``directory``."""
    path = directory / "gateway.yaml"
    path.write_text(gateway_text() if text is None else text)
    return path
