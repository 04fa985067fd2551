"""The watch an etcd store keeps on its prefix (``etcd_store.py`` says what for): one
streaming POST to etcd's ``/v3/watch`` in a thread of its own, resumed where it
stopped after a break (``RETRY_S`` between attempts), and a gap flagged when etcd
cancels it because what it asks for is compacted away, until the backend has read
the whole prefix again (``restart``). ``stop`` shuts its socket down, so the thread
ends at once, not at the next write. ``Signals``: eventfds it writes when what
``followed`` says changes, so a follower sleeps until then (``store.PolicyStore.moves``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

import httpx

TIMEOUT_S: Final = 5.0  # connecting: a broken attempt after
CATCH_UP_S: Final = 0.2  # how long a read waits for the watch to bring a newer revision
RETRY_S: Final = 0.5  # between a broken watch's attempts


def plain_client(endpoint: str, timeout: httpx.Timeout | float) -> httpx.Client:
    """A client of etcd's JSON gateway at ``endpoint``, always ``http://``
    (``etcd_store.parse_etcd``): with no TLS to verify, ``verify=False`` only spares
    the CA bundle every client loads otherwise (60 ms each, two per store)."""
    return httpx.Client(base_url=endpoint, timeout=timeout, verify=False)


class Signals:
    """Eventfds, one per follower's feed, each written when the watch's answer to
    ``followed`` may have changed: a revision it saw, the watch down or up again.
    A feed removed is closed under the lock ``fire`` writes under, so no write
    ever reaches its fd number once it is free for another file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: set[int] = set()

    def feed(self) -> Feed:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        with self._lock:
            self._fds.add(fd)
        return Feed(self, fd)

    def fire(self) -> None:
        with self._lock:
            for fd in self._fds:
                os.eventfd_write(fd, 1)  # a counter: never full at 2**64 - 2 writes

    def _remove(self, fd: int) -> None:
        with self._lock:
            self._fds.discard(fd)
            os.close(fd)


class Feed:
    """A follower's eventfd (``store.ChangeFeed``): readable once the watch fired."""

    def __init__(self, signals: Signals, fd: int) -> None:
        self._signals = signals
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        try:
            return os.eventfd_read(self._fd) > 0
        except BlockingIOError:
            return False

    def close(self) -> None:
        self._signals._remove(self._fd)


class Watch:
    """The watch on a store's prefix, in a thread: the committed revision, and the
    events since the backend's rows, until it reads them.

    ``meta`` is the key holding the policy's revision, ``revision_of`` reads it
    (None: not a revision this nvgw reads, which the backend's own read will name);
    ``at`` is the etcd revision the backend's rows were read at and ``revision``
    the policy's then."""

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        meta: str,
        revision_of: Callable[[str], int | None],
        at: int,
        revision: int,
        signals: Signals,
    ) -> None:
        self._prefix, self._meta, self._revision_of = f"{prefix}/", b64(meta), revision_of
        self._changed = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._from = at + 1  # the next etcd revision it asks for
        self._revision: int | None = revision
        self._meta_mod = at  # the etcd revision of the last meta write it saw (at: none)
        self._live = False  # created, and not cancelled or broken since
        self._gap = False  # compacted past what it had: the backend must resync
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._signals = signals
        forever = httpx.Timeout(TIMEOUT_S, read=None)  # it waits for the next write
        self._http = plain_client(endpoint, forever)
        self._thread = threading.Thread(target=self._run, name=f"watch {prefix}", daemon=True)
        self._thread.start()

    def followed(self) -> int | None:
        """The policy's revision as the watch last saw it; None when it is not
        watching now, or saw a revision it cannot read (the caller asks etcd)."""
        with self._changed:
            return self._revision if self._live else None  # None too when unreadable

    def meta_written(self) -> int | None:
        """The etcd revision of the last write of the meta key it saw (what ``until``
        brings the events up to without asking etcd); None when it is not watching."""
        with self._changed:
            return self._meta_mod if self._live else None

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
            self._revision = max(self._revision or revision, revision)
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
        try:
            while not self._stopping.is_set():
                broken = True
                with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                    self._stream()  # broken: etcd stopped, or cut by stop()
                    broken = False  # ended: compacted away, or closed by etcd
                with self._changed:
                    self._live, self._socket = False, None
                    self._signals.fire()  # ``followed`` says None now: ask etcd
                    while self._gap and not self._stopping.is_set():
                        self._changed.wait(RETRY_S)  # until the backend resyncs
                if broken:
                    self._stopping.wait(RETRY_S)
        finally:  # whatever ended it: a watch gone answers nothing, the backend asks etcd
            with self._changed:
                self._live = False
            self._signals.fire()

    def _stream(self) -> None:
        with self._changed:
            start = self._from
        create = {
            "key": b64(self._prefix),
            "range_end": b64(range_end(self._prefix)),
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
                    self._signals.fire()
                    return
                self._took(result)

    def _took(self, result: dict[str, Any]) -> None:
        events = result.get("events", [])
        with self._changed:
            was = self._live, self._revision
            self._live = True
            for event in events:
                self._from = _mod_of(event) + 1
                if event["kv"]["key"] == self._meta and event.get("type") != "DELETE":
                    self._revision = self._revision_of(text(event["kv"]["value"]))
                    self._meta_mod = _mod_of(event)
            self._events.extend(events)
            self._changed.notify_all()
            moved = (self._live, self._revision) != was
        if moved:
            self._signals.fire()


def b64(plain: str) -> str:
    """Keys and values as etcd's JSON gateway carries them."""
    return base64.b64encode(plain.encode()).decode()


def text(encoded: str) -> str:
    return base64.b64decode(encoded).decode()


def range_end(prefix: str) -> str:
    """The end of etcd's range of every key starting with ``prefix`` (its last
    character plus one: ``/nvgw/`` -> ``/nvgw0``)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _mod_of(event: dict[str, Any]) -> int:
    return int(event["kv"]["mod_revision"])
