"""Replicas of a variant: least-in-flight balancing, failing replicas taken out, and the
activator that holds requests for a variant at zero replicas.

* ``Replica`` is one upstream address of a variant with its keep-alive pool, its
  requests in flight and its failure state. Replicas live in a ``ReplicaRegistry`` by
  address, so a table swap that keeps an address keeps its state and warm connections.
* ``ReplicaSet.pick`` takes the in-service replica with the fewest requests in flight
  (round robin among equals). A replica whose connection fails (refused, reset, closed
  before an answer) is taken out at once for 0.5 s, then 1, 2 … 10 s while it keeps
  failing; one success puts it back. When every replica is out the one back soonest is
  tried (the table may be stale; better an attempt than a refusal).
* ``Activator``: a request for a variant with no replica waits (bounded count, bounded
  time) until a table gives the variant one; the control plane learns of it at once
  through ``wait_for_held`` (the admin long poll ``GET /admin/activations``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence

from pilotage.router.upstream import PoolRegistry, UpstreamPool

OUT_FIRST = 0.5
OUT_MAX = 10.0
DEFAULT_ACTIVATION_TIMEOUT = 30.0
DEFAULT_MAX_HELD = 1000


class Replica:
    __slots__ = ("address", "failures", "in_flight", "out_until", "pool", "url")

    def __init__(self, url: str, pool: UpstreamPool):
        self.url = url
        self.pool = pool
        self.address = (pool.host, pool.port)
        self.in_flight = 0
        self.failures = 0
        self.out_until = 0.0

    def failed(self, now: float | None = None) -> None:
        """Its connection failed: out of service at once, longer each time in a row."""
        self.failures += 1
        wait = min(OUT_FIRST * 2 ** (self.failures - 1), OUT_MAX)
        self.out_until = (time.monotonic() if now is None else now) + wait

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            self.out_until = 0.0

    def in_service(self, now: float) -> bool:
        return self.out_until <= now


class ReplicaRegistry:
    """One ``Replica`` per upstream address, over the router's pool registry."""

    def __init__(self, pools: PoolRegistry):
        self.pools = pools
        self._replicas: dict[tuple[str, int], Replica] = {}

    def replica(self, url: str, host: str, port: int) -> Replica:
        pool = self.pools.pool(host, port)
        found = self._replicas.get((host, port))
        if found is None or found.pool is not pool:
            found = self._replicas[(host, port)] = Replica(url, pool)
        return found

    def keep_only(self, addresses: set[tuple[str, int]]) -> None:
        for key in list(self._replicas):
            if key not in addresses:
                del self._replicas[key]
        self.pools.keep_only(addresses)

    def close(self) -> None:
        self._replicas.clear()
        self.pools.close()


class ReplicaSet:
    """The replicas of one variant in one routing table (possibly none: at zero)."""

    __slots__ = ("_next", "replicas")

    def __init__(self, replicas: Sequence[Replica]):
        self.replicas = tuple(replicas)
        self._next = 0

    def __len__(self) -> int:
        return len(self.replicas)

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica | None:
        """The in-service replica with the fewest requests in flight, or None when there
        is none left to try (``exclude``: already tried for this request)."""
        replicas = self.replicas
        n = len(replicas)
        if n == 1:
            only = replicas[0]
            return None if exclude and only in tuple(exclude) else only
        if n == 0:
            return None
        tried = tuple(exclude)
        now = time.monotonic()
        start = self._next
        self._next = (start + 1) % n
        best: Replica | None = None
        fallback: Replica | None = None
        for i in range(n):
            r = replicas[(start + i) % n]
            if r in tried:
                continue
            if r.out_until > now:
                if fallback is None or r.out_until < fallback.out_until:
                    fallback = r
                continue
            if best is None or r.in_flight < best.in_flight:
                best = r
        return best if best is not None else fallback


class Unavailable(Exception):
    """No replica came for a held request (timeout), or too many are held already."""

    status = 503


class Activator:
    """Requests held for variants at zero replicas, woken by the next table with one.

    The counts (``held`` now per variant, and cumulative ``activations``, ``timeouts``,
    ``refused``, cold-start seconds) are reported in the router's stats and metrics.
    """

    def __init__(
        self,
        timeout: float = DEFAULT_ACTIVATION_TIMEOUT,
        max_held: int = DEFAULT_MAX_HELD,
    ):
        self.timeout = timeout
        self.max_held = max_held
        self.held: dict[str, int] = {}
        self.activations: dict[str, int] = {}
        self.cold_start_seconds: dict[str, float] = {}
        self.last_cold_start: dict[str, float] = {}
        self.timeouts: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._signal: asyncio.Event | None = None

    def configure(self, timeout: float, max_held: int) -> None:
        self.timeout = timeout
        self.max_held = max_held

    @property
    def total_held(self) -> int:
        return sum(self.held.values())

    def _event(self) -> asyncio.Event:
        if self._signal is None:
            self._signal = asyncio.Event()
        return self._signal

    async def hold(self, name: str) -> float:
        """Wait until ``released(name)``; the seconds waited. Raises Unavailable past the
        timeout or when ``max_held`` requests are waiting already."""
        if self.total_held >= self.max_held:
            self.refused[name] = self.refused.get(name, 0) + 1
            raise Unavailable(
                f"variant {name} is starting from zero replicas and {self.max_held} "
                "requests are already waiting for it (maxHeldRequests); retry shortly"
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(name, []).append(waiter)
        self.held[name] = self.held.get(name, 0) + 1
        self._event().set()  # wake the control plane now
        started = loop.time()
        try:
            await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError:
            self.timeouts[name] = self.timeouts.get(name, 0) + 1
            raise Unavailable(
                f"variant {name} has no ready replica: none started within "
                f"{self.timeout:g}s (autoscaling.activationTimeout)"
            ) from None
        finally:
            self.held[name] -= 1
            waiters = self._waiters.get(name, [])
            if waiter in waiters:
                waiters.remove(waiter)
        waited = loop.time() - started
        self.activations[name] = self.activations.get(name, 0) + 1
        self.cold_start_seconds[name] = self.cold_start_seconds.get(name, 0.0) + waited
        self.last_cold_start[name] = waited
        return waited

    def released(self, names: Iterable[str]) -> None:
        """These variants have a replica now: every request held for them goes on."""
        for name in names:
            for waiter in self._waiters.pop(name, []):
                if not waiter.done():
                    waiter.set_result(None)

    def abandon(self, names: Iterable[str]) -> None:
        """These variants are gone from the table: their held requests fail now."""
        for name in names:
            for waiter in self._waiters.pop(name, []):
                if not waiter.done():
                    waiter.set_exception(
                        Unavailable(f"variant {name} was removed while the request waited")
                    )

    def waiting(self) -> dict[str, int]:
        return {name: n for name, n in self.held.items() if n > 0}

    async def wait_for_held(self, timeout: float) -> dict[str, int]:
        """Return at once when requests are held, else when one is (or after ``timeout``):
        the admin long poll through which the control plane is woken."""
        held = self.waiting()
        if held:
            return held
        event = self._event()
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.waiting()
