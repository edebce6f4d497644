"""Every nsqd option: name, default, parsing and validation, in one place.

The flag list mirrors `nsqd --help` of NSQ 1.3.0 (names, defaults, config
file keys).  `Options.from_values()` turns the merged command line / config
file values into one validated object that is passed down to every part of
the node; no other module reads flags or the environment.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import go_quote
from .addresses import split_host_port
from .flags import Flag, FlagError, default_hostname, check_log_level, non_negative, positive


def _hostname_node_id() -> int:
    """NSQ's default node id: a hash of the hostname, in [0, 1024)."""
    digest = hashlib.md5(default_hostname().encode()).digest()
    return int.from_bytes(digest[:4], "little") % 1024


def _node_id(value: int) -> Optional[str]:
    return None if 0 <= value < 1024 else "must be in range [0,1024)"


def _deflate_level(value: int) -> Optional[str]:
    return None if 1 <= value <= 9 else "must be in range [1,9]"


#: what nsqd 1.3.0's tlsMinVersionOption takes (any case; "" keeps the default). It
#: lists ssl3.0 in its help but refuses it, as an insecure protocol: so do we.
TLS_MIN_VERSIONS = ("tls1.0", "tls1.1", "tls1.2", "tls1.3")


def _tls_min_version(value: str) -> Optional[str]:
    if value == "" or value.lower() in TLS_MIN_VERSIONS:
        return None
    return "unknown tlsVersionOption %s (tls1.0, tls1.1, tls1.2 or tls1.3)" % go_quote(value)


def _percentiles(values: List[float]) -> Optional[str]:
    for v in values:
        if not 0 < v <= 1.0:
            return "percentiles must be in range (0, 1.0]"
    return None


_HOST = default_hostname()

