"""Decoding a Windows export: ``ConvertTo-Json`` files in, plain objects and records out.

What Windows writes is taken as it is: UTF-16 from Windows PowerShell 5.1's ``>``, a
bare object when the cmdlet returned one item, nothing at all when it returned none,
enums as integers (or as names with ``-EnumsAsStrings``), and the CIM bookkeeping
properties next to the real ones.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml.comments import CommentedMap

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import MacAddress

from ..untrusted import parse_json, read_bounded
from ._locate import RECORD_KEYS, entry_path

IPAddress = IPv4Address | IPv6Address

# Added by PowerShell and CIM to every object they hand out, not part of the policy:
# the class, the property list, the WMI path, and (through -CimSession or
# Invoke-Command) the host the object came from.
CIM_NOISE = frozenset(
    {
        "CimClass",
        "CimInstanceProperties",
        "CimSystemProperties",
        "PSComputerName",
        "PSShowComputerName",
        "PSSourceJobInstanceId",
        "RunspaceId",
    }
)

# The NetWNV enums as the CIM classes store them (uint8). The integers are those the
# OpenStack Hyper-V agent writes through WMI (os-win's nvgreutils: Nat 0, Encap 1;
# Static 0, L2Only 3); the others follow the cmdlets' documented order of the names.
RULE_NAMES = {0: "TranslationMethodNat", 1: "TranslationMethodEncap", 2: "TranslationMethodNone"}
TYPE_NAMES = {0: "Static", 1: "Dynamic", 2: "GatewayWildcard", 3: "L2Only"}
_NVGW_VALUES = {
    "TranslationMethodNat": "nat",
    "TranslationMethodEncap": "encap",
    "Static": "static",
    "L2Only": "l2only",
    "GatewayWildcard": "gateway",
}
_REFUSED = {
    "TranslationMethodNone": "a record that translates nothing carries no traffic; nvgw "
    "carries a CA by NVGRE (TranslationMethodEncap) or IP-Rewrite (TranslationMethodNat)",
    "Dynamic": "a dynamic record is one the Windows host learned (guest DHCP or IP address "
    "learning); nvgw learns no addresses, so it has no equivalent",
}

_MAC = TypeAdapter(MacAddress)


@dataclass(frozen=True, slots=True)
class Export:
    """The objects of one export file, with the file's name for the issues they raise."""

    file: str
    objects: Sequence[Mapping[str, Any]]

    def entries(self) -> Iterator[Entry]:
        for index, source in enumerate(self.objects):
            yield Entry(self.file, index, source)


@dataclass(frozen=True, slots=True)
class Entry:
    """One object of an export, and where it is: several exports (one per host) may
    list the same entry, and a problem is reported at the one it is in."""

    file: str
    index: int
    source: Mapping[str, Any]


# --- Reading export files -----------------------------------------------------------


