"""The differential test of every kind's change (issue 14): random sequences mixing
changes of lookup records with adds and removals of every other kind of the registry
(routing domains, subnets, customer routes, tunnels, provider addresses, a gateway's
served routing domains, TAPs, routes and port forwards, nodes added and removed
with what sits in them), valid and not. Each is
judged by ``IndexedPolicy`` (``change_records``, ``change_others``) and by applying
the same edit to the whole document and loading it: both refuse alike (the edit's
own refusal with its message, or the same issues in the same order) or accept with
equal policies; and the snapshot updated from the previous one equals the snapshot
compiled from scratch, table by table."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.control import kinds as k
from gateway.control.config_file import to_plain
from gateway.control.edits import Add, Exists, NotFound, Remove, migrate
from gateway.errors import ConfigError
from gateway.policy import IndexedPolicy, compile_policy

from ._documents import BLUE, RED, base_document
from ._gateway_document import gateway_document
from .test_incremental import _whole, canonical, changes, record_change

GREEN = "{11111111-2222-3333-4444-000000006000}"
RDIDS = st.sampled_from([BLUE, RED, GREEN])
VSIDS = st.sampled_from([5010, 5011, 5012, 6000, 6001])
PREFIXES = ["10.10.10.0/24", "10.10.20.0/24", "10.30.0.0/16", "10.30.1.0/24", "fd00:30::/64"]
PAS = st.sampled_from(["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.10", "bad"])
NODES = st.sampled_from(["host1", "host2", "gw"])
SERVED = st.sampled_from(["blue", "red", RED, "green"])
KEY = "x" * 43 + "="  # a public key's shape: 32 bytes of base64


def _maybe(strategy: Any) -> Any:
    return st.one_of(st.none(), strategy)


def _fields(**fields: Any) -> Any:
    """An entry's fields, a None one left out (a missing field the schema refuses)."""
    return st.fixed_dictionaries(fields).map(
        lambda found: {key: value for key, value in found.items() if value is not None}
    )