FLAGS: List[Flag] = [
    Flag("auth-http-address", "strlist", [],
         "<addr>:<port> or a full url to query auth server (may be given multiple times)",
         cfg="auth_http_addresses", metavar="ADDR"),
    Flag("auth-http-request-method", "str", "get",
         "HTTP method to use for the auth server request: get or post", choices=("get", "post")),
    Flag("broadcast-address", "str", _HOST,
         "address that will be registered with lookupd (defaults to the OS hostname)",
         default_text="OS hostname"),
    Flag("broadcast-http-port", "int", 0,
         "HTTP port that will be registered with lookupd (defaults to the HTTP port that this nsqd is listening on)",
         validate=non_negative),
    Flag("broadcast-tcp-port", "int", 0,
         "TCP port that will be registered with lookupd (defaults to the TCP port that this nsqd is listening on)",
         validate=non_negative),
    Flag("config", "str", "", "path to config file", metavar="FILE"),
    Flag("data-path", "str", "", "path to store disk-backed messages (default: the current directory)",
         metavar="PATH"),
    Flag("deflate", "bool", True, "enable deflate feature negotiation (client compression)"),
    Flag("e2e-processing-latency-percentile", "floatlist", [],
         "message processing time percentiles (as float (0, 1.0]) to track "
         "(can be specified multiple times or comma separated '1.0,0.99,0.95', default none)",
         cfg="e2e_processing_latency_percentiles", validate=_percentiles, metavar="FLOAT"),
    Flag("e2e-processing-latency-window-time", "duration", 600.0,
         "calculate end to end latency quantiles for this duration of time "
         "(ie: 60s would only show quantile calculations from the past 60 seconds)", validate=positive),
    Flag("http-address", "str", "0.0.0.0:4151", "<addr>:<port> to listen on for HTTP clients"),
    Flag("http-client-connect-timeout", "duration", 2.0, "timeout for HTTP connect", validate=positive),
    Flag("http-client-request-timeout", "duration", 5.0, "timeout for HTTP request", validate=positive),
    Flag("https-address", "str", "0.0.0.0:4152", "<addr>:<port> to listen on for HTTPS clients"),
    Flag("log-level", "str", "info", "set log verbosity: debug, info, warn, error, or fatal",
         validate=check_log_level),
    Flag("log-prefix", "str", "[nsqd] ", "log message prefix"),
    Flag("lookupd-tcp-address", "strlist", [], "lookupd TCP address (may be given multiple times)",
         cfg="nsqlookupd_tcp_addresses", metavar="ADDR"),
    Flag("max-body-size", "int", 5242880, "maximum size of a single command body", validate=positive),
    Flag("max-bytes-per-file", "int", 104857600, "number of bytes per diskqueue file before rolling",
         validate=positive),
    Flag("max-channel-consumers", "int", 0,
         "maximum channel consumer connection count per nsqd instance (0 means unlimited)",
         validate=non_negative),
    Flag("max-deflate-level", "int", 6,
         "max deflate compression level a client can negotiate (> values == > nsqd CPU usage)",
         validate=_deflate_level),
    Flag("max-heartbeat-interval", "duration", 60.0,
         "maximum client configurable duration of time between client heartbeats", validate=positive),
    Flag("max-msg-size", "int", 1048576, "maximum size of a single message in bytes", validate=positive),
    Flag("max-msg-timeout", "duration", 900.0, "maximum duration before a message will timeout",
         validate=positive),
    Flag("max-output-buffer-size", "int", 65536,
         "maximum client configurable size (in bytes) for a client output buffer", validate=positive),
    Flag("max-output-buffer-timeout", "duration", 30.0,
         "maximum client configurable duration of time between flushing to a client", validate=positive),
    Flag("max-rdy-count", "int", 2500, "maximum RDY count for a client"),  # any int64, as nsqd
    Flag("max-req-timeout", "duration", 3600.0, "maximum requeuing timeout for a message",
         validate=non_negative),
    # any int64, as nsqd's parser; below 0 means 0 (no memory queue: nsqd 1.3.0 panics on it)
    Flag("mem-queue-size", "int", 10000, "number of messages to keep in memory (per topic/channel)"),
    Flag("min-output-buffer-timeout", "duration", 0.025,
         "minimum client configurable duration of time between flushing to a client",
         validate=non_negative),
    Flag("msg-timeout", "duration", 60.0, "default duration to wait before auto-requeing a message",
         validate=positive),
    Flag("node-id", "int", _hostname_node_id(),
         "unique part for message IDs, (int) in range [0,1024) (default is hash of hostname)",
         validate=_node_id, default_text="hash of hostname"),
    Flag("output-buffer-timeout", "duration", 0.25,
         "default duration of time between flushing data to clients", validate=non_negative),
    Flag("queue-scan-selection-count", "int", 20,
         "accepted for compatibility: nsq-sync scans every channel with its own timer thread",
         validate=positive),
    Flag("queue-scan-worker-pool-max", "int", 4,
         "accepted for compatibility: nsq-sync scans every channel with its own timer thread",
         validate=positive),
    Flag("snappy", "bool", True, "enable snappy feature negotiation (client compression)"),
    Flag("statsd-address", "str", "", "UDP <addr>:<port> of a statsd daemon for pushing stats"),
    Flag("statsd-exclude-ephemeral", "bool", False,
         "Skip ephemeral topics and channels when sending stats to statsd"),
    Flag("statsd-interval", "duration", 60.0, "duration between pushing to statsd", validate=positive),
    Flag("statsd-mem-stats", "bool", True, "toggle sending memory and GC stats to statsd"),
    Flag("statsd-prefix", "str", "nsq.%s", "prefix used for keys sent to statsd (%s for host replacement)"),
    Flag("statsd-udp-packet-size", "int", 508, "the size in bytes of statsd UDP packets",
         validate=positive),
    Flag("sync-every", "int", 2500, "number of messages per diskqueue fsync", validate=positive),
    Flag("sync-timeout", "duration", 2.0, "duration of time per diskqueue fsync", validate=positive),
    Flag("tcp-address", "str", "0.0.0.0:4150", "<addr>:<port> to listen on for TCP clients"),
    Flag("tls-cert", "str", "", "path to certificate file", metavar="FILE"),
    # free text as in nsqd: "require"/"require-verify" pick a policy, any other non-empty
    # value asks for no client certificate but still implies --tls-required
    Flag("tls-client-auth-policy", "str", "", "client certificate auth policy ('require' or 'require-verify')"),
    Flag("tls-key", "str", "", "path to key file", metavar="FILE"),
    Flag("tls-min-version", "str", "tls1.0",
         "minimum SSL/TLS version acceptable ('ssl3.0', 'tls1.0', 'tls1.1', 'tls1.2' or 'tls1.3')",
         validate=_tls_min_version),
    Flag("tls-required", "bool", False, "require TLS for client connections (true, false, tcp-https)",
         extra_bool_values=("tcp-https",)),
    Flag("tls-root-ca-file", "str", "", "path to certificate authority file", metavar="FILE"),
    Flag("verbose", "bool", False, "has no effect, use --log-level",
         deprecated="--verbose is deprecated and has no effect, use --log-level"),
    Flag("version", "bool", False, "print version string"),
    Flag("worker-id", "bool", False, "use --node-id",
         deprecated="--worker-id is deprecated and has no effect, use --node-id"),
]


