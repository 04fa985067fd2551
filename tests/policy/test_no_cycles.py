"""What a whole load builds holds no reference cycles: the policy, its index, its
snapshot and a gateway's route table. ``PolicyStore.load`` freezes what a whole
load built (``gateway/policy/_gc.py``, ``kept_build``), and frozen objects in a
cycle are never collected: without cycles, reference counts free the old policy at
the next swap. Checked with the collector off: what it then finds is what counts
could not free."""

from __future__ import annotations

import gc

from gateway.policy import IndexedPolicy, compile_gateway, compile_policy, load_policy

from ._gateway_document import gateway_document


def test_a_policy_its_index_snapshot_and_gateway_table_hold_no_cycles() -> None:
    document = gateway_document()
    gc.collect()
    gc.disable()
    try:
        snapshot = compile_policy(load_policy(document))
        built = [IndexedPolicy(document), snapshot, compile_gateway(snapshot, "gw")]
        del snapshot, built
        assert gc.collect() == 0
    finally:
        gc.enable()
