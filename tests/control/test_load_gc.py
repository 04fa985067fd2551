"""What a whole load, or a large change, builds is kept from the cyclic collector's
passes afterwards (issue 14, slice V8): at 10^5 records those passes walked
everything the load built, once per generation (1.7 and 2.3 s here), holding the GIL
while the event loop and the data plane waited; a batch of 10^5 records taken as one
change builds as much. ``PolicyStore.load`` and ``PolicyStore.change`` build under
``kept_build``, which freezes a large build (``gc.freeze``) after collecting the
garbage of before. Checked by where the objects are (in no generation the collector
walks), not by a duration. On SQLite and etcd (``each_store``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.control.batches import AddAll
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.policy import Policy, _gc

from . import _stores

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("each_store")]


@pytest.fixture(autouse=True)
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two-hosts policy as if it were large (its load leaves some hundreds of
    objects), and the process's collector as it was, afterwards."""
    monkeypatch.setattr(_gc, "FREEZE_OVER", 100)
    gc.unfreeze()
    yield
    gc.unfreeze()


def walked(thing: object) -> bool:
    """Whether the collector's passes go through ``thing`` (it is in a generation)."""
    return any(found is thing for generation in range(3) for found in gc.get_objects(generation))


def keep(policy: Policy) -> Policy:
    return policy


async def commit(policy: Policy) -> None:
    pass


class Cycle:
    """An object in a reference cycle, which only the collector frees."""

    def __init__(self) -> None:
        self.me = self


async def test_a_load_leaves_its_policy_to_no_collector_pass(config: Path) -> None:
    store = await _stores.seeded(config, keep, commit)
    record = store.policy.lookup_records[0]
    assert gc.is_tracked(record) and not walked(record)  # failed: in a generation
    assert gc.get_freeze_count() > 100


async def test_a_load_first_collects_the_garbage_a_freeze_would_keep(config: Path) -> None:
    await _stores.seeded(config, keep, commit)
    gc.disable()  # no pass of the collector's own between the cycle and the load
    try:
        cycle = Cycle()
        gone = weakref.ref(cycle)
        del cycle
        await _stores.loaded(config, keep, commit)
    finally:
        gc.enable()
    assert gone() is None  # collected before the freeze (a young one), not kept for ever


async def test_a_small_build_is_left_to_the_collector(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gc, "FREEZE_OVER", 10**9)
    store = await _stores.seeded(config, keep, commit)
    assert walked(store.policy.lookup_records[0]) and gc.get_freeze_count() == 0


def batch(count: int) -> AddAll:
    """``count`` VMs of Blue on host2, added as one change."""
    return AddAll(
        LOOKUP_RECORDS,
        [
            {"vsid": 5010, "ca": f"10.10.10.{100 + n}", "mac": f"02-00-00-00-01-{n:02x}",
             "pa": "198.18.0.2", "rule": "encap"}
            for n in range(count)
        ],
    )  # fmt: skip


async def test_a_large_change_leaves_what_it_built_to_no_collector_pass(config: Path) -> None:
    store = await _stores.seeded(config, keep, commit)
    gc.unfreeze()  # what the load froze: the change's freeze is the one looked for
    await store.change(batch(20))
    added = store.policy.lookup_records[-1]
    assert added.ca.exploded == "10.10.10.119"
    assert gc.is_tracked(added) and not walked(added)  # failed: in a generation
    assert gc.get_freeze_count() > 100


async def test_a_change_first_collects_the_garbage_a_freeze_would_keep(config: Path) -> None:
    store = await _stores.seeded(config, keep, commit)
    gc.disable()  # no pass of the collector's own between the cycle and the change
    try:
        cycle = Cycle()
        gone = weakref.ref(cycle)
        del cycle
        await store.change(batch(20))
    finally:
        gc.enable()
    assert gone() is None  # collected before the freeze, not kept for ever


async def test_a_small_change_is_left_to_the_collector(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _stores.seeded(config, keep, commit)
    gc.unfreeze()
    monkeypatch.setattr(_gc, "FREEZE_OVER", 10**9)
    await store.change(batch(1))
    assert walked(store.policy.lookup_records[-1]) and gc.get_freeze_count() == 0
