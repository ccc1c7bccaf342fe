"""The one exception type a request handler raises to answer a client error."""

from __future__ import annotations


class RequestError(Exception):
    """A problem with the request, answered as ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


def not_found(message: str) -> RequestError:
    return RequestError(404, message)
