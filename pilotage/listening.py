"""Listening sockets for the data-plane servers, bound before any slow start-up work."""

from __future__ import annotations

import socket

BACKLOG = 2048


def listen(host: str, port: int, what: str = "") -> socket.socket:
    """A bound, listening, non-blocking socket, or an OSError naming the address and why."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"{what} {host}:{port}" if what else f"{host}:{port}"
        raise OSError(f"cannot listen on {where} ({exc.strerror or exc})") from None
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock
