"""Every nsqadmin option: name, default, parsing and validation, in one place.

The flag list mirrors `nsqadmin -h` of NSQ 1.3.0 (names, defaults, config
file keys), plus `--trend-interval` (nsq-sync's in-memory trends).
`Options.from_values()` turns the merged command line / config file values
into one validated object handed to `NSQAdmin`; no other module reads flags
or the environment.  `Options.config_value()` answers `GET /config/:opt`
with the value NSQ's reflection over its Options struct would give.
"""
from __future__ import annotations

import ipaddress
import posixpath
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from nsqd_sync.addresses import split_host_port
from nsqd_sync.flags import Flag, FlagError, check_log_level, non_negative, positive
from nsqd_sync.logs import parse_level


def _check_address(value: str) -> Optional[str]:
    try:
        split_host_port(value)
    except ValueError as e:
        return str(e)
    return None


FLAGS: List[Flag] = [
    Flag("acl-http-header", "str", "X-Forwarded-User",
         "HTTP header to check for authenticated admin users", metavar="HEADER"),
    Flag("admin-user", "strlist", [],
         "admin user (may be given multiple times; if specified, only these users will be able "
         "to perform privileged actions; acl-http-header is used to determine the authenticated user)",
         cfg="admin_users", metavar="USER"),
    Flag("allow-config-from-cidr", "str", "127.0.0.1/8",
         "A CIDR from which to allow HTTP requests to the /config endpoint", metavar="CIDR"),
    Flag("base-path", "str", "/", "URL base path", metavar="PATH"),
    Flag("config", "str", "", "path to config file", metavar="FILE"),
    Flag("dev-static-dir", "str", "", "(development use only; accepted and ignored)", metavar="DIR"),
    Flag("graphite-url", "str", "", "graphite HTTP address", metavar="URL"),
    Flag("http-address", "str", "0.0.0.0:4171",
         "<addr>:<port> to listen on for HTTP clients", validate=_check_address, metavar="ADDR"),
    Flag("http-client-connect-timeout", "duration", 2.0, "timeout for HTTP connect",
         validate=non_negative),
    Flag("http-client-request-timeout", "duration", 5.0, "timeout for HTTP request",
         validate=non_negative),
    Flag("http-client-tls-cert", "str", "", "path to certificate file for the HTTP client",
         metavar="FILE"),
    Flag("http-client-tls-insecure-skip-verify", "bool", False,
         "configure the HTTP client to skip verification of TLS certificates"),
    Flag("http-client-tls-key", "str", "", "path to key file for the HTTP client", metavar="FILE"),
    Flag("http-client-tls-root-ca-file", "str", "", "path to CA file for the HTTP client",
         metavar="FILE"),
    Flag("log-level", "str", "info", "set log verbosity: debug, info, warn, error, or fatal",
         validate=check_log_level, default_text="INFO", metavar="LEVEL"),
    Flag("log-prefix", "str", "[nsqadmin] ", "log message prefix",
         default_text='"[nsqadmin] "', metavar="TEXT"),
    Flag("lookupd-http-address", "strlist", [], "lookupd HTTP address (may be given multiple times)",
         cfg="nsqlookupd_http_addresses", validate=None, metavar="ADDR"),
    Flag("notification-http-endpoint", "str", "",
         "HTTP endpoint (fully qualified) to which POST notifications of admin actions will be sent",
         metavar="URL"),
    Flag("nsqd-http-address", "strlist", [], "nsqd HTTP address (may be given multiple times)",
         cfg="nsqd_http_addresses", metavar="ADDR"),
    Flag("proxy-graphite", "bool", False, "proxy HTTP requests to graphite"),
    Flag("statsd-counter-format", "str", "stats.counters.%s.count",
         "The counter stats key formatting applied by the implementation of statsd. "
         "If no formatting is desired, set this to an empty string.", metavar="FORMAT"),
    Flag("statsd-gauge-format", "str", "stats.gauges.%s",
         "The gauge stats key formatting applied by the implementation of statsd. "
         "If no formatting is desired, set this to an empty string.", metavar="FORMAT"),
    Flag("statsd-interval", "duration", 60.0,
         "time interval nsqd is configured to push to statsd (must match nsqd)", validate=non_negative),
    Flag("statsd-prefix", "str", "nsq.%s",
         "prefix used for keys sent to statsd (%s for host replacement, must match nsqd)",
         metavar="PREFIX"),
    Flag("trend-interval", "duration", 5.0,
         "nsq-sync: how often /stats is sampled for the in-memory trends (the last hour is kept)",
         validate=positive),
    Flag("verbose", "bool", False, "has no effect, use --log-level",
         deprecated="--verbose is deprecated and has no effect, use --log-level"),
    Flag("version", "bool", False, "print version string"),
]

# flags that are not settings of the running nsqadmin
_NOT_OPTIONS = ("config", "verbose", "version")

#: lg.LogLevel numbers, as /config/log_level answers them
LOG_LEVEL_NUMBERS = {"debug": 1, "info": 2, "warn": 3, "warning": 3, "error": 4, "fatal": 5}