entries = {
    k.ROUTING_DOMAINS: _fields(rdid=RDIDS, name=_maybe(st.sampled_from(["blue", "green"]))),
    k.VIRTUAL_SUBNETS: _fields(
        rdid=RDIDS,
        vsid=VSIDS,
        prefixes=st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=2),
        gateway=_maybe(st.sampled_from(["10.30.0.1", "10.10.10.1", "10.30.0.0"])),
    ),
    k.CUSTOMER_ROUTES: _fields(
        rdid=RDIDS,
        vsid=VSIDS,
        destination=st.sampled_from(["0.0.0.0/0", "10.10.10.0/24", "192.168.0.0/16", "::/0"]),
        next_hop=st.sampled_from(["0.0.0.0", "10.10.10.254", "10.30.0.5", "::"]),
    ),
    k.TUNNELS: _fields(
        name=st.sampled_from(["t1", "t2"]),
        rdid=RDIDS,
        node=NODES,
        listen_port=st.just(51820),
        public_key=st.just(KEY),
        allowed_ips=st.just(["192.168.1.0/24"]),
    ),
    k.PROVIDER_ADDRESSES: _fields(
        node=NODES,
        interface=st.sampled_from(["pa0", "pa1", "gw-blue"]),
        pa=PAS,
        prefix_length=st.sampled_from([24, 40]),
    ),
    k.GATEWAY_DOMAINS: _fields(node=NODES, routing_domain=SERVED),
    k.GATEWAY_TAPS: _fields(
        node=NODES,
        routing_domain=SERVED,
        name=st.sampled_from(["gw-blue", "gw-new", "pa0"]),
        address=st.sampled_from(["172.16.9.1/24", "172.16.0.1/24", "10.10.10.5/24"]),
    ),
    k.GATEWAY_ROUTES: _fields(
        node=NODES,
        routing_domain=SERVED,
        destination=st.sampled_from(["172.16.60.0/24", "172.16.0.0/24", "10.10.10.0/24"]),
        next_hop=st.sampled_from(["tap:gw-blue", "tap:gw-new", "172.16.0.9", "172.16.9.9"]),
    ),
    k.GATEWAY_PORT_FORWARDS: _fields(
        node=NODES,
        routing_domain=SERVED,
        protocol=st.sampled_from(["tcp", "udp"]),
        address=st.sampled_from(["203.0.113.10"]),
        port=st.sampled_from([80, 443]),
        ca=st.sampled_from(["10.10.10.11"]),
        ca_port=st.just(8080),
    ),
}
filters = {
    k.ROUTING_DOMAINS: _fields(rdid=RDIDS),
    k.VIRTUAL_SUBNETS: _fields(vsid=VSIDS),
    k.CUSTOMER_ROUTES: _fields(
        rdid=_maybe(RDIDS), destination=st.sampled_from(["10.10.10.0/24", "0.0.0.0/0"])
    ),
    k.TUNNELS: _fields(name=st.sampled_from(["t1", "t2"])),
    k.PROVIDER_ADDRESSES: _fields(pa=PAS.filter(lambda pa: pa != "bad")),
    k.GATEWAY_DOMAINS: _fields(node=NODES, routing_domain=SERVED),
    k.GATEWAY_TAPS: _fields(name=st.sampled_from(["gw-blue", "gw-red", "gw-new"])),
    k.GATEWAY_ROUTES: _fields(
        destination=st.sampled_from(["172.16.0.0/24", "172.16.50.0/24", "172.16.60.0/24"])
    ),
    k.GATEWAY_PORT_FORWARDS: _fields(port=st.sampled_from([80, 443])),
}
# Entries that often fit (so that sequences also accept, and remove what they added),
# beside the random ones above.
fitting = {
    k.ROUTING_DOMAINS: {"rdid": GREEN, "name": "green"},
    k.VIRTUAL_SUBNETS: {"rdid": BLUE, "vsid": 6000, "prefixes": ["10.30.0.0/16"]},
    k.CUSTOMER_ROUTES: {
        "rdid": BLUE,
        "vsid": 5010,
        "destination": "192.168.0.0/16",
        "next_hop": "10.10.10.254",
    },
    k.PROVIDER_ADDRESSES: {"node": "host1", "interface": "pa1", "pa": "198.18.0.3"},
    k.GATEWAY_DOMAINS: {"node": "gw", "routing_domain": "blue"},
    k.GATEWAY_TAPS: {
        "node": "gw",
        "routing_domain": "blue",
        "name": "gw-new",
        "address": "172.16.9.1/24",
    },
    k.GATEWAY_ROUTES: {
        "node": "gw",
        "routing_domain": "blue",
        "destination": "172.16.60.0/24",
        "next_hop": "172.16.0.9",
    },
}
for kind, fields in fitting.items():
    if kind is k.PROVIDER_ADDRESSES:
        fields["prefix_length"] = 24
    entries[kind] = st.one_of(st.just(fields), entries[kind])
filters[k.ROUTING_DOMAINS] = st.one_of(st.just({"rdid": GREEN}), filters[k.ROUTING_DOMAINS])
filters[k.VIRTUAL_SUBNETS] = st.one_of(st.just({"vsid": 6000}), filters[k.VIRTUAL_SUBNETS])
filters[k.PROVIDER_ADDRESSES] = st.one_of(
    st.just({"pa": "198.18.0.3"}), filters[k.PROVIDER_ADDRESSES]
)
other_edits = st.one_of(
    *(st.builds(Add, st.just(kind), fields) for kind, fields in entries.items()),
    *(st.builds(Remove, st.just(kind), fields) for kind, fields in filters.items()),
)


@dataclass(frozen=True)
class Migration:
    """``edits.migrate``'s live migration of a VM to the node owning a PA."""

    vm: str
    pa: str


