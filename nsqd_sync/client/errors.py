"""Exceptions raised by the client library.

Every error frame nsqd sends (`E_CODE description`) becomes an instance of
the `NSQError` subclass registered for its code, carrying `.code` and
`.message`; an unknown code becomes a plain `NSQError`.  Failures that never
reached nsqd (refused connection, closed socket, timeout) are
`NSQConnectionError`.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "NSQError", "NSQConnectionError", "NSQProtocolError",
    "NSQInvalid", "NSQBadBody", "NSQBadTopic", "NSQBadChannel", "NSQBadMessage",
    "NSQPubFailed", "NSQMPubFailed", "NSQDPubFailed", "NSQFinFailed", "NSQReqFailed",
    "NSQTouchFailed", "NSQIdentifyFailed", "NSQAuthFailed", "NSQAuthFirst", "NSQAuthError",
    "NSQUnauthorized", "NSQAuthDisabled", "NSQBadProtocol",
    "ERROR_CLASSES", "NON_FATAL_CODES", "error_from_frame", "is_fatal",
]


class NSQError(Exception):
    """An error reported by nsqd (or by the library on its behalf).

    `.code` is the `E_…` code (None when there is none), `.message` the
    description that followed it in the error frame.
    """

    code: Optional[str] = None

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        """The text as nsqd sent it: `E_CODE description`."""
        if self.code:
            return "%s %s" % (self.code, self.message) if self.message else self.code
        return self.message

    def __repr__(self) -> str:
        return "%s(code=%r, message=%r)" % (type(self).__name__, self.code, self.message)


class NSQConnectionError(NSQError):
    """The connection could not be made, broke, or timed out."""


class NSQProtocolError(NSQError):
    """nsqd answered with something the protocol does not allow here."""


class NSQInvalid(NSQError):
    code = "E_INVALID"


class NSQBadBody(NSQError):
    code = "E_BAD_BODY"


class NSQBadTopic(NSQError):
    code = "E_BAD_TOPIC"


class NSQBadChannel(NSQError):
    code = "E_BAD_CHANNEL"


class NSQBadMessage(NSQError):
    code = "E_BAD_MESSAGE"


class NSQPubFailed(NSQError):
    code = "E_PUB_FAILED"


class NSQMPubFailed(NSQError):
    code = "E_MPUB_FAILED"


class NSQDPubFailed(NSQError):
    code = "E_DPUB_FAILED"


class NSQFinFailed(NSQError):
    code = "E_FIN_FAILED"


class NSQReqFailed(NSQError):
    code = "E_REQ_FAILED"


class NSQTouchFailed(NSQError):
    code = "E_TOUCH_FAILED"


class NSQIdentifyFailed(NSQError):
    code = "E_IDENTIFY_FAILED"


class NSQAuthFailed(NSQError):
    code = "E_AUTH_FAILED"


class NSQAuthFirst(NSQError):
    code = "E_AUTH_FIRST"


class NSQAuthError(NSQError):
    code = "E_AUTH_ERROR"


class NSQUnauthorized(NSQError):
    code = "E_UNAUTHORIZED"


class NSQAuthDisabled(NSQError):
    code = "E_AUTH_DISABLED"


class NSQBadProtocol(NSQError):
    code = "E_BAD_PROTOCOL"


ERROR_CLASSES: Dict[str, Type[NSQError]] = {
    cls.code: cls for cls in (
        NSQInvalid, NSQBadBody, NSQBadTopic, NSQBadChannel, NSQBadMessage,
        NSQPubFailed, NSQMPubFailed, NSQDPubFailed, NSQFinFailed, NSQReqFailed,
        NSQTouchFailed, NSQIdentifyFailed, NSQAuthFailed, NSQAuthFirst, NSQAuthError,
        NSQUnauthorized, NSQAuthDisabled, NSQBadProtocol,
    )
}

# nsqd keeps the connection open after these; every other error closes it.
NON_FATAL_CODES = frozenset(("E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"))


def error_from_frame(data: bytes) -> NSQError:
    """The exception for an error frame's payload (`E_CODE description`)."""
    text = data.decode("utf-8", "replace")
    code, _, rest = text.partition(" ")
    cls = ERROR_CLASSES.get(code)
    if cls is not None:
        return cls(rest)
    if code.startswith("E_"):
        return NSQError(rest, code=code)
    return NSQError(text, code=None)


def is_fatal(error: NSQError) -> bool:
    """Whether nsqd closes the connection after sending this error."""
    return error.code not in NON_FATAL_CODES
