"""gateway.netnames: the one HOST:PORT parser and the one interface-name limit, and
that every place which meets them uses them (``--metrics``, ``--api-tcp``, the policy
validator, the lab's links and plan)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control import load_config
from gateway.control.api_server import ApiListenError, bind_tcp
from gateway.errors import ConfigError
from gateway.lab.netns import check_ifname
from gateway.lab.plan import plan_lab
from gateway.netnames import (
    IFNAME_MAX_BYTES,
    IFNAMSIZ,
    ListenAddress,
    ListenAddressError,
    format_host_port,
    ifname_problem,
    parse_listen_address,
)
from gateway.telemetry import serve_metrics
from tests.conftest import require_root, require_tool

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

ACCEPTED = [
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("127.0.0.1:9550", ("127.0.0.1", 9550)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("[::1]:9550", ("::1", 9550)),
    ("[::1]:0", ("::1", 0)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    ("[::ffff:127.0.0.1]:80", ("::ffff:127.0.0.1", 80)),
    (":9550", ("127.0.0.1", 9550)),  # no host: loopback, never every address
    ("localhost:9550", ("localhost", 9550)),
    ("metrics.example.com:80", ("metrics.example.com", 80)),
]

REFUSED = {
    "": "no port",
    "nope": "no port",
    "9550": "no port",
    "127.0.0.1": "no port",
    "[::1]": "no port",
    "127.0.0.1:": "port 0..65535",
    "1.2.3.4:70000": "port 0..65535",
    ":65536": "port 0..65535",
    "127.0.0.1:-1": "port 0..65535",
    "127.0.0.1:+80": "port 0..65535",
    "127.0.0.1: 80": "port 0..65535",
    "127.0.0.1:0x50": "port 0..65535",
    "127.0.0.1:9550\n": "port 0..65535",
    "127.0.0.1:\u0669\u0665\u0665\u0660": "port 0..65535",  # Arabic-Indic digits
    "127.0.0.1:\uff18\uff10": "port 0..65535",  # full-width digits
    "127.0.0.1:\u00b2": "port 0..65535",  # superscript two: isdigit(), not a port
    # A bare IPv6 address is refused whether or not its last group could be a port.
    "::1:9550": "an IPv6 address goes in brackets",
    "::1": "an IPv6 address goes in brackets",
    "2001:db8::1:443": "an IPv6 address goes in brackets",
    "[127.0.0.1]:80": "brackets hold an IPv6 address",
    "[nope]:80": "brackets hold an IPv6 address",
    "1.2.3:80": "is not an IPv4 address, [IPv6] address or host name",
    "256.1.1.1:80": "is not an IPv4 address, [IPv6] address or host name",
    "host name:80": "is not an IPv4 address, [IPv6] address or host name",
    "-host:80": "is not an IPv4 address, [IPv6] address or host name",
    "host/x:80": "is not an IPv4 address, [IPv6] address or host name",
}


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_host_port_accepted(text: str, expected: tuple[str, int]) -> None:
    address = parse_listen_address(text, "--metrics")
    assert address == ListenAddress(*expected)
    if text.startswith(":"):
        return
    assert str(address) == text, "printed back as written"
    assert parse_listen_address(format_host_port(*address), "--metrics") == address


@pytest.mark.parametrize(("text", "reason"), REFUSED.items())
def test_host_port_refused_naming_the_flag_and_the_value(text: str, reason: str) -> None:
    with pytest.raises(ListenAddressError) as refused:
        parse_listen_address(text, "--api-tcp")
    error = refused.value
    assert isinstance(error, ValueError)
    assert (error.flag, error.value) == ("--api-tcp", text)
    assert reason in error.reason
    assert str(error) == f"--api-tcp {text!r}: {error.reason}"


def test_metrics_and_api_tcp_use_the_one_parser() -> None:
    """The same text is refused the same way by both listeners, each naming its flag;
    a bare IPv6 address was taken by --metrics as host '::1' port 9550 before."""
    with pytest.raises(ListenAddressError, match=r"^--metrics '::1:9550': an IPv6 address"):
        serve_metrics(CollectorRegistry(), "::1:9550")
    with pytest.raises(ApiListenError) as refused:
        bind_tcp("::1:9550", tls=False)
    assert refused.value.strerror.startswith("--api-tcp '::1:9550': an IPv6 address goes in")
    sock = bind_tcp(":0", tls=False)  # no host: loopback, as for --metrics
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


@pytest.mark.parametrize("flag", ["--metrics", "--api-tcp"])
def test_nvgw_run_refuses_a_bad_address_before_it_starts(tmp_path: Path, flag: str) -> None:
    """Checked as the command line is read: nothing is opened, no config is read."""
    result = CliRunner().invoke(
        app,
        ["run", "-c", str(tmp_path / "absent.yaml"), "-n", "host1", flag, "[::1]:99999"],
        prog_name="nvgw",
    )
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert "'[::1]:99999': not HOST:PORT (port 0..65535)" in result.output


# ---------------------------------------------------------------- interface names

FIFTEEN_ASCII = "a" * 15
FIFTEEN_CHARACTERS_SIXTEEN_BYTES = "tap-" + "\u00e9" + "a" * 10  # é is 2 bytes in UTF-8
FOURTEEN_CHARACTERS_FIFTEEN_BYTES = "tap-" + "\u00e9" + "a" * 9


def test_ifnamsiz_is_the_kernels_buffer_with_its_nul() -> None:
    assert (IFNAMSIZ, IFNAME_MAX_BYTES) == (16, 15)
    assert len(FIFTEEN_CHARACTERS_SIXTEEN_BYTES) == 15
    assert len(FIFTEEN_CHARACTERS_SIXTEEN_BYTES.encode()) == 16
    assert len(FOURTEEN_CHARACTERS_FIFTEEN_BYTES.encode()) == 15


def test_interface_names_are_counted_in_bytes() -> None:
    assert ifname_problem(FIFTEEN_ASCII) is None
    assert ifname_problem(FOURTEEN_CHARACTERS_FIFTEEN_BYTES) is None
    for name in ("a" * 16, FIFTEEN_CHARACTERS_SIXTEEN_BYTES, ""):
        assert ifname_problem(name) == (
            "ifname_length",
            "an interface name has 1 to 15 bytes (Linux IFNAMSIZ)",
        )
    for name in (".", "..", "a/b", "a:b", "a b", "a\tb", "t\u00e00"):
        assert ifname_problem(name) is not None and ifname_problem(name)[0] == "ifname_chars"
    assert ifname_problem("t\u00e90") is None, "é is C3 A9: no byte the kernel reads as space"


def test_the_lab_counts_bytes_too() -> None:
    """The lab's check counted characters: this 16-byte name passed it, and netlink
    then refused it with a bare EINVAL after the lab had made its namespaces."""
    check_ifname(FIFTEEN_ASCII)
    check_ifname(FOURTEEN_CHARACTERS_FIFTEEN_BYTES)
    with pytest.raises(ValueError, match=r"1 to 15 bytes \(Linux IFNAMSIZ\)"):
        check_ifname(FIFTEEN_CHARACTERS_SIXTEEN_BYTES)


def test_the_validator_refuses_a_port_name_of_15_characters_and_16_bytes(
    tmp_path: Path,
) -> None:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    assert text.count("{name: blue2,") == 1
    for name, valid in (
        (FOURTEEN_CHARACTERS_FIFTEEN_BYTES, True),
        (FIFTEEN_CHARACTERS_SIXTEEN_BYTES, False),
    ):
        config = tmp_path / "two-hosts.yaml"
        config.write_text(text.replace("{name: blue2,", f"{{name: {name},"), encoding="utf-8")
        if valid:
            assert load_config(config).node("host2").ports[0].name == name
            continue
        with pytest.raises(ConfigError) as refused:
            load_config(config)
        [issue] = refused.value.issues
        assert issue.path == "nodes.host2.ports[0].name"
        assert issue.value == name
        assert "1 to 15 bytes" in issue.message


def test_a_lab_prefix_of_multi_byte_characters_still_fits_its_bridge_ports() -> None:
    """The plan cut the prefix to 8 characters for ``PREFIX-pN``: 8 two-byte
    characters made a 19-byte name. It cuts to whole characters within 15 bytes."""
    plan = plan_lab(load_config(CONFIGS / "two-hosts.yaml"), "\u00e4" * 10)
    ports = [host.bridge_port for host in plan.hosts]
    assert ports == ["\u00e4" * 6 + "-p0", "\u00e4" * 6 + "-p1"]
    assert all(ifname_problem(port) is None for port in ports)


# Names next to the edges of dev_valid_name(): length in bytes, and the bytes it reads
# as a space. The kernel's ctype is Latin-1, where 0xA0 is a (no-break) space: "à" is
# C3 A0 in UTF-8, so the kernel refuses it where "é" (C3 A9) passes.
KERNEL_EDGES = [
    FIFTEEN_ASCII,
    FOURTEEN_CHARACTERS_FIFTEEN_BYTES,
    FIFTEEN_CHARACTERS_SIXTEEN_BYTES,
    "a" * 16,
    "t\u00e90",
    "t\u00e00",
    "t\u00a00",  # a no-break space: C2 A0
    "t\u01600",  # Š is C5 A0
    "a:b",
    "a/b",
    "a b",
    ".",
    "..",
    "...",
]


@pytest.mark.netns
def test_names_refused_are_exactly_those_the_kernel_refuses() -> None:
    """Each name of KERNEL_EDGES as the end of a veth in a namespace of this test's own:
    the kernel creates it if and only if ifname_problem() finds nothing wrong."""
    require_root()
    require_tool("ip")
    namespace = f"nvt{os.getpid() % 10000}ifn"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        verdicts = {}
        for index, name in enumerate(KERNEL_EDGES):
            veth = ["link", "add", name, "type", "veth", "peer", "name", f"peer{index}"]
            made = subprocess.run(["ip", "-n", namespace, *veth], capture_output=True)
            verdicts[name] = (made.returncode == 0, ifname_problem(name) is None)
        assert {name: kernel for name, (kernel, _) in verdicts.items()} == {
            name: ours for name, (_, ours) in verdicts.items()
        }
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
