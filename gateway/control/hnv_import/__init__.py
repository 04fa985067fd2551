"""Import of HNV policy exported from Windows: ``ConvertTo-Json`` files in, a config out.

Existing HNV users hold their policy in the Windows hosts' WNV tables, and the only
export PowerShell offers is ``Get-NetVirtualizationLookupRecord | ConvertTo-Json`` (and
the same for customer routes and provider addresses). This package turns those files
into an nvgw config document, so that a migration starts from the policy in force
rather than from retyped cmdlets.

What Windows writes is taken as it is (``_decode``: UTF-16, a bare object for one
result, integer enums, CIM bookkeeping properties), from as many hosts as the operator
exported, each entry once (``_merge``: every host lists the same records). Records
keep their type and CA; the ones that are no VM become what they are in nvgw
(``_gateways``): a subnet's default gateway its ``gateway:``, a gateway's interface a
``gateway`` record without a port. What Windows does not know, the caller says:
which provider addresses make up which nvgw node (an export has no hosts), and the
Linux interface that carries them (``_nodes``). ``_build`` puts records, routes and
nodes into the model.

The result is checked with ``load_policy`` before it is returned, so an import never
writes a file ``nvgw check`` refuses; each problem is reported at the export entry (or
command-line option) it came from, such as ``lookup-records.json[3].MACAddress``, and
all of them in one pass (``_locate``).
"""

from __future__ import annotations

from ._build import import_hnv
from ._decode import CIM_NOISE, RULE_NAMES, TYPE_NAMES, Export, read_export
from ._locate import INTERFACE_OPTION, NODE_OPTION
from ._nodes import NodeAddress, NodeSpec, parse_nodes

__all__ = [
    "CIM_NOISE",
    "INTERFACE_OPTION",
    "NODE_OPTION",
    "RULE_NAMES",
    "TYPE_NAMES",
    "Export",
    "NodeAddress",
    "NodeSpec",
    "import_hnv",
    "parse_nodes",
    "read_export",
]
