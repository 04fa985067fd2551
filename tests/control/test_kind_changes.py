"""Changes of every other kind on a database store take the incremental path too
(``control/incremental.py``: the skeleton's sections, the records and ports they
reach, the rows of the edited kind) and end exactly where the whole path ends:
random sequences mixing adds and removals of every kind of the registry with
changes of records, valid and invalid, applied to two stores seeded alike, one with
the incremental path turned off, give the same answers and the same rows, revision
and seal in the store. On SQLite and etcd (``each_store``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control.edits import Exists, NotFound, add, remove
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.errors import ConfigError

from ..policy.test_incremental_kinds import other_edits
from ._stores import contents
from .test_record_changes import edits as record_edits
from .test_record_changes import opened

pytestmark = pytest.mark.usefixtures("each_store")


def _outcome(backend: Any, step: Any) -> Any:
    if isinstance(step, tuple):
        verb, argument = step
        step = add(LOOKUP_RECORDS, argument) if verb == "add" else remove(LOOKUP_RECORDS, argument)
    try:
        loaded = backend.change(step, None)
    except ConfigError as error:
        return ("refused", list(error.issues))
    except (NotFound, Exists) as error:
        return ("refused", str(error))
    return (loaded.policy, loaded.result)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(st.one_of(other_edits, record_edits), min_size=1, max_size=8))
def test_every_kind_s_changes_on_a_database_end_as_whole_policy_changes_do(
    tmp_path_factory: Any, steps: list[Any]
) -> None:
    directory = tmp_path_factory.mktemp("stores")
    fast, whole = opened(directory / "fast.yaml"), opened(directory / "whole.yaml")
    whole._records.change = lambda *args: None
    taken = []
    change = fast._records.change

    def spied(*args: Any) -> Any:
        taken.append(True)  # a refusal raises: taken too
        found = change(*args)
        taken[-1] = found is not None
        return found

    fast._records.change = spied
    try:
        for step in steps:
            assert _outcome(fast, step) == _outcome(whole, step)
        assert all(taken) and len(taken) == len(steps)
        assert contents(directory / "fast.yaml") == contents(directory / "whole.yaml")
        assert fast.read().policy == whole.read().policy
    finally:
        fast.close()
        whole.close()
