"""A fast, deterministic mutator for frames: a few havoc steps on a valid seed.

Each step is one of: flip a bit (anywhere, or inside a header field, where reserved
bits and flags live), set a field to a value of the policy or an edge value, set a
byte, add to a 16-bit field, cut the frame (often at a field boundary), extend it,
insert or delete bytes at a field boundary (every later length goes wrong), or splice
in the same span of another seed. Some inputs are random bytes instead, or a seed's
first bytes followed by random ones.

Everything draws from one ``random.Random``, so a chunk's inputs are a function of
its seed string alone: any finding replays.
"""

from __future__ import annotations

import random
from typing import Final

from .frames import Fields, Seed

MAX_FRAME: Final = 1600  # past the largest frame any entry point is handed (1514 + slack)
RANDOM_SHARE: Final = 0.03  # inputs that are random bytes from the start
PREFIX_SHARE: Final = 0.03  # a seed's first bytes, then random ones
_EDGES: Final = {
    1: (0, 1, 0x7F, 0x80, 0xFE, 0xFF),
    2: (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF),
    3: (0, 1, 0xFFF, 0x1000, 0xFFFFFE, 0xFFFFFF),
    4: (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF),
}


def mutate(
    rng: random.Random, seed: Seed, donors: list[Seed], tokens: dict[int, tuple[bytes, ...]]
) -> bytes:
    """A new input derived from ``seed`` (or random bytes, now and then)."""
    roll = rng.random()
    if roll < RANDOM_SHARE:
        return rng.randbytes(rng.choice((rng.randrange(64), rng.randrange(MAX_FRAME))))
    if roll < RANDOM_SHARE + PREFIX_SHARE:
        keep = rng.randrange(len(seed.data) + 1)
        return seed.data[:keep] + rng.randbytes(rng.randrange(96))
    buf = bytearray(seed.data)
    fields = seed.fields
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 6))):
        _STEPS[rng.randrange(len(_STEPS))](rng, buf, fields, donors, tokens)
    return bytes(buf)


def _field(rng: random.Random, buf: bytearray, fields: Fields) -> tuple[int, int] | None:
    offset, size = rng.choice(fields)
    return (offset, size) if offset + size <= len(buf) else None


def _flip_bit(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    if buf:
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)


def _flip_in_field(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    found = _field(rng, buf, fields)
    if found is not None:
        offset, size = found
        buf[offset + rng.randrange(size)] ^= 1 << rng.randrange(8)


def _token(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    found = _field(rng, buf, fields)
    if found is not None:
        offset, size = found
        values = tokens.get(size)
        buf[offset : offset + size] = rng.choice(values) if values else rng.randbytes(size)


def _edge(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    found = _field(rng, buf, fields)
    if found is not None:
        offset, size = found
        if size == 2 and rng.random() < 0.5:  # a length: the real one, give or take
            value = max(0, min(0xFFFF, len(buf) - offset + rng.randrange(-30, 31)))
        else:
            value = rng.choice(_EDGES.get(size, (0,)))
        buf[offset : offset + size] = value.to_bytes(size, "big") if size <= 4 else bytes(size)


def _byte(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    if buf:
        buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))


def _add(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    found = _field(rng, buf, fields)
    if found is not None and found[1] >= 2:
        offset = found[0]
        value = int.from_bytes(buf[offset : offset + 2], "big") + rng.randrange(-16, 17)
        buf[offset : offset + 2] = (value & 0xFFFF).to_bytes(2, "big")


def _cut(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    if not buf:
        return
    if rng.random() < 0.5:
        offset, size = rng.choice(fields)
        at = offset + rng.randrange(size + 1)
    else:
        at = rng.randrange(len(buf))
    del buf[at:]


def _extend(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    room = MAX_FRAME - len(buf)
    if room > 0:
        size = (
            rng.randrange(1, min(room, 64) + 1) if rng.random() < 0.9 else rng.randrange(room + 1)
        )
        buf += bytes(size) if rng.random() < 0.5 else rng.randbytes(size)


def _shift(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    offset = rng.choice(fields)[0]
    if offset > len(buf):
        return
    if rng.random() < 0.5:
        buf[offset:offset] = rng.randbytes(rng.choice((1, 2, 4, 8)))
    else:
        del buf[offset : offset + rng.choice((1, 2, 4, 8))]


def _splice(rng: random.Random, buf: bytearray, fields: Fields, donors, tokens) -> None:
    donor = rng.choice(donors).data
    limit = min(len(buf), len(donor))
    if limit:
        at = rng.randrange(limit)
        span = rng.randrange(1, 33)
        buf[at : at + span] = donor[at : at + span]


_STEPS: Final = (
    _flip_bit,
    _flip_in_field,
    _flip_in_field,
    _token,
    _token,
    _token,
    _edge,
    _edge,
    _byte,
    _add,
    _cut,
    _extend,
    _shift,
    _splice,
)