def split_address(addr: str, flag: str) -> "tuple[str, int]":
    """'host:port' -> (host, port); '[::1]:4150' works; a bad address is a FlagError."""
    try:
        return split_host_port(addr)
    except ValueError as e:
        raise FlagError("invalid value %r for --%s: %s" % (addr, flag, e)) from None


@dataclass
class Options:
    """The validated configuration of one nsqd node (times in seconds)."""

    tcp_address: str = "0.0.0.0:4150"
    http_address: str = "0.0.0.0:4151"
    https_address: str = "0.0.0.0:4152"
    broadcast_address: str = _HOST
    broadcast_tcp_port: int = 0
    broadcast_http_port: int = 0
    lookupd_tcp_addresses: List[str] = field(default_factory=list)
    data_path: str = ""
    mem_queue_size: int = 10000
    max_bytes_per_file: int = 104857600
    sync_every: int = 2500
    sync_timeout: float = 2.0
    max_msg_size: int = 1048576
    max_body_size: int = 5242880
    msg_timeout: float = 60.0
    max_msg_timeout: float = 900.0
    max_req_timeout: float = 3600.0
    max_rdy_count: int = 2500
    max_heartbeat_interval: float = 60.0
    max_output_buffer_size: int = 65536
    max_output_buffer_timeout: float = 30.0
    min_output_buffer_timeout: float = 0.025
    output_buffer_timeout: float = 0.25
    max_channel_consumers: int = 0
    node_id: int = 0
    log_level: str = "info"
    log_prefix: str = "[nsqd] "
    deflate: bool = True
    max_deflate_level: int = 6
    snappy: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    tls_root_ca_file: str = ""
    tls_client_auth_policy: str = ""
    tls_required: Any = False  # False, True or "tcp-https"
    tls_min_version: str = "tls1.0"
    auth_http_addresses: List[str] = field(default_factory=list)
    auth_http_request_method: str = "get"
    http_client_connect_timeout: float = 2.0
    http_client_request_timeout: float = 5.0
    statsd_address: str = ""
    statsd_prefix: str = "nsq.%s"
    statsd_interval: float = 60.0
    statsd_mem_stats: bool = True
    statsd_udp_packet_size: int = 508
    statsd_exclude_ephemeral: bool = False
    e2e_processing_latency_percentiles: List[float] = field(default_factory=list)
    e2e_processing_latency_window_time: float = 600.0
    queue_scan_selection_count: int = 20
    queue_scan_worker_pool_max: int = 4

    @classmethod
    def from_values(cls, values: Dict[str, Any]) -> "Options":
        """Build from `flags.resolve()` output (flag dest names), then cross-check."""
        names = {f.name for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
        kwargs = {}
        for key, value in values.items():
            key = {"lookupd_tcp_address": "lookupd_tcp_addresses",
                   "auth_http_address": "auth_http_addresses",
                   "e2e_processing_latency_percentile": "e2e_processing_latency_percentiles"}.get(key, key)
            if key in names:
                kwargs[key] = value
        opts = cls(**kwargs)
        opts.validate()
        return opts

    def validate(self) -> None:
        for flag, addr in (("tcp-address", self.tcp_address), ("http-address", self.http_address),
                           ("https-address", self.https_address)):
            split_address(addr, flag)
        for addr in self.lookupd_tcp_addresses:
            split_address(addr, "lookupd-tcp-address")
        if self.msg_timeout > self.max_msg_timeout:
            raise FlagError("--msg-timeout (%ss) must not exceed --max-msg-timeout (%ss)"
                            % (self.msg_timeout, self.max_msg_timeout))
        if self.max_msg_size > self.max_body_size:
            raise FlagError("--max-msg-size (%d) must not exceed --max-body-size (%d)"
                            % (self.max_msg_size, self.max_body_size))
        # nsqd's own normalizations: "" is the default, names in any case, negative queue = none
        self.tls_min_version = self.tls_min_version.lower() or "tls1.0"
        if self.mem_queue_size < 0:
            self.mem_queue_size = 0
        # --tls-required without a certificate is refused at start-up (exit 1), as nsqd does
        if bool(self.tls_cert) != bool(self.tls_key):
            raise FlagError("--tls-cert and --tls-key must be given together")

    @property
    def data_dir(self) -> str:
        return self.data_path or os.getcwd()
