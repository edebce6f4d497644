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
        # raw bytes the client sent (kept as surrogates) go back as they came, like Go
        return ("%s %s" % (self.code, self.description)).encode("utf-8", "surrogateescape")


def fatal(code: str, description: str) -> ProtocolError:
    return ProtocolError(code, description, fatal=True)


def nonfatal(code: str, description: str) -> ProtocolError:
    return ProtocolError(code, description, fatal=False)


class BackendError(Exception):
    """A topic's or channel's backend (diskqueue) could not store messages."""


class ExitingError(Exception):
    """The topic or channel is being deleted or the node is exiting."""


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's %q of a string decoded with 'surrogateescape' (invalid bytes become \\xNN)."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte
            out.append("\\x%02x" % (o - 0xDC00))
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif ch.isprintable():
            out.append(ch)
        elif o <= 0xFFFF:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)