# A node added (a host with its provider addresses and ports: a record's PA, a port
# of a record's VSID and MAC, one already on another node, one no record gives a
# CA; or a gateway) or removed, with what sat in it. Apart from ``other_edits``: a
# follower (test_follow) runs as one of these nodes.
_PORTS = [
    {"name": "blue1", "vsid": 5010, "mac": "00-00-00-00-00-11"},
    {"name": "vm-x", "vsid": 5011, "mac": "00-00-00-00-00-21"},
    {"name": "vm-y", "vsid": 5012, "mac": "00-00-00-00-00-99"},
]
_HOST1 = {  # host1 again, as host3: it fits once host1 is gone
    "name": "host3",
    "role": "host",
    "provider_addresses": [{"interface": "pa0", "pa": "198.18.0.1", "prefix_length": 24}],
    "ports": [_PORTS[0], {"name": "red1", "vsid": 5011, "mac": "00-00-00-00-00-21"}],
}
node_edits = st.one_of(
    st.builds(
        Add,
        st.just(k.NODES),
        st.one_of(
            st.just(_HOST1),
            st.just(
                {
                    "name": "host3",
                    "role": "host",
                    "provider_addresses": [_HOST1["provider_addresses"][0] | {"pa": "198.18.0.3"}],
                }
            ),
            _fields(
                name=st.sampled_from(["host3", "host1"]),
                role=st.sampled_from(["host", "gateway"]),
                provider_addresses=st.lists(
                    _fields(
                        interface=st.just("pa0"), pa=PAS, prefix_length=st.sampled_from([24, 40])
                    ),
                    max_size=2,
                ),
                ports=_maybe(st.lists(st.sampled_from(_PORTS), max_size=2)),
            ),
        ),
    ),
    st.builds(Remove, st.just(k.NODES), st.one_of(st.just({"name": "host3"}), _fields(name=NODES))),
)
# Sequences the draws above seldom make: host1 removed and added again as host3
# with its ports (taken), then a node at host3's PA, host3 removed; a node whose
# ports are a VSID's MAC on another node and on the wrong node (refused).
node_sequences = [
    [
        Remove(k.NODES, {"name": "host1"}),
        Add(k.NODES, _HOST1),
        Add(k.NODES, {**_HOST1, "name": "host4", "ports": []}),
        Remove(k.NODES, {"name": "host3"}),
    ],
    [Add(k.NODES, {**_HOST1, "provider_addresses": [], "ports": _PORTS[:2]})],
]


migrations = st.builds(
    Migration,
    st.sampled_from(["blue1", "red1", "blue2", "red2", "blue3", "vm-a", "vm-b", "gone"]),
    st.sampled_from(["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.10", "203.0.113.9"]),
)
steps = st.one_of(other_edits, node_edits, changes, migrations)


def _refusal(error: Exception) -> Any:
    if isinstance(error, ConfigError):
        return list(error.issues)
    return type(error), str(error)


def _whole_edit(document: dict[str, Any], edit: Any) -> tuple[Any, Any]:
    """The edited document (None: the edit refused) and its policy or refusal."""
    edited = copy.deepcopy(document)
    try:
        edit(edited)
    except (ConfigError, NotFound, Exists) as error:
        return None, _refusal(error)
    edited = to_plain(edited)
    edited["revision"] += 1
    return edited, _whole(edited)


def _top(kind: Any) -> Any:
    return kind if kind.parent is None else _top(kind.parent)


def migrated(document: dict[str, Any], indexed: IndexedPolicy, step: Migration) -> Any:
    """A migration judged both ways: the edited document (None: refused), the whole
    path's policy and report (or refusal), the index's (None: not its to take)."""
    try:
        edit = migrate(step.vm, step.pa, indexed.policy)
    except NotFound as error:  # before either path: from the running policy
        return None, _refusal(error), _refusal(error)
    edited = copy.deepcopy(document)
    try:
        report = edit(edited)
    except NotFound as error:
        edited, whole = None, _refusal(error)
    else:
        edited = to_plain(edited)
        edited["revision"] += 1
        whole = _whole(edited)
        whole = whole if isinstance(whole, list) else (whole, report)
    try:
        records = document["lookup_records"]
        incremental = edit.indexed(indexed, document["revision"] + 1, records.__getitem__)
    except (ConfigError, NotFound) as error:
        incremental = _refusal(error)
    return edited, whole, incremental