def read_export(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The objects of one ``ConvertTo-Json`` file, without their CIM noise.

    Raises ``ConfigError`` naming the file for an unreadable or oversized file, text
    that is not JSON (or nests too deep: ``untrusted``), and JSON that is not an
    object or a list of objects.
    """
    name = os.fspath(path)
    text = _decode(read_bounded(path), name)
    if not text.strip():
        return []  # ConvertTo-Json writes nothing at all when the cmdlet returned nothing
    return _objects(parse_json(text, name), name)


def _decode(raw: bytes, name: str) -> str:
    """Text by its byte-order mark: Windows PowerShell 5.1 writes UTF-16 LE with ``>``
    and ``Out-File``, UTF-8 with a BOM with ``-Encoding UTF8``; PowerShell 7 writes
    UTF-8 without one."""
    encoding = "utf-8"
    if raw.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # reads the BOM to pick the byte order, and drops it
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        message = f"cannot decode the file as {encoding} ({error.reason} at byte {error.start})"
        if encoding == "utf-8":
            message += ": expected UTF-8, or UTF-16 with a byte-order mark"
        raise _file_error(name, message) from None


def _objects(data: Any, name: str) -> list[dict[str, Any]]:
    if _is_wrapped_array(data):
        data = data["value"]
    if isinstance(data, dict):
        data = [data]  # ConvertTo-Json writes a bare object for a single result
    if not isinstance(data, list):
        raise _file_error(name, "expected a JSON object or a list of objects (ConvertTo-Json)")
    objects, issues = [], []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            objects.append({key: value for key, value in item.items() if key not in CIM_NOISE})
        else:
            message = "not an object: each entry of an export is one cmdlet result"
            issues.append(ConfigIssue(entry_path(name, index), _brief(item), message, name))
    if issues:
        raise ConfigError(issues)
    return objects


def _is_wrapped_array(data: Any) -> bool:
    """Windows PowerShell 5.1 writes some arrays as ``{"value": [...], "Count": n}``
    (its extended type data for arrays leaks into the JSON)."""
    return (
        isinstance(data, dict)
        and set(data) == {"value", "Count"}
        and isinstance(data["value"], list)
    )


def _file_error(name: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue("", None, message, name)])


def _brief(value: Any) -> Any:
    if isinstance(value, dict):
        return "{...}" if value else {}
    if isinstance(value, list):
        return "[...]" if value else []
    return value


# --- Lookup records ----------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """A lookup record of the export, with the parts the import works with."""

    file: str
    index: int
    source: Mapping[str, Any]
    rule: str | None  # None: the export has no Rule (the schema says it is missing)
    kind: str
    vsid: int | None
    ca: IPAddress | None
    mac: str | None  # canonical text, when it is a usable MAC
    pa: IPAddress | None
    wildcard: bool  # CA 0.0.0.0 or ::: a gateway's or an L2-only MAC's, no address of its own

    def entry(self) -> CommentedMap:
        entry = CommentedMap()
        for prop, key in RECORD_KEYS.items():
            if self.source.get(prop) is not None:
                entry[key] = self.source[prop]
        if self.mac is not None:
            entry["mac"] = self.mac
        if self.rule is not None:
            entry["rule"] = self.rule
        if self.kind != "static":
            entry["type"] = self.kind
        if self.source.get("VMName"):
            entry["vm"] = self.source["VMName"]
        entry.fa.set_flow_style()
        return entry

    def key(self) -> tuple[object, ...] | None:
        """What makes two exported records the same record: its VSID and CA, and the
        MAC for a wildcard (every L2-only MAC of a VSID has one on 0.0.0.0). None when
        the record is too broken to tell (the schema reports it)."""
        if self.vsid is None or self.ca is None or (self.wildcard and self.mac is None):
            return None
        return (self.vsid, self.ca, self.mac) if self.wildcard else (self.vsid, self.ca)

    def compared(self) -> dict[str, Any]:
        """The properties the policy takes from the record, in a form two exports of it
        write alike (PowerShell 5.1's integers or 7's names, any MAC or GUID spelling)."""
        customer = self.source.get("CustomerID")
        return {
            "MACAddress": self.mac or self.source.get("MACAddress"),
            "ProviderAddress": self.pa or self.source.get("ProviderAddress"),
            "Rule": self.rule,
            "Type": self.kind,
            "VMName": self.source.get("VMName"),
            "CustomerID": customer.lower() if isinstance(customer, str) else customer,
        }


class Refused(Exception):
    """An export value nvgw cannot take: the property, and why."""

    def __init__(self, prop: str, message: str) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message


def decode_record(entry: Entry) -> Record | list[Refused]:
    """The record, or every value in it that nvgw cannot take.

    A record on CA 0.0.0.0 (or ::) keeps its type: ``GatewayWildcard`` is nvgw's
    ``gateway`` (its VSID's off-subnet traffic goes to that MAC and PA), ``L2Only``
    its ``l2only`` (OpenStack writes one beside each port, for DHCP). Windows Server
    2012 had no Type, and its gateways' wildcard was a record on 0.0.0.0 without one
    (or written Static by a later export): that is a gateway's too, since a static
    record needs the VM's own address.
    """
    source, refusals, values = entry.source, [], {}
    for prop, names in (("Rule", RULE_NAMES), ("Type", TYPE_NAMES)):
        try:
            values[prop] = _nvgw_enum(source.get(prop), names, prop)
        except Refused as refused:
            refusals.append(refused)
    if refusals:
        return refusals
    ca = address_of(source.get("CustomerAddress"))
    wildcard = ca is not None and ca.is_unspecified
    kind = values["Type"] or "static"
    if wildcard and kind == "static":
        kind = "gateway"
    vsid = source.get("VirtualSubnetID")
    return Record(
        entry.file,
        entry.index,
        source,
        values["Rule"],
        kind,
        vsid if type(vsid) is int else None,
        ca,
        _canonical_mac(source.get("MACAddress")),
        address_of(source.get("ProviderAddress")),
        wildcard,
    )


# --- Values --------------------------------------------------------------------------


def _nvgw_enum(value: Any, names: Mapping[int, str], prop: str) -> str | None:
    """The nvgw value of a NetWNV enum written as its integer (ConvertTo-Json's
    default) or its name (PowerShell 7's -EnumsAsStrings, any case); None when the
    export has none. Raises ``Refused`` for what nvgw cannot take."""
    if value is None:
        return None
    name = None
    if type(value) is int:
        name = names.get(value)
    elif isinstance(value, str):
        name = next((known for known in names.values() if known.lower() == value.lower()), None)
    if name is None:
        choices = ", ".join(f"{number} ({text})" for number, text in names.items())
        raise Refused(prop, f"not a {prop}: expected one of {choices}, or the name")
    if name in _REFUSED:
        raise Refused(prop, f"{name} is not supported: {_REFUSED[name]}")
    return _NVGW_VALUES[name]


def address_of(value: Any) -> IPAddress | None:
    """An export's address text as an address; None for anything else (the schema, or
    the caller, reports it)."""
    if not isinstance(value, str):
        return None
    try:
        return ip_address(value)
    except ValueError:
        return None


def _canonical_mac(value: Any) -> str | None:
    """``000000000011`` (how Windows prints a MAC) as ``00-00-00-00-00-11``; None for
    anything that is not a usable MAC (the schema reports it)."""
    try:
        return str(_MAC.validate_python(value))
    except ValidationError:
        return None
