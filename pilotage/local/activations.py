"""Wake the embedded control loop at once when a router holds a request at zero replicas.

One thread per autoscaled ModelDeployment whose variants may go to zero keeps a long
poll open on its router (`GET /admin/activations`); when it answers with held requests
the deployment is reconciled now (its first replica starts) instead of at its next
timer tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pilotage.local.platform import LocalPlatform
from pilotage.wire.admin import RouterAdminError, wait_activations

POLL_SECONDS = 20.0
RETRY_SECONDS = 0.2


class Activations:
    """The long polls, one per (namespace, deployment), kept in line with ``sync``."""

    def __init__(
        self,
        platform: LocalPlatform,
        wake: Callable[[str, str], None],
        stop: threading.Event,
    ) -> None:
        self.platform = platform
        self.wake = wake
        self.stop = stop
        self._threads: dict[tuple[str, str], tuple[threading.Thread, threading.Event]] = {}

    def sync(self, wanted: set[tuple[str, str]]) -> None:
        """Poll the routers of exactly these (namespace, deployment) pairs."""
        for key in set(self._threads) - wanted:
            _, done = self._threads.pop(key)
            done.set()
        for key in wanted - set(self._threads):
            done = threading.Event()
            thread = threading.Thread(
                target=self._poll, args=(key, done), name=f"activations-{key[1]}", daemon=True
            )
            self._threads[key] = (thread, done)
            thread.start()

    def close(self) -> None:
        self.sync(set())

    def _poll(self, key: tuple[str, str], done: threading.Event) -> None:
        namespace, deployment = key
        while not done.is_set() and not self.stop.is_set():
            admin = self.platform.router_admin(deployment, namespace)
            if admin is None:
                done.wait(RETRY_SECONDS)
                continue
            url, token = admin
            try:
                answer = wait_activations(url, token, POLL_SECONDS, timeout=POLL_SECONDS + 5)
            except RouterAdminError:
                done.wait(RETRY_SECONDS)
                continue
            held = answer.get("held") if isinstance(answer, dict) else None
            if held and not done.is_set():
                self.wake(namespace, deployment)
                # requests stay held until a replica is ready: do not spin on them
                done.wait(RETRY_SECONDS)
