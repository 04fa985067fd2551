"""The cluster store (``etcd://HOST:PORT/PREFIX``): the policy in etcd (3.4 or later,
through its JSON gateway), shared by every daemon of a deployment that names the
same prefix, on any machine that reaches it.

Keys (``PREFIX`` is the URL's path, ``/nvgw`` in ``etcd://198.18.0.250:2379/nvgw``):

- ``PREFIX/meta``: ``{"schema": 1, "revision": N}``, the policy's revision. A key of
  its own rather than etcd's own revision, because etcd counts every write to every
  key of the cluster while the policy's revision counts its changes, from the
  revision its seed had, as on every other store (``nvgw policy export`` and If-Match
  carry it from one to the other). Its mod revision is what a change compares.
- ``PREFIX/entries/KIND/KEY``: one per entry, as ``policy_rows`` makes rows (KIND
  ``lookup-records``, KEY ``5010/10.10.10.12``), the value ``PLACE JSON``: the row's
  place in document order (etcd returns keys sorted by name), a space, its JSON.

Anything else under the prefix is not ours: reading it is a ConfigError naming the
key (give nvgw a prefix of its own).

A change is validated whole and prepared first (``store.edited``, shared by every
backend), then sent as ONE transaction: compare the meta key's mod revision with the
one read, then put and delete only the rows that differ and the new meta. A writer
that lost the race (another committed in between) reads again and retries, or is
a RevisionMismatch when it named a revision: never a half-applied change. etcd
limits a transaction's operations (``--max-txn-ops``, 128 by default) and size
(``--max-request-bytes``, 1.5 MiB): a change or seed beyond them is NotSaved naming
the flag to raise.

Following: a watch on the prefix (a streaming POST to ``/v3/watch``, in a thread of
its own) keeps the committed revision, so ``revision()``, which the daemon polls, is
a memory read; and it queues the events, which ``read`` applies to the rows it last
held (O(change) per write, not O(policy)). A watch whose start revision etcd has
compacted away is cancelled by etcd: the next read is a full resync (the whole
prefix at one revision) and the watch starts again after it. A read that does not
find the watch caught up within ``CATCH_UP_S`` resyncs too.

etcd down: every call is a StoreUnavailable naming the URL (503 through the API;
the daemon keeps forwarding on its last policy and says so once), the watch retries
every ``RETRY_S``, resuming where it stopped, and a follower resyncs when it returns.

The client: httpx (already the project's) against etcd's JSON gateway, synchronous,
so it runs in the store's worker thread on asyncio and trio alike. Measured on this
machine against etcd 3.4 on loopback (median of 200): a change's transaction 1.9 ms
with httpx, 2.0 ms with etcd3gw; a watch event 2.4 ms after the put with httpx, 3.0
ms with etcd3gw. etcd3gw's watch drops etcd's compaction notice (it yields events
only), which a resync needs; aetcd is asyncio-only (gRPC), and would need a loop of
its own in a thread under trio.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

import httpx

from gateway.policy import Policy

from .edits import Edit
from .kinds import KINDS
from .policy_rows import Placed, Row, moved, placed
from .store import (
    Loaded,
    NotSaved,
    RevisionMismatch,
    StoreBusy,
    StoreUnavailable,
    conflict,
    edited,
    empty,
    seeding,
    stored_policy,
    unreadable,
)

Prepared = TypeVar("Prepared")
SCHEMA_VERSION: Final = 1
TIMEOUT_S: Final = 5.0  # one request: StoreUnavailable after
CATCH_UP_S: Final = 0.2  # how long a read waits for the watch to bring a newer revision
RETRY_S: Final = 0.5  # between a broken watch's attempts
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
        self._http = httpx.Client(base_url=self.endpoint, timeout=TIMEOUT_S)
        self._lock = threading.Lock()  # one request thread at a time
        self._state: Placed | None = None  # the rows as last read or written
        self._mod = 0  # the meta key's mod revision in _state
        self._at = 0  # the etcd revision _state was read or written at
        self._watch: _Watch | None = None

    # ---------------------------------------------------------------- the interface

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        with self._lock:
            if seed is not None:
                self._seed(*seed)
            state = self._current()
        if state is None:
            raise empty(self.url)
        policy = stored_policy(state, self.url)
        return Loaded(policy, self._prepare(policy))

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        with self._lock:
            for _ in range(RACES):
                state = self._current()
                if state is None:
                    raise empty(self.url)
                if if_revision is not None and if_revision != state.revision:
                    raise RevisionMismatch(if_revision, state.revision)
                policy, prepared, result = edited(state, edit, self._prepare)
                new, (put, gone) = moved(state, policy)
                ops = [_put(self._key(row), f"{new.seqs[row]} {put[row]}") for row in put]
                ops += [{"request_delete_range": {"key": _b64(self._key(row))}} for row in gone]
                if self._commit(self._same_meta(), ops, policy.revision):
                    self._state = new
                    return Loaded(policy, prepared, result)
        raise StoreBusy(f"{RACES} other writers' changes to {self.url} won the race; try again")

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

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        self._http.close()

    # ---------------------------------------------------------------- seeding

    def _seed(self, policy: Policy, source: str) -> None:
        """Commit ``policy`` into an empty prefix, in one transaction that only
        succeeds if the meta key is still absent (another seeding daemon won: what it
        wrote is checked as any store's is)."""
        for _ in range(2):
            state = self._current()
            seeded = seeding(state, policy, source, self.url)
            if seeded is None:
                return
            ops = [
                _put(self._key(row), f"{seq} {value}")
                for seq, (row, value) in enumerate(seeded.items())
            ]
            absent = {"key": _b64(self._meta), "target": "CREATE", "create_revision": "0"}
            if self._commit(absent, ops, policy.revision):
                self._state = None  # read back as written, at the next read
                return
        raise conflict(self.url, policy.revision, source)

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
        kvs, at = self._range(f"{self.prefix}/", _end(f"{self.prefix}/"))
        found: list[tuple[str, str, int, str]] = []
        revision = None
        for kv in kvs:
            key, value = _text(kv["key"]), _text(kv.get("value", ""))
            if key == self._meta:
                revision, self._mod = self._meta_of(value), int(kv["mod_revision"])
            else:
                found.append(self._row(key, value))
        if revision is None:  # deleted between the two reads: nothing we can run
            raise unreadable(self.url, "the store", f"{self._meta} is gone while read")
        self._state, self._at = placed(revision, found), at
        if self._watch is None:
            self._watch = _Watch(self, at, revision)
        else:
            self._watch.restart(at, revision)
        return self._state

    def _applied(self, state: Placed, events: list[dict[str, Any]]) -> Placed:
        """``state`` with the watch's events (all newer than it) applied."""
        found = {row: (state.seqs[row], value) for row, value in state.entries.items()}
        revision = state.revision
        for event in events:
            kv = event["kv"]
            key, value = _text(kv["key"]), _text(kv.get("value", ""))
            self._at = int(kv["mod_revision"])
            if key == self._meta:
                revision, self._mod = self._meta_of(value), self._at
            elif event.get("type") == "DELETE":
                found.pop(self._identity(key), None)
            else:
                kind, name, seq, text = self._row(key, value)
                found[(kind, name)] = (seq, text)
        return placed(revision, ((k, n, s, t) for (k, n), (s, t) in found.items()))

    def _read_meta(self) -> tuple[tuple[int, int] | None, int]:
        """(the policy's revision, the meta key's mod revision), or None, and the
        etcd revision it was read at."""
        kvs, at = self._range(self._meta)
        if not kvs:
            return None, at
        return (self._meta_of(_text(kvs[0]["value"])), int(kvs[0]["mod_revision"])), at

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
        return {"key": _b64(self._meta), "target": "MOD", "mod_revision": str(self._mod)}

    def _commit(self, compare: dict[str, Any], ops: list[dict[str, Any]], revision: int) -> bool:
        """One transaction: ``ops`` and the new meta if ``compare`` holds. True when
        committed (the meta's mod revision is then the transaction's)."""
        meta = json.dumps({"schema": SCHEMA_VERSION, "revision": revision})
        body = {"compare": [compare], "success": [*ops, _put(self._meta, meta)]}
        answer = self._call("/v3/kv/txn", body, writing=len(ops) + 1)
        if not answer.get("succeeded"):
            return False
        self._mod = self._at = int(answer["header"]["revision"])
        return True

    # ---------------------------------------------------------------- the wire

    def _range(self, key: str, end: str | None = None) -> tuple[list[dict[str, Any]], int]:
        body = {"key": _b64(key)} | ({"range_end": _b64(end)} if end else {})
        answer = self._call("/v3/kv/range", body)
        return answer.get("kvs", []), int(answer["header"]["revision"])

    def _call(self, path: str, body: dict[str, Any], writing: int = 0) -> dict[str, Any]:
        """One request; what goes wrong is the store's error, naming the URL."""
        try:
            response = self._http.post(path, json=body)
        except httpx.TimeoutException:
            raise StoreUnavailable(
                f"etcd at {self.url} did not answer within {TIMEOUT_S:.0f} s: is it "
                "overloaded, or has it lost its quorum?"
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
        if writing and ("too many operations" in reason or "too large" in reason):
            raise NotSaved(
                self.url,
                f"etcd refused a transaction of {writing} operations ({reason}): start "
                "etcd with a larger --max-txn-ops (and --max-request-bytes)",
                None,
            )
        raise StoreUnavailable(f"etcd at {self.url} answered {response.status_code}: {reason}")


class _Watch:
    """The watch on a backend's prefix, in a thread: the committed revision, and the
    events since the backend's rows, until it reads them."""

    def __init__(self, backend: EtcdBackend[Any], at: int, revision: int) -> None:
        self._backend = backend
        self._changed = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._from = at + 1  # the next etcd revision it asks for
        self._revision = revision
        self._live = False  # created, and not cancelled or broken since
        self._gap = False  # compacted past what it had: the backend must resync
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._http = httpx.Client(
            base_url=backend.endpoint, timeout=httpx.Timeout(TIMEOUT_S, read=None)
        )
        self._thread = threading.Thread(target=self._run, name=f"watch {backend.url}", daemon=True)
        self._thread.start()

    def followed(self) -> int | None:
        """The policy's revision as the watch last saw it; None when it is not
        watching now (the caller asks etcd)."""
        with self._changed:
            return self._revision if self._live else None

    def until(self, mod: int, after: int, wait: bool = True) -> list[dict[str, Any]] | None:
        """The events after etcd revision ``after`` up to the meta key's write at
        ``mod``, waiting up to CATCH_UP_S for them; None: resync instead. Those up
        to ``mod`` are dropped either way."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: self._gap or any(_mod_of(e) >= mod for e in self._events),
                CATCH_UP_S if wait else 0,
            )
            if not found or self._gap:
                self._events = [e for e in self._events if _mod_of(e) > mod]
                return None
            taken = [e for e in self._events if after < _mod_of(e) <= mod]
            self._events = [e for e in self._events if _mod_of(e) > mod]
            return taken

    def restart(self, at: int, revision: int) -> None:
        """The backend resynced at ``at``: drop what it has, fill any gap, and ask
        for nothing older when the watch starts again (a watch still retrying would
        ask for a revision compacted away)."""
        with self._changed:
            self._events = [e for e in self._events if _mod_of(e) > at]
            self._from = max(self._from, at + 1)
            self._revision = max(self._revision, revision)
            if self._gap:
                self._gap = False
                self._changed.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            if self._socket is not None:
                with contextlib.suppress(OSError):  # closed already
                    self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(TIMEOUT_S)
        self._http.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            broken = True
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                self._stream()  # broken: etcd stopped, or cut by stop()
                broken = False  # ended: compacted away, or closed by etcd
            with self._changed:
                self._live, self._socket = False, None
                while self._gap and not self._stopping.is_set():
                    self._changed.wait(RETRY_S)  # until the backend resyncs
            if broken:
                self._stopping.wait(RETRY_S)

    def _stream(self) -> None:
        prefix = f"{self._backend.prefix}/"
        with self._changed:
            start = self._from
        create = {
            "key": _b64(prefix),
            "range_end": _b64(_end(prefix)),
            "start_revision": str(start),
        }
        with self._http.stream("POST", "/v3/watch", json={"create_request": create}) as response:
            stream = response.extensions.get("network_stream")
            with self._changed:
                self._socket = stream.get_extra_info("socket") if stream else None
            if self._stopping.is_set():
                return
            for line in response.iter_lines():
                result = json.loads(line)["result"]
                if int(result.get("compact_revision", 0)) or result.get("canceled"):
                    with self._changed:
                        self._gap, self._live, self._events = True, False, []
                        self._changed.notify_all()
                    return
                self._took(result)

    def _took(self, result: dict[str, Any]) -> None:
        events = result.get("events", [])
        meta = _b64(self._backend._meta)
        with self._changed:
            self._live = True
            for event in events:
                self._from = _mod_of(event) + 1
                if event["kv"]["key"] == meta and event.get("type") != "DELETE":
                    self._revision = self._backend._meta_of(_text(event["kv"]["value"]))
            self._events.extend(events)
            self._changed.notify_all()


def _put(key: str, value: str) -> dict[str, Any]:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


def _end(prefix: str) -> str:
    """The end of etcd's range of every key starting with ``prefix`` (its last
    character plus one: ``/nvgw/`` -> ``/nvgw0``)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _mod_of(event: dict[str, Any]) -> int:
    return int(event["kv"]["mod_revision"])
