"""The one exception type a request handler raises to answer a client error."""

from __future__ import annotations


class RequestError(Exception):
    """A problem with the request, answered as ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # refused before the whole body was read: answer and close the connection rather
        # than read (and throw away) the rest of the body
        self.close = close


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


def not_found(message: str) -> RequestError:
    return RequestError(404, message)
