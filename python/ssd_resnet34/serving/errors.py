"""The one error type of the server: an HTTP status and a message, answered as the open inference
protocol's ``{"error": "<message>"}`` (every endpoint, V2 or not)."""

from __future__ import annotations

from typing import Dict, Optional

__all__ = ["HTTPError"]


class HTTPError(Exception):
    """A request the server refuses or cannot answer: ``status`` (400, 401, 404, 408, 413, 415,
    503, 504, ...), ``message`` (what was wrong and what was expected) and extra response
    ``headers`` (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
