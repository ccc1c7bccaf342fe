"""Run the dashboard: a uvicorn server on its own thread (inside `pilotage up`) or in the
foreground (`pilotage dashboard`)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from pilotage.listening import listen


def _config(app: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        server_header=False,
        log_config=None,
        log_level="warning",
        timeout_keep_alive=30,
    )


class BackgroundServer:
    """The dashboard on a thread: ``start`` binds (raises OSError naming the address) and
    serves; ``stop`` ends it. The serving hot path of models is untouched: this is a
    separate listener reading the store."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self.sock: socket.socket = listen(host, port, "the dashboard")
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(_config(app))
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()


def serve_foreground(app: Any, sock: socket.socket) -> None:
    import uvicorn

    uvicorn.Server(_config(app)).run(sockets=[sock])
