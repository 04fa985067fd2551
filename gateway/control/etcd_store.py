"""The cluster store (``etcd://HOST:PORT/PREFIX``): the policy in etcd (3.4 or later,
through its JSON gateway), shared by every daemon of a deployment that names the
same prefix, on any machine that reaches it.

Keys (``PREFIX`` is the URL's path, ``/nvgw`` in ``etcd://198.18.0.250:2379/nvgw``):

- ``PREFIX/meta``: ``{"schema": 1, "revision": N, "seal": S}``, the policy's
  revision and the seal of the rows this nvgw validated (``store.seal``, moved by
  each change's delta and written in its transaction: a start whose rows give it
  back skips the cross-entity checks; keys put by hand, or a meta written by an nvgw
  that keeps no seal, are validated whole, then sealed). A key of
  its own rather than etcd's own revision, because etcd counts every write to every
  key of the cluster while the policy's revision counts its changes, from the
  revision its seed had, as on every other store (``nvgw policy export`` and If-Match
  carry it from one to the other). Its mod revision is what a change compares.
- ``PREFIX/entries/KIND/KEY``: one per entry, as ``policy_rows`` makes rows (KIND
  ``lookup-records``, KEY ``5010/10.10.10.12``), the value ``PLACE JSON``: the row's
  place in document order (etcd returns keys sorted by name), a space, its JSON.

Anything else under the prefix is not ours: reading it is a ConfigError naming the
key (give nvgw a prefix of its own).

A change is validated and prepared first, as on SQLite (shared code): an add or a
removal of entries against the policy's indexes (``incremental.RecordChanges``), a
migration or a replacement whole (``store.edited``); then sent as ONE transaction:
compare the meta key's mod revision with the one read, then put and delete only the
rows that differ and the new meta. A writer that lost the race (another committed in
between) reads again and retries, or is a RevisionMismatch when it named a revision:
never a half-applied change. etcd limits a transaction's operations
(``--max-txn-ops``, 128 by default) and size (``--max-request-bytes``, 1.5 MiB): a
change or seed beyond them is NotSaved naming the flag to raise (a seed of 10^5
records with a port each is 210,901 operations and 31 MB of JSON: the README's etcd
paragraph gives the flags for N records); so is a change an etcd out of space refuses
(its NOSPACE alarm, past ``--quota-backend-bytes``), as a full disk (507) with what
to do.

Time-outs: a request is given ``TIMEOUT_S`` plus ``PER_ROW_S`` for each operation
of its transaction or key of its read (a read of the whole prefix counts its keys
first: a ``count_only`` range, 50 ms for 210,901 keys here). A small request, as
every change and every poll is, so still fails within seconds when etcd is
stopped or cut off, while one transaction that must stay atomic (a seed, ``nvgw
apply``, a batch) gets the time etcd needs for it: that seed took 22 s to commit at
load 1 on this 2-core VM and 45 s at load 6-7 (0.1-0.2 ms per operation), and a read
of it back 4.2 s (0.02 ms per key), each beyond a fixed 5 s; ``PER_ROW_S`` of 1 ms is
five times the slower figure (216 s for that seed before nvgw gives up).

Following: a watch on the prefix (a streaming POST to ``/v3/watch``, in a thread of
its own) keeps the committed revision, so ``revision()`` is a memory read, asked when
the watch signals a follower's feed (``change_feed``: an eventfd it writes when the
revision it saw moves, or it goes down or up); and it queues the events, which
``read`` applies to the rows it last held and to its index (``store.followed``: the
policy and snapshot by their delta, O(change) per write, not O(policy); what the
index cannot take, a read of the rows brought forward, validated whole). A watch
whose start revision etcd has compacted away is cancelled by etcd: the next read is
a full resync (the whole prefix at one revision) and the watch starts again after
it. A read that does not find the watch caught up within ``etcd_watch.CATCH_UP_S``
resyncs too.

etcd down: every call is a StoreUnavailable naming the URL (503 through the API;
the daemon keeps forwarding on its last policy and says so once), the watch retries
every ``etcd_watch.RETRY_S``, resuming where it stopped, and a follower catches up
when etcd returns (by the events it missed, or a full read if they were compacted).

The client: httpx (already the project's) against etcd's JSON gateway, synchronous,
so it runs in the store's worker thread on asyncio and trio alike. Measured on this
machine against etcd 3.4 on loopback (median of 200): a change's transaction 1.9 ms
with httpx, 2.0 ms with etcd3gw; a watch event 2.4 ms after the put with httpx, 3.0
ms with etcd3gw. etcd3gw's watch drops etcd's compaction notice (it yields events
only), which a resync needs; aetcd is asyncio-only (gRPC), and would need a loop of
its own in a thread under trio.
"""

