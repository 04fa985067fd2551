"""The stores ``bench/api_change.py`` measures, each under a name of the run's own.

``stores(kinds)`` makes a temporary directory and, when etcd is among ``kinds``, a
real etcd on loopback in it (``tests/control/_etcd.py``'s: two free ports, never
2379/2380, killed by its PID and its data removed at the end, however the run
ends); it yields ``url(kind, name)``: ``sqlite:DIR/NAME.db``, or an etcd prefix
``/NAME`` (the etcd is the run's own, so nothing else is in it). The prefix is
kept short: etcd takes a request of at most ``--max-request-bytes`` (the test
etcd's: 32 MiB), and a seed of 10^5 records is 31 MB of JSON with ``/n100000``,
37 MB with a prefix 20 characters longer (each of its 210,901 keys carries it, in
base64).

etcd is started for 10^5 records: a seed is one transaction of one operation per
row (210,901 for ``generate(100_000)``, whose nodes have a port per VM), beyond the
test etcd's ``--max-txn-ops``. And the store gives each request to etcd
``etcd_store.TIMEOUT_S`` (5 s), while etcd took 45 s to commit that seed here (a
read of the prefix back takes seconds too): ``patient_etcd`` raises it in this
process, before any store opens (the store's client reads it when it is made). It
changes no measured figure (a time-out only ends a request that has not answered),
only lets the seed and a follower's first read finish.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.control import etcd_store  # noqa: E402

KINDS = ("sqlite", "etcd")
MAX_TXN_OPS = 1_000_000  # a seed of 10^5 records with their ports: 210,901 operations
SEED_TIMEOUT_S = 600.0


def patient_etcd() -> None:
    """Give each etcd request of this process's stores SEED_TIMEOUT_S (see above)."""
    etcd_store.TIMEOUT_S = SEED_TIMEOUT_S  # type: ignore[misc]


@contextmanager
def stores(kinds: Sequence[str]) -> Iterator[Callable[[str, str], str]]:
    """``url(kind, name)`` for each of ``kinds``, in a directory (and an etcd) of the
    run's own, removed (and killed) at the end."""
    from tests.control._etcd import running_etcd  # the tests' etcd: pytest is a dev need

    with tempfile.TemporaryDirectory(prefix="nvgw-bench-api-") as name, ExitStack() as stack:
        directory = Path(name)
        etcd = None
        if "etcd" in kinds:
            etcd = stack.enter_context(running_etcd(directory, MAX_TXN_OPS))
        patient_etcd()

        def url(kind: str, store: str) -> str:
            if kind == "sqlite":
                return f"sqlite:{directory / store}.db"
            assert etcd is not None, "etcd was not among the kinds"
            return etcd.url(store)

        yield url
