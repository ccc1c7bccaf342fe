"""Choosing a variant: an exact weighted split, sticky keys, and an exact sampling share.

* ``WeightedSplitter`` is smooth weighted round-robin (the scheme nginx uses): over
  every 100 consecutive picks each variant gets exactly its weight, interleaved, so
  a 10 % canary receives 1,000 of 10,000 requests, not "about" 1,000.
* ``StickyChooser`` is weighted rendezvous hashing: a key goes to the variant with the
  highest ``weight / -ln(hash(key, variant))``. The same key always lands on the same
  variant for a given table, and changing one weight only moves keys to (or from)
  the variant whose weight changed: the fewest keys that any split can move.
* ``PercentSampler`` picks exactly ``percent`` of calls (for shadow copies).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from pilotage.wire.routes import Variant

_TWO_52 = float(2**52)


class WeightedSplitter:
    """Smooth weighted round-robin over variants with a positive weight."""

    __slots__ = ("_current", "_total", "_variants", "_weights")

    def __init__(self, variants: Sequence[Variant]):
        chosen = [v for v in variants if v.weight > 0]
        self._variants = chosen
        self._weights = [v.weight for v in chosen]
        self._current = [0] * len(chosen)
        self._total = sum(self._weights)

    def pick(self) -> Variant:
        variants = self._variants
        if len(variants) == 1:
            return variants[0]
        current = self._current
        weights = self._weights
        best = 0
        best_value = -1 << 62
        for i in range(len(current)):
            value = current[i] + weights[i]
            current[i] = value
            if value > best_value:
                best_value = value
                best = i
        current[best] -= self._total
        return variants[best]


def _unit_interval(h: int) -> float:
    """Map a 64-bit hash to (0, 1), open at both ends.

    Only the top 52 bits are used: with the half added they still fit a float exactly,
    so the largest hash stays below 1.0 (with all 64 bits, 2**64 - 1 rounds up to 1.0
    and the sticky score's -log(1.0) is 0).
    """
    return ((h >> 12) + 0.5) / _TWO_52


def _unit_hash(key: bytes, salt: bytes) -> float:
    """A uniform value in (0, 1) from ``key`` and ``salt``."""
    digest = hashlib.blake2b(key, digest_size=8, salt=salt).digest()
    return _unit_interval(int.from_bytes(digest, "big"))


def _salt(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


class StickyChooser:
    """Weighted rendezvous hashing of a header value onto variants."""

    __slots__ = ("_entries",)

    def __init__(self, variants: Sequence[Variant]):
        self._entries = [(v, _salt(v.name), float(v.weight)) for v in variants if v.weight > 0]

    def pick(self, key: bytes) -> Variant:
        entries = self._entries
        if len(entries) == 1:
            return entries[0][0]
        best = entries[0][0]
        best_score = -1.0
        for variant, salt, weight in entries:
            score = weight / -math.log(_unit_hash(key, salt))
            if score > best_score:
                best_score = score
                best = variant
        return best


class PercentSampler:
    """True for exactly ``percent`` % of calls, spread evenly (error accumulation)."""

    __slots__ = ("_acc", "_step")

    def __init__(self, percent: float):
        self._step = percent
        self._acc = 0.0

    def take(self) -> bool:
        if self._step >= 100.0:
            return True
        self._acc += self._step
        if self._acc >= 100.0:
            self._acc -= 100.0
            return True
        return False