from __future__ import annotations

import contextlib
import errno
import json
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

import httpx

from gateway.errors import ConfigError
from gateway.policy import Policy

from .edits import Edit
from .etcd_watch import Feed, Signals, Watch, b64, plain_client, range_end, text
from .incremental import RecordChanges
from .kinds import KINDS
from .policy_rows import Placed, Row, digest, placed
from .store import (
    Loaded,
    NotSaved,
    RevisionMismatch,
    StoreBusy,
    StoreUnavailable,
    empty,
    followed,
    seal,
    sealed_after,
    seeding,
    unreadable,
    written,
)

Prepared = TypeVar("Prepared")
SCHEMA_VERSION: Final = 1
TIMEOUT_S: Final = 5.0  # a small request: StoreUnavailable after
PER_ROW_S: Final = 0.001  # more for each operation or key of a request (see above)
RACES: Final = 20  # changes lost to other writers in a row before StoreBusy
_KINDS: Final = frozenset(kind.name for kind in KINDS)
_AUTH: Final = ("user name", "permission denied", "token", "authenticat")


def parse_etcd(url: str) -> tuple[str, str]:
    """``etcd://HOST:PORT/PREFIX`` as (the endpoint's base URL, the prefix without its
    trailing slash); ValueError says what is missing."""
    parts = urlsplit(url)
    prefix = parts.path.rstrip("/")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "etcd" or not parts.hostname or port is None or not prefix:
        raise ValueError(
            f"{url!r} is not an etcd store: etcd://HOST:PORT/PREFIX "
            "(etcd://198.18.0.250:2379/nvgw: the policy's keys start with /nvgw/)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}:{port}", prefix


class EtcdBackend(Generic[Prepared]):
    """One key prefix of one etcd holding the policy."""

    follows = True
    writable = True
    path = None  # no file: the daemon has nothing to check its user may write

    def __init__(self, url: str, prepare: Callable[[Policy], Prepared]) -> None:
        self.endpoint, self.prefix = parse_etcd(url)
        self.url = url
        self._prepare = prepare
        self._meta = f"{self.prefix}/meta"
        self._entries = f"{self.prefix}/entries/"
        self._http = plain_client(self.endpoint, TIMEOUT_S)
        self._lock = threading.Lock()  # one request thread at a time
        self._state: Placed | None = None  # the rows as last read or written
        self._mod = 0  # the meta key's mod revision in _state
        self._at = 0  # the etcd revision _state was read or written at
        self._seal: str | None = None  # the meta's seal in _state
        self._sealed: str | None = None  # the seal of _state's rows (None: unknown)
        self.trusted = False  # whether the last read found its rows under our seal
        self._watch: Watch | None = None
        self._signals = Signals()  # the followers' feeds, which the watch signals
        self._records = RecordChanges()  # its index, for adds and removals of entries

    # ---------------------------------------------------------------- the interface

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        with self._lock:
            if seed is not None:
                self._seed(*seed)
            policy = None if seed is not None else self._followed()
            if policy is None:
                state = self._current()
                if state is None:
                    raise empty(self.url)
                found = seal(SCHEMA_VERSION, digest(state.entries))
                self.trusted = self._seal == found
                policy = self._records.policy(state, self.url, judged=not self.trusted)
                if not self.trusted:
                    self._reseal(state.revision, found)
                self._sealed = found
        return Loaded(policy, self._prepare(policy))

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        with self._lock:
            for _ in range(RACES):
                state = self._current()
                if state is None:
                    raise empty(self.url)
                if if_revision is not None and if_revision != state.revision:
                    raise RevisionMismatch(if_revision, state.revision)
                try:
                    committed = self._try(state, edit)
                except BaseException:  # the index may have moved past the rows
                    self._records.forget()
                    raise
                if committed is not None:
                    return committed
                self._records.forget()  # another writer's revision won: read it
        raise StoreBusy(f"{RACES} other writers' changes to {self.url} won the race; try again")

    def _try(self, state: Placed, edit: Edit) -> Loaded[Prepared] | None:
        """``edit`` validated (records: by the index, ``incremental``; anything
        else: whole) and sent as one transaction on ``state``'s revision; None when
        another writer committed first."""
        change = written(self._records, state, edit, self._prepare)
        sealed = sealed_after(self._seal, SCHEMA_VERSION, state.entries, change.delta)
        put, seqs = change.delta.put, change.seqs
        ops = [_put(self._key(row), f"{seqs[row]} {value}") for row, value in put.items()]
        ops += [{"request_delete_range": {"key": b64(self._key(row))}} for row in change.delta.gone]
        if not self._commit(self._same_meta(), ops, change.policy.revision, sealed):
            return None
        self._state, self._sealed = change.rows(state), sealed
        return Loaded(change.policy, change.prepared, change.result)

    def revision(self) -> int | None:
        """The watch's revision, or this backend's own newer one (its write's event
        not back yet); etcd's answer when the watch is down."""
        watch, state = self._watch, self._state
        followed = watch.followed() if watch is not None else None
        if followed is not None:
            return followed if state is None else max(followed, state.revision)
        with self._lock:
            meta, _ = self._read_meta()
        return None if meta is None else meta[0]

    def change_feed(self) -> Feed:
        """Signalled by the watch when what ``revision()`` reads from it may have
        moved (``etcd_watch.Signals``); before the first read starts the watch,
        nothing signals it and the follower's backstop asks."""
        return self._signals.feed()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self._http.close()

    # ---------------------------------------------------------------- seeding

    def _seed(self, policy: Policy, source: str) -> None:
        """Commit ``policy`` into an empty prefix, in one transaction that only
        succeeds if the meta key is still absent (another seeding daemon won: what it
        wrote is checked as any store's is)."""
        seeded = seeding(self._current(), policy, source, self.url)
        if seeded is None:
            return
        places = enumerate(seeded.items())
        ops = [_put(self._key(row), f"{seq} {value}") for seq, (row, value) in places]
        absent = {"key": b64(self._meta), "target": "CREATE", "create_revision": "0"}
        sealed = seal(SCHEMA_VERSION, digest(seeded))
        if not self._commit(absent, ops, policy.revision, sealed):  # another daemon seeded first:
            seeding(self._current(), policy, source, self.url)  # the same policy, or refused
        self._state = None  # read back as written, at the next read

    def _reseal(self, revision: int, sealed: str) -> None:
        """Seal rows just validated whole, in a transaction on the meta read with
        them, so that the next start trusts them. Lost to another writer, or etcd
        gone: the next start validates whole again, which is all it costs."""
        with contextlib.suppress(StoreBusy, NotSaved):
            self._commit(self._same_meta(), [], revision, sealed)

    # ---------------------------------------------------------------- reading

    def _current(self) -> Placed | None:
        """The rows at the revision committed now: those held, brought forward by the
        watch's events, or the whole prefix read again."""
        meta, _ = self._read_meta()
        if meta is None:
            return None
        if self._state is not None and self._mod == meta[1]:
            if self._watch is not None:
                self._watch.until(self._mod, self._at, wait=False)  # our own writes' events
            return self._state
        if self._state is not None and self._watch is not None:
            events = self._watch.until(meta[1], self._at)
            if events is not None:
                self._state = self._applied(self._state, events)
                return self._state
        return self._resync()

    def _resync(self) -> Placed:
        """The whole prefix at one revision; the watch (re)started after it."""
        start, end = f"{self.prefix}/", range_end(f"{self.prefix}/")
        kvs, at = self._range(start, end, rows=self._count(start, end))
        found: list[tuple[str, str, int, str]] = []
        revision = None
        for kv in kvs:
            key, value = text(kv["key"]), text(kv.get("value", ""))
            if key == self._meta:
                revision, self._mod = self._meta_of(value), int(kv["mod_revision"])
                self._seal = _seal_in(value)
            else:
                found.append(self._row(key, value))
        if revision is None:  # deleted between the two reads: nothing we can run
            raise unreadable(self.url, "the store", f"{self._meta} is gone while read")
        self._state, self._at, self._sealed = placed(revision, found), at, None
        if self._watch is None:
            self._watch = Watch(
                self.endpoint,
                self.prefix,
                self._meta,
                self._revision_or_none,
                at,
                revision,
                self._signals,
            )
        else:
            self._watch.restart(at, revision)
        return self._state

    def _followed(self) -> Policy | None:
        """Another writer's changes since the rows held (``_state``), as the watch
        brought them, applied to them and to the index (``store.followed``), in
        O(change); None for the whole read (no rows held, nothing moved, a watch
        compacted past them: resynced here, a change the index cannot take, a seal
        that does not follow: the rows brought forward, as ``_current`` does)."""
        state, before, watch = self._state, self._sealed, self._watch
        if state is None or before is None or watch is None:
            return None
        mod = watch.meta_written()  # no request to etcd: the watch saw the write
        if mod is None:  # not watching yet (it just started, or reconnects): ask etcd,
            meta, _ = self._read_meta()  # then wait for the events as ``_current`` does
            if meta is None:
                return None
            mod = meta[1]
        if mod <= self._mod:
            return None
        events = watch.until(mod, self._at)
        if events is None:
            self._resync()
            return None
        now, revision = self._touched(events, state.revision)
        seals = (before, self._seal)
        taken = followed(self._records, state, now, revision, seals, SCHEMA_VERSION)
        if taken is None:
            self._state = self._moved(state, now, revision)
            return None
        policy, self._state = taken
        self._sealed = self._seal
        return policy

    def _applied(self, state: Placed, events: list[dict[str, Any]]) -> Placed:
        """``state`` with the watch's events (all newer than it) applied."""
        return self._moved(state, *self._touched(events, state.revision))

    def _touched(
        self, events: list[dict[str, Any]], revision: int
    ) -> tuple[dict[Row, tuple[int, str] | None], int]:
        """The rows the watch's events touch, each as they leave it (its place and
        value, or None: deleted), and the policy's revision they bring (``revision``:
        none)."""
        now: dict[Row, tuple[int, str] | None] = {}
        for event in events:
            kv = event["kv"]
            key, value = text(kv["key"]), text(kv.get("value", ""))
            self._at = int(kv["mod_revision"])
            if key == self._meta:
                revision, self._mod = self._meta_of(value), self._at
                self._seal = _seal_in(value)
            elif event.get("type") == "DELETE":
                now[self._identity(key)] = None
            else:
                kind, name, seq, row = self._row(key, value)
                now[(kind, name)] = (seq, row)
        return now, revision

    def _moved(
        self, state: Placed, now: dict[Row, tuple[int, str] | None], revision: int
    ) -> Placed:
        """``state``'s rows with those ``now`` gives, read back in order (O(rows))."""
        found = {row: (state.seqs[row], value) for row, value in state.entries.items()}
        for row, seen in now.items():
            if seen is None:
                found.pop(row, None)
            else:
                found[row] = seen
        self._sealed = None  # not checked: the next read is whole
        return placed(revision, ((k, n, s, t) for (k, n), (s, t) in found.items()))

    def _read_meta(self) -> tuple[tuple[int, int] | None, int]:
        """(the policy's revision, the meta key's mod revision), or None, and the
        etcd revision it was read at."""
        kvs, at = self._range(self._meta)
        if not kvs:
            return None, at
        return (self._meta_of(text(kvs[0]["value"])), int(kvs[0]["mod_revision"])), at

    def _revision_or_none(self, value: str) -> int | None:
        """The watch's reading of the meta key: None for one ``_meta_of`` refuses."""
        try:
            return self._meta_of(value)
        except ConfigError:
            return None

    def _meta_of(self, value: str) -> int:
        try:
            meta = json.loads(value)
            schema, revision = meta["schema"], meta["revision"]
        except (ValueError, KeyError, TypeError):
            reason = f"{self._meta} is not nvgw's: {value!r}"
            raise unreadable(self.url, "the store", reason) from None
        if schema != SCHEMA_VERSION:
            reason = f"its schema is version {schema}; this nvgw reads {SCHEMA_VERSION}"
            raise unreadable(self.url, "the store", reason)
        return int(revision)

    def _row(self, key: str, value: str) -> tuple[str, str, int, str]:
        """An entry's key and value as (kind, key, place, JSON)."""
        kind, name = self._identity(key)
        seq, space, text = value.partition(" ")
        if not space or not seq.isdigit():
            raise self._foreign(key)
        return kind, name, int(seq), text

    def _identity(self, key: str) -> Row:
        kind, slash, name = key.removeprefix(self._entries).partition("/")
        if not key.startswith(self._entries) or kind not in _KINDS or not slash:
            raise self._foreign(key)
        return kind, name

    def _foreign(self, key: str) -> Exception:
        reason = (
            f"{key} is under {self.prefix}/ but is not nvgw's: give nvgw a prefix of its "
            "own (etcd://HOST:PORT/OTHER), or remove the key"
        )
        return unreadable(self.url, "the store", reason)

    def _key(self, row: Row) -> str:
        return f"{self._entries}{row[0]}/{row[1]}"

    # ---------------------------------------------------------------- writing

    def _same_meta(self) -> dict[str, Any]:
        return {"key": b64(self._meta), "target": "MOD", "mod_revision": str(self._mod)}

    def _commit(
        self, compare: dict[str, Any], ops: list[dict[str, Any]], revision: int, sealed: str | None
    ) -> bool:
        """One transaction: ``ops`` and the new meta (with ``sealed``, the seal of the
        rows it makes; None: none) if ``compare`` holds. True when committed (the
        meta's mod revision is then the transaction's)."""
        fields = {"schema": SCHEMA_VERSION, "revision": revision}
        meta = json.dumps(fields if sealed is None else {**fields, "seal": sealed})
        body = {"compare": [compare], "success": [*ops, _put(self._meta, meta)]}
        answer = self._call("/v3/kv/txn", body, rows=len(ops) + 1, writing=True)
        if not answer.get("succeeded"):
            return False
        self._mod = self._at = int(answer["header"]["revision"])
        self._seal = sealed
        return True

    # ---------------------------------------------------------------- the wire

    def _range(
        self, key: str, end: str | None = None, rows: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """The keys from ``key`` (to ``end``), expected to be about ``rows``, and the
        etcd revision they were read at."""
        body = {"key": b64(key)} | ({"range_end": b64(end)} if end else {})
        answer = self._call("/v3/kv/range", body, rows=rows)
        return answer.get("kvs", []), int(answer["header"]["revision"])

    def _count(self, key: str, end: str) -> int:
        """How many keys there are from ``key`` to ``end`` (none of them sent)."""
        answer = self._call(
            "/v3/kv/range", {"key": b64(key), "range_end": b64(end), "count_only": True}
        )
        return int(answer.get("count", 0))

    def _call(
        self, path: str, body: dict[str, Any], rows: int = 0, writing: bool = False
    ) -> dict[str, Any]:
        """One request of ``rows`` operations or keys (its time-out grows with them);
        what goes wrong is the store's error, naming the URL and what to do."""
        content = json.dumps(body).encode()
        timeout = TIMEOUT_S + rows * PER_ROW_S
        headers = {"content-type": "application/json"}
        try:
            response = self._http.post(path, content=content, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            maybe = (
                " It may still commit that transaction: read the store's revision (nvgw "
                "policy export) before sending it again."
            )
            raise StoreUnavailable(
                f"etcd at {self.url} did not answer within {timeout:.3g} s: is it "
                f"overloaded, or has it lost its quorum?{maybe if writing else ''}"
            ) from None
        except httpx.TransportError as error:
            raise StoreUnavailable(
                f"cannot reach etcd at {self.url} ({error or type(error).__name__}): "
                "is it running, and does --store name its client address?"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.is_success:
            return answer
        reason = answer.get("message") or answer.get("error") or response.reason_phrase
        if any(word in reason for word in _AUTH):
            raise StoreUnavailable(
                f"etcd at {self.url} refused nvgw ({reason}): nvgw does not log in to "
                "etcd; give it an etcd (or a proxy) that lets it read and write the prefix "
                "without authentication"
            )
        if writing and "too many operations" in reason:
            raise NotSaved(
                self.url,
                f"etcd refused a transaction of {rows} operations ({reason}): start "
                "etcd with a larger --max-txn-ops (one per entry written, and one)",
                None,
            )
        if writing and ("too large" in reason or "larger than max" in reason):
            raise NotSaved(
                self.url,
                f"etcd refused a transaction of {len(content)} bytes of JSON ({reason}): "
                "start etcd with a larger --max-request-bytes",
                None,
            )
        if writing and "database space exceeded" in reason:  # its NOSPACE alarm: a full disk
            raise NotSaved(
                self.url,
                f"etcd is out of space ({reason}): compact and defragment it and disarm its "
                "NOSPACE alarm (etcdctl alarm disarm), or raise its --quota-backend-bytes",
                errno.ENOSPC,
            )
        raise StoreUnavailable(f"etcd at {self.url} answered {response.status_code}: {reason}")


def _put(key: str, value: str) -> dict[str, Any]:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def _seal_in(meta: str) -> str | None:
    """The seal a meta key's value (``_meta_of`` read it already) carries, if any."""
    found = json.loads(meta).get("seal")
    return found if isinstance(found, str) else None