#: option names GET /config/:opt knows (NSQ's Options fields with a `flag` tag)
CONFIG_NAMES = (
    "log_level", "log_prefix", "http_address", "base_path", "dev_static_dir", "graphite_url",
    "proxy_graphite", "statsd_prefix", "statsd_counter_format", "statsd_gauge_format",
    "statsd_interval", "nsqlookupd_http_addresses", "nsqd_http_addresses",
    "http_client_connect_timeout", "http_client_request_timeout",
    "http_client_tls_insecure_skip_verify", "http_client_tls_root_ca_file", "http_client_tls_cert",
    "http_client_tls_key", "allow_config_from_cidr", "notification_http_endpoint",
    "acl_http_header", "admin_users",
)
_DURATIONS = ("statsd_interval", "http_client_connect_timeout", "http_client_request_timeout")


def normalize_base_path(p: str) -> str:
    """NSQ's normalizeBasePath: a leading slash, cleaned ("" -> "/")."""
    if not p:
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    return posixpath.normpath(p).replace("//", "/")


@dataclass
class Options:
    """The validated configuration of one nsqadmin (durations in seconds)."""

    acl_http_header: str = "X-Forwarded-User"
    admin_user: List[str] = field(default_factory=list)
    allow_config_from_cidr: str = "127.0.0.1/8"
    base_path: str = "/"
    dev_static_dir: str = ""
    graphite_url: str = ""
    http_address: str = "0.0.0.0:4171"
    http_client_connect_timeout: float = 2.0
    http_client_request_timeout: float = 5.0
    http_client_tls_cert: str = ""
    http_client_tls_insecure_skip_verify: bool = False
    http_client_tls_key: str = ""
    http_client_tls_root_ca_file: str = ""
    log_level: str = "info"
    log_prefix: str = "[nsqadmin] "
    lookupd_http_address: List[str] = field(default_factory=list)
    notification_http_endpoint: str = ""
    nsqd_http_address: List[str] = field(default_factory=list)
    proxy_graphite: bool = False
    statsd_counter_format: str = "stats.counters.%s.count"
    statsd_gauge_format: str = "stats.gauges.%s"
    statsd_interval: float = 60.0
    statsd_prefix: str = "nsq.%s"
    trend_interval: float = 5.0

    @classmethod
    def from_values(cls, values: Dict[str, Any]) -> "Options":
        """Build from `flags.resolve()` output and validate as NSQ's nsqadmin.New does."""
        kwargs = {k: v for k, v in values.items() if k not in _NOT_OPTIONS}
        try:
            opts = cls(**kwargs)
        except TypeError as e:
            raise FlagError(str(e)) from None
        opts.validate()
        return opts

    def validate(self) -> None:
        """NSQ's checks, with NSQ's wording (reported as one line, exit 2)."""
        if not self.nsqd_http_address and not self.lookupd_http_address:
            raise FlagError("--nsqd-http-address or --lookupd-http-address required")
        if self.nsqd_http_address and self.lookupd_http_address:
            raise FlagError("use --nsqd-http-address or --lookupd-http-address not both")
        if self.http_client_tls_cert and not self.http_client_tls_key:
            raise FlagError("--http-client-tls-key must be specified with --http-client-tls-cert")
        if self.http_client_tls_key and not self.http_client_tls_cert:
            raise FlagError("--http-client-tls-cert must be specified with --http-client-tls-key")
        for name, addrs in (("--lookupd-http-address", self.lookupd_http_address),
                            ("--nsqd-http-address", self.nsqd_http_address)):
            for addr in addrs:
                problem = _check_address(addr)
                if problem:
                    raise FlagError("failed to resolve %s (%s) - %s" % (name, addr, problem))
        problem = _check_address(self.http_address)
        if problem:
            raise FlagError("invalid value %r for --http-address: %s" % (self.http_address, problem))
        if self.allow_config_from_cidr:
            try:
                ipaddress.ip_network(self.allow_config_from_cidr, strict=False)
            except ValueError as e:
                raise FlagError("failed to parse --allow-config-from-cidr (%s) - %s"
                                % (self.allow_config_from_cidr, e)) from None
        problem = check_log_level(self.log_level)
        if problem:
            raise FlagError("invalid value %r for --log-level: %s" % (self.log_level, problem))
        self.base_path = normalize_base_path(self.base_path)

    # ------------------------------------------------------------ derived values

    @property
    def log_level_number(self) -> int:
        return parse_level(self.log_level)

    @property
    def tls_verify(self) -> Any:
        """`requests`' verify: False, a CA file, or True."""
        if self.http_client_tls_insecure_skip_verify:
            return False
        return self.http_client_tls_root_ca_file or True

    @property
    def tls_cert(self) -> Optional[Tuple[str, str]]:
        if self.http_client_tls_cert:
            return (self.http_client_tls_cert, self.http_client_tls_key)
        return None

    def config_cidr(self) -> Optional[Any]:
        if not self.allow_config_from_cidr:
            return None
        return ipaddress.ip_network(self.allow_config_from_cidr, strict=False)

    def config_value(self, name: str) -> Tuple[bool, Any]:
        """(known, value) for GET /config/:opt, typed as NSQ's JSON answer.

        Durations are nanoseconds, the log level is lg.LogLevel's number, a
        list never given is [] (as the real nsqadmin answers).
        """
        if name not in CONFIG_NAMES:
            return False, None
        if name == "log_level":
            return True, LOG_LEVEL_NUMBERS[self.log_level.strip().lower()]
        if name == "nsqlookupd_http_addresses":
            return True, list(self.lookupd_http_address)
        if name == "nsqd_http_addresses":
            return True, list(self.nsqd_http_address)
        if name == "admin_users":
            return True, list(self.admin_user)
        value = getattr(self, name)
        if name in _DURATIONS:
            return True, int(round(value * 1e9))
        return True, value
