"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on every request head: a connection must
deliver a complete request line and headers within :attr:`GuardedH11Protocol.head_timeout_s`
seconds of connecting, or of sending the first byte of its next request, or it is closed
(slowloris: a client that sends nothing, or its headers a byte at a time, holds no connection
slot longer). The body has its own deadline (``--body-timeout``, 408) and idle keep-alive
connections uvicorn's (``timeout_keep_alive``); h11 bounds a head's size
(``h11_max_incomplete_event_size``)."""

from __future__ import annotations

import asyncio
from typing import Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol"]


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` closing connections whose request head does not arrive in time."""

    #: Seconds a request head (request line and headers) may take to arrive.
    head_timeout_s: float = 10.0

    _head_timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
