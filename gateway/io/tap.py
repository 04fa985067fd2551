"""TAP devices, one per VM network adapter, through python-pytun.

A TAP takes and gives one Ethernet frame per read()/write() (IFF_NO_PI: no packet
information header in front). The fd is non-blocking: reads drain until
EAGAIN, and a write that would block is counted as a drop instead of queued.

The fd keeps working when the interface is moved into another network namespace
(the lab moves each TAP into its VM's namespace), but a move takes the link down;
whoever moves it brings it up again.
"""

from __future__ import annotations

import errno
import os

from pytun import IFF_NO_PI, IFF_TAP, TunTapDevice

from gateway.netnames import ifname_problem
from gateway.wire import mac_to_str


class Tap:
    __slots__ = ("device", "fd", "name")

    def __init__(self, name: str, mac: bytes, mtu: int) -> None:
        # The validator refuses such names in a policy; this says why for any other
        # caller, where TUNSETIFF would cut the name or fail with a bare EINVAL.
        problem = ifname_problem(name)
        if problem is not None:
            raise OSError(errno.EINVAL, f"cannot create TAP {name!r}: {problem[1]}")
        try:
            self.device = TunTapDevice(name=name, flags=IFF_TAP | IFF_NO_PI)
        except OSError as error:
            raise OSError(error.errno, f"cannot create TAP {name}: {error.strerror}") from None
        self.name = name
        self.device.hwaddr = bytes(mac)
        self.device.mtu = mtu
        _host_stays_off(name)
        self.device.up()
        self.fd = self.device.fileno()
        os.set_blocking(self.fd, False)

    def close(self) -> None:
        self.device.close()

    def __repr__(self) -> str:
        return f"Tap({self.name!r}, mac={mac_to_str(self.device.hwaddr)})"


def _host_stays_off(name: str) -> None:
    """The host's own IPv6 stack must not talk on a VM's port (router solicitations,
    MLD reports would reach the VM's data path as if the VM had sent them)."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:  # a kernel without IPv6: nothing to silence
        pass
