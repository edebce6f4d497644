"""Every nsqlookupd option: name, default, parsing and validation, in one place.

The flag list mirrors `nsqlookupd --help` of NSQ 1.3.0 (names, defaults,
config file keys).  `Options.from_values()` turns the merged command line /
config file values into one validated object that is handed to `NSQLookupd`;
no other module reads flags or the environment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from nsqd_sync.addresses import split_host_port
from nsqd_sync.flags import Flag, FlagError, default_hostname, check_log_level, non_negative
from nsqd_sync.logs import parse_level

_HOST = default_hostname()


def _check_address(value: str) -> Optional[str]:
    try:
        split_address(value)
    except ValueError as e:
        return str(e)
    return None


FLAGS: List[Flag] = [
    Flag("broadcast-address", "str", _HOST,
         "address of this lookupd node, handed to nsqd nodes in IDENTIFY",
         default_text="OS hostname", metavar="ADDR"),
    Flag("config", "str", "", "path to a TOML config file", metavar="FILE"),
    Flag("http-address", "str", "0.0.0.0:4161",
         "<addr>:<port> to listen on for HTTP clients", validate=_check_address, metavar="ADDR"),
    Flag("inactive-producer-timeout", "duration", 300.0,
         "how long a producer stays in the active list after its last ping",
         validate=non_negative),
    Flag("log-level", "str", "info",
         "log verbosity: debug, info, warn, error, or fatal", validate=check_log_level,
         default_text="INFO", metavar="LEVEL"),
    Flag("log-prefix", "str", "[nsqlookupd] ", "prefix of every log line",
         default_text='"[nsqlookupd] "', metavar="TEXT"),
    Flag("tcp-address", "str", "0.0.0.0:4160",
         "<addr>:<port> to listen on for TCP clients", validate=_check_address, metavar="ADDR"),
    Flag("tombstone-lifetime", "duration", 45.0,
         "how long a tombstoned producer stays tombstoned while its registration remains",
         validate=non_negative),
    Flag("verbose", "bool", False, "has no effect, use --log-level",
         deprecated="--verbose is deprecated and has no effect, use --log-level"),
    Flag("version", "bool", False, "print the version string and exit"),
]

# flags that are not settings of the running node
_NOT_OPTIONS = ("config", "verbose", "version")


split_address = split_host_port  # `host:port` -> (host, port); ValueError in Go's words


@dataclass
class Options:
    """The validated configuration of one nsqlookupd (durations in seconds)."""

    tcp_address: str = "0.0.0.0:4160"
    http_address: str = "0.0.0.0:4161"
    broadcast_address: str = _HOST
    inactive_producer_timeout: float = 300.0
    tombstone_lifetime: float = 45.0
    log_level: str = "info"
    log_prefix: str = "[nsqlookupd] "

    @classmethod
    def from_values(cls, values: Dict[str, Any]) -> "Options":
        """Build from `flags.resolve()` output (unknown keys are an error)."""
        kwargs = {k: v for k, v in values.items() if k not in _NOT_OPTIONS}
        try:
            opts = cls(**kwargs)
        except TypeError as e:
            raise FlagError(str(e)) from None
        opts.validate()
        return opts

    def validate(self) -> None:
        for name in ("tcp_address", "http_address"):
            problem = _check_address(getattr(self, name))
            if problem:
                raise FlagError("invalid value %r for --%s: %s"
                                % (getattr(self, name), name.replace("_", "-"), problem))
        problem = check_log_level(self.log_level)
        if problem:
            raise FlagError("invalid value %r for --log-level: %s" % (self.log_level, problem))

    @property
    def log_level_number(self) -> int:
        return parse_level(self.log_level)
