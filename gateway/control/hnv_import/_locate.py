"""Mapping problems back to the export entry they came from.

The import builds an nvgw document and lets ``load_policy`` judge it, so its issues
name places in that document (``lookup_records[2].mac``), which the operator never
saw. Each part of the document is registered with its origin as it is built, so that
every issue, and every other entry a message mentions, is reported where the operator
can fix it: ``lookup-records.json[3].MACAddress``, or ``--node host1``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigIssue
from gateway.policy import format_path, parse_path

Loc = tuple[object, ...]

NODE_OPTION = "--node"
INTERFACE_OPTION = "--interface"
_OPTIONS = (NODE_OPTION, INTERFACE_OPTION)
_UNLOCATED = "<import>"  # an issue no export entry or option explains (never expected)
SECTIONS = ("routing_domains", "lookup_records", "customer_routes", "nodes")
# A place in the built document, as load_policy's messages name another entry.
_DOCUMENT_PATH = re.compile(
    rf"\b(?:{'|'.join(SECTIONS)})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*|\[[^\]]*\])+"
)

# Export property -> nvgw key, in the order the shipped configs write the keys.
RECORD_KEYS = {
    "VirtualSubnetID": "vsid",
    "CustomerAddress": "ca",
    "MACAddress": "mac",
    "ProviderAddress": "pa",
}
ROUTE_KEYS = {
    "RoutingDomainID": "rdid",
    "VirtualSubnetID": "vsid",
    "DestinationPrefix": "destination",
    "NextHop": "next_hop",
    "Metric": "metric",
}
# nvgw key -> export property, to report a problem where the operator can find it.
RECORD_FIELDS = {
    **{key: prop for prop, key in RECORD_KEYS.items()},
    "rule": "Rule",
    "type": "Type",
    "vm": "VMName",
}
ROUTE_FIELDS = {key: prop for prop, key in ROUTE_KEYS.items()}
PORT_FIELDS = {"name": "VMName", "vsid": "VirtualSubnetID", "mac": "MACAddress"}
PROVIDER_FIELDS = {"pa": "ProviderAddress", "prefix_length": "PrefixLength", "vlan": "VlanID"}
SUBNET_FIELDS = {"vsid": "VirtualSubnetID", "prefixes": "DestinationPrefix"}


def entry_path(file: str, *loc: object) -> str:
    """``lookup-records.json[3].MACAddress``: the file's name, then the entry."""
    return Path(file).name + format_path(loc)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an entry of the built document came from: the export entry (or option)
    to name when the entry is refused, and its property names."""

    file: str
    loc: Loc  # the entry in that file (an index), or under that option (a node name)
    fields: Mapping[str, str] = field(default_factory=dict)  # nvgw key -> property
    whole: str | None = None  # the property the whole entry stands for, if one

    def path(self, rest: Loc) -> str:
        if rest:
            head = rest[0]
            rest = (self.fields.get(head, head) if isinstance(head, str) else head, *rest[1:])
        elif self.whole is not None:
            rest = (self.whole,)
        if self.file in _OPTIONS:
            return format_path((*self.loc, *rest))
        return entry_path(self.file, *self.loc, *rest)


class Report:
    """What one import found: its own issues and warnings, and the origin of each part
    of the document it builds, to relocate the issues ``load_policy`` finds there."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self.origins: dict[Loc, Origin] = {}
        self.explained: set[Loc] = set()  # places whose problem this import reported itself

    def issue(self, file: str, loc: Loc, value: Any, message: str) -> None:
        self.issues.append(ConfigIssue(entry_path(file, *loc), value, message, file))

    def relocated(self, issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
        """The document's issues that this import did not explain itself, each at the
        place it came from."""
        return [
            self._relocate(issue)
            for issue in issues
            if parse_path(issue.path) not in self.explained
        ]

    def _relocate(self, issue: ConfigIssue) -> ConfigIssue:
        """The issue at the export entry (or option) the document's entry came from,
        and naming the others it mentions the same way."""
        message = _DOCUMENT_PATH.sub(self._mention, issue.message)
        found = self._source(parse_path(issue.path))
        file, path = found if found is not None else (_UNLOCATED, issue.path)
        return dataclasses.replace(issue, file=file, path=path, message=message)

    def _source(self, loc: Loc) -> tuple[str, str] | None:
        """(file or option, path there) of a place in the built document."""
        for cut in range(len(loc), 0, -1):
            origin = self.origins.get(loc[:cut])
            if origin is not None:
                return origin.file, origin.path(loc[cut:])
        return None

    def _mention(self, match: re.Match[str]) -> str:
        found = self._source(parse_path(match.group()))
        if found is None:
            return match.group()
        file, path = found
        return f"{file} {path}" if file in _OPTIONS else path
