"""Changes of every other kind on a database store take the incremental path too
(``control/incremental.py``: the skeleton's sections, the records and ports they
reach, the rows of the edited kind) and end exactly where the whole path ends:
random sequences mixing adds and removals of every kind of the registry (nodes
with what sits in them too) with
changes of records, valid and invalid, applied to two stores seeded alike, one with
the incremental path turned off, give the same answers and the same rows, revision
and seal in the store. On SQLite and etcd (``each_store``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ..policy.test_incremental_kinds import node_edits, node_sequences, other_edits
from .test_record_changes import edits as record_edits
from .test_record_changes import end_alike

pytestmark = pytest.mark.usefixtures("each_store")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(st.one_of(other_edits, node_edits, record_edits), min_size=1, max_size=8))
@example(steps=node_sequences[0])
@example(steps=node_sequences[1])
def test_every_kind_s_changes_on_a_database_end_as_whole_policy_changes_do(
    tmp_path_factory: Any, steps: list[Any]
) -> None:
    end_alike(tmp_path_factory.mktemp("stores"), steps)
