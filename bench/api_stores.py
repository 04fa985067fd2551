"""The stores ``bench/api_change.py`` measures, each under a name of the run's own.

``stores(kinds)`` makes a temporary directory and, when etcd is among ``kinds``, a
real etcd on loopback in it (``tests/control/_etcd.py``'s: two free ports, never
2379/2380, killed by its PID and its data removed at the end, however the run
ends); it yields ``url(kind, name)``: ``sqlite:DIR/NAME.db``, or an etcd prefix
``/NAME`` (the etcd is the run's own, so nothing else is in it). The prefix is
kept short: a seed of 10^5 records is 31 MB of JSON with ``/n100000``, 37 MB with
a prefix 20 characters longer (each of its 210,901 keys carries it, in base64).
The tests' etcd is started with limits that fit 10^5 records (its
``--max-txn-ops`` and ``--max-request-bytes``), and the store gives a seed and a
read of the whole prefix the time their size needs (``etcd_store.PER_ROW_S``).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("sqlite", "etcd")


@contextmanager
def stores(kinds: Sequence[str]) -> Iterator[Callable[[str, str], str]]:
    """``url(kind, name)`` for each of ``kinds``, in a directory (and an etcd) of the
    run's own, removed (and killed) at the end."""
    from tests.control._etcd import running_etcd  # the tests' etcd: pytest is a dev need

    with tempfile.TemporaryDirectory(prefix="nvgw-bench-api-") as name, ExitStack() as stack:
        directory = Path(name)
        etcd = None
        if "etcd" in kinds:
            etcd = stack.enter_context(running_etcd(directory))

        def url(kind: str, store: str) -> str:
            if kind == "sqlite":
                return f"sqlite:{directory / store}.db"
            assert etcd is not None, "etcd was not among the kinds"
            return etcd.url(store)

        yield url