def _others(indexed: IndexedPolicy, revision: int, edit: Any) -> Any:
    try:
        return indexed.change_others(revision, edit, _top(edit.kind).section)
    except (ConfigError, NotFound, Exists) as error:
        return _refusal(error)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from([base_document, gateway_document]),
    sequence=st.lists(steps, min_size=1, max_size=8),
)
@example(start=base_document, sequence=node_sequences[0])
@example(start=base_document, sequence=node_sequences[1])
@example(start=gateway_document, sequence=node_sequences[0])
def test_every_kind_s_change_judges_as_whole_policy_validation(start, sequence) -> None:
    document = start()
    indexed = IndexedPolicy(copy.deepcopy(document))
    snapshot = compile_policy(indexed.policy)
    for step in sequence:
        if isinstance(step, Migration):
            edited, whole, incremental = migrated(document, indexed, step)
            if incremental is None:  # a port to the gateway: the whole path's (it refuses)
                assert isinstance(whole, list)
                continue
        elif isinstance(step, Add | Remove):
            edited, whole = _whole_edit(document, step)
            taken = _others(indexed, document["revision"] + 1, step)
            assert taken is not None  # nodes added and removed too
            incremental = taken[0] if isinstance(taken, tuple) and edited else taken
        else:
            judged = record_change(document, indexed, step)
            if judged is None:
                continue
            edited, whole, incremental, _ = judged
        assert incremental == whole
        if edited is not None and not isinstance(whole, list):
            document = edited
            assert indexed.policy == (whole[0] if isinstance(step, Migration) else whole)
            updated = compile_policy(indexed.policy, snapshot)
            if not isinstance(step, Add | Remove):  # records: the delta's, not a build
                assert updated._lpm is snapshot._lpm
            if isinstance(step, Add | Remove):  # every record table kept
                assert updated.record_by_ca is snapshot.record_by_ca
            assert canonical(updated) == canonical(compile_policy(indexed.policy))
            snapshot = updated


def test_a_section_the_policy_has_not_goes_whole() -> None:
    """An edit of a top-level key no kind of the policy sits under (a registry's kind
    the loader does not know) is not taken: the caller's whole path refuses it as the
    loader does ("unknown key"), and the index stays as it was."""
    document = base_document()
    indexed = IndexedPolicy(copy.deepcopy(document))
    before = indexed.policy

    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("widgets", []).append({"name": "w1", "size": 3})

    assert indexed.change_others(document["revision"] + 1, edit, "widgets") is None
    assert indexed.policy is before
    _, whole = _whole_edit(document, edit)
    assert [issue.path for issue in whole] == ["widgets"]
    assert whole[0].message.startswith("unknown key")


def test_a_migrated_port_named_as_one_on_its_new_node_is_refused_alike() -> None:
    """A port moved to a node that has a port of its name already (another VSID's,
    none of the migration's records) is refused as the whole path refuses it, as is
    a migration whose VM names no record; the index stays as it was."""
    document = base_document()
    host2 = document["nodes"]["host2"]["ports"]
    host2[[p["name"] for p in host2].index("red2")]["name"] = "blue1"
    indexed = IndexedPolicy(copy.deepcopy(document))
    before = indexed.policy
    refusals = []
    for step in (Migration("blue1", "198.18.0.2"), Migration("nobody", "198.18.0.2")):
        _, whole, incremental = migrated(document, indexed, step)
        assert incremental == whole
        assert indexed.policy is before
        refusals.append(whole)
    (issue,) = refusals[0]
    assert issue.path == "nodes.host2.ports[3].name"
    assert issue.message == "duplicate port name in node host2: nodes.host2.ports[1] has it"
    vms = "blue1, blue2, blue3, red1, red2"
    assert refusals[1] == (NotFound, f"no lookup record names VM 'nobody' (VMs: {vms})")


def test_a_migration_judges_a_second_nic_s_port_at_its_new_place() -> None:
    """A VM with a NIC in another VSID (5012) whose port stays behind, after the
    moved one on the old node: its record now names the new node's PA, so that port
    is on the wrong node, at the place the move left it (ports[1], not ports[2]), as
    the whole path says."""
    document = base_document()
    document["lookup_records"].append(
        {"vsid": 5012, "ca": "10.10.20.31", "mac": "00-00-00-00-00-31",
         "pa": "198.18.0.1", "rule": "encap", "vm": "blue1"}
    )  # fmt: skip
    document["nodes"]["host1"]["ports"].append(
        {"name": "blue1-nic2", "vsid": 5012, "mac": "00-00-00-00-00-31"}
    )
    indexed = IndexedPolicy(copy.deepcopy(document))
    _, whole, incremental = migrated(document, indexed, Migration("blue1", "198.18.0.2"))
    assert incremental == whole
    (issue,) = whole
    assert issue.path == "nodes.host1.ports[1].name"
    assert "the port is on the wrong node" in issue.message
