"""Protocol errors carry their NSQ wire code and whether they close the connection."""
from __future__ import annotations


class ProtocolError(Exception):
    """An error answered with an error frame `CODE description`.

    fatal=True closes the connection after the frame is sent (NSQ's
    FatalClientErr); fatal=False keeps it open (NSQ's ClientErr, used for
    FIN/REQ/TOUCH failures).
    """

    def __init__(self, code: str, description: str, fatal: bool = True) -> None:
        super().__init__("%s %s" % (code, description))
        self.code = code
        self.description = description
        self.fatal = fatal

    def frame_data(self) -> bytes:
        return ("%s %s" % (self.code, self.description)).encode("utf-8", "replace")


def fatal(code: str, description: str) -> ProtocolError:
    return ProtocolError(code, description, fatal=True)


def nonfatal(code: str, description: str) -> ProtocolError:
    return ProtocolError(code, description, fatal=False)


class BackendError(Exception):
    """A topic's or channel's backend (diskqueue) could not store messages."""


class ExitingError(Exception):
    """The topic or channel is being deleted or the node is exiting."""
