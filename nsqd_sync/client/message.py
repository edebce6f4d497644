"""A message delivered to a Consumer's handler."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional, Protocol

from .. import wire

if TYPE_CHECKING:  # pragma: no cover
    from .conn_state import ConsumerConn

logger = logging.getLogger(__name__)


class Responder(Protocol):
    """Who answers a message on nsqd (the Consumer that received it)."""

    def respond_message(self, msg: "Message", success: bool, delay_ms: Optional[int], backoff: bool) -> None: ...
    def touch_message(self, msg: "Message") -> None: ...


class Message:
    """One message: `id` (16 ASCII hex bytes), `body`, `timestamp` (ns), `attempts`.

    The handler's return value answers the message (None/True: FIN, False or
    an exception: REQ).  Call `enable_async()` to answer later yourself with
    `finish()` / `requeue()`, from any thread; `touch()` resets nsqd's
    timeout for a message that takes long.
    """

    __slots__ = ("id", "body", "timestamp", "attempts", "_conn", "_consumer", "_responded", "_async")

    def __init__(self, msg_id: bytes, body: bytes, timestamp: int, attempts: int,
                 conn: "Optional[ConsumerConn]" = None, consumer: Optional[Responder] = None) -> None:
        self.id = msg_id
        self.body = body
        self.timestamp = timestamp
        self.attempts = attempts
        self._conn = conn
        self._consumer = consumer
        self._responded = False
        self._async = False

    @classmethod
    def from_frame(cls, data: bytes, conn: "Optional[ConsumerConn]" = None,
                   consumer: Optional[Responder] = None) -> "Message":
        ts, attempts, msg_id, body = wire.decode_message(data)
        return cls(msg_id, body, ts, attempts, conn, consumer)

    def __repr__(self) -> str:
        return "<Message %s attempts=%d %d bytes>" % (self.id.decode("ascii", "replace"),
                                                      self.attempts, len(self.body))

    @property
    def nsqd_address(self) -> Optional[str]:
        """The nsqd (host:port) this message came from."""
        return self._conn.address if self._conn is not None else None

    def enable_async(self) -> None:
        """Don't answer when the handler returns: finish()/requeue() will be called later."""
        self._async = True

    def is_async(self) -> bool:
        return self._async

    def has_responded(self) -> bool:
        return self._responded

    def finish(self) -> None:
        """FIN: the message is done.  A second answer is ignored."""
        self._respond(True, 0, False)

    def requeue(self, delay_ms: Optional[int] = None, backoff: bool = True) -> None:
        """REQ: give the message back to nsqd, redelivered after delay_ms.

        delay_ms None: the consumer's requeue_delay times the attempts so far
        (capped by max_requeue_delay).  backoff: count this as a failure
        for the consumer's backoff.
        """
        self._respond(False, delay_ms, backoff)

    def touch(self) -> None:
        """TOUCH: reset the message's timeout on nsqd."""
        if self._responded:
            logger.debug("TOUCH of %s after it was answered is ignored", self.id)
            return
        if self._consumer is not None:
            self._consumer.touch_message(self)

    def _respond(self, success: bool, delay_ms: Optional[int], backoff: bool) -> None:
        consumer = self._consumer
        if consumer is None:
            self._responded = True
            return
        consumer.respond_message(self, success, delay_ms, backoff)
