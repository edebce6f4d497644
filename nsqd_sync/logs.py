"""Logging in NSQ's line format.

`[nsqd] 2026/11/22 18:52:38.864591 INFO: TCP: listening on 127.0.0.1:4350`:
the --log-prefix, date, time with microseconds, level, message.  Lines go to
stderr, where client test harnesses look for the listening addresses.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional, TextIO

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}
_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}


def parse_level(text: str) -> int:
    try:
        return LEVELS[text.strip().lower()]
    except KeyError:
        raise ValueError("must be one of debug, info, warn, error, fatal") from None


def level_name(level: int) -> str:
    return {v: k for k, v in LEVELS.items() if k != "warning"}.get(level, "info")


class NSQFormatter(logging.Formatter):
    """Formats records as NSQ's logger does."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        micros = int((record.created - int(record.created)) * 1_000_000)
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", t) + ".%06d" % micros
        level = _NAMES.get(record.levelno, record.levelname)
        line = "%s%s %s: %s" % (self.prefix, stamp, level, record.getMessage())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_handler: Optional[logging.Handler] = None


def setup(prefix: str, level: int, stream: Optional[TextIO] = None) -> None:
    """Send every nsq-sync logger to stream (stderr) in NSQ's format."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(NSQFormatter(prefix))
    root.addHandler(_handler)
    set_level(level)


def set_level(level: int) -> None:
    for name in ("nsqd_sync", "nsqlookupd_sync", "nsqadmin_sync"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger().setLevel(level)
