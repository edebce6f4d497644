"""Go's time.Duration in text: parsing `1h30m`, `250ms`, `-1.5h` and printing as Go does.

The one implementation for flags, config files, /stats text, nsqlookupd's
`last_update`, HTTP logs and benchmark output.  Go prints 75 seconds as
`1m15s`, never `75s`.
"""
from __future__ import annotations

import re


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go duration (`60s`, `1h30m`, `250ms`, `-1.5h`, `0`) into seconds."""
    s = text.strip()
    if not s:
        raise ValueError("invalid duration %r" % text)
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError("invalid duration %r" % text)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a time.Duration (`1m0s`, `250ms`, `2.5ms`, `1.5µs`)."""
    return format_duration_ns(int(round(seconds * 1e9)))


def format_duration_ns(ns: int) -> str:
    """Go's time.Duration.String() of an integer nanosecond count."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(int(ns))
    if ns < 1000:
        return "%s%dns" % (sign, ns)
    if ns < 1_000_000:
        return sign + _fraction(ns, 1000) + "µs"
    if ns < 1_000_000_000:
        return sign + _fraction(ns, 1_000_000) + "ms"
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    sec = _fraction(rem, 1_000_000_000) + "s"
    if h:
        return "%s%dh%dm%s" % (sign, h, m, sec)
    if m:
        return "%s%dm%s" % (sign, m, sec)
    return sign + sec


def _fraction(value: int, unit: int) -> str:
    """value/unit in decimal with no trailing zeros (Go's fmtFrac)."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return "%d.%s" % (whole, ("%0*d" % (digits, frac)).rstrip("0"))
