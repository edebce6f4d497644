"""What every nsq_* utility shares: flags, go-nsq client options, the run skeleton.

How a tool uses it (see nsq_tail.py for a complete one)::

    FLAGS = [common.topic_flag(), common.channel_flag(""), ...,
             common.max_in_flight_flag(200), common.consumer_opt_flag(), common.version_flag()]

    class NSQTail(common.App):
        PROG, FLAGS, HELP = "nsq_tail", FLAGS, "..."

        def check(self):                 # bad flag combinations: raise UsageError (one line, exit 2)
            common.require_sources(self.values)
        def start(self):                 # build consumers/producers, start threads; never blocks
            self.consumer = common.make_consumer(self.values, PROG, topic, channel, handler).start()
        def stop(self):                  # SIGINT/SIGTERM or finish(): stop cleanly, requeue in-flight
            self.consumer.stop()

    main = NSQTail.main                  # console script; `python -m nsqd_sync.apps.nsq_tail` too

`App.main` parses Go-style flags (nsqd_sync.flags), answers `--version`,
blocks signals before any thread exists (nsqd_sync.signals), sets up NSQ's
log format (nsqd_sync.logs), runs `check()` and `start()`, then waits with
`sigwait` in the main thread until SIGINT/SIGTERM or until the work calls
`self.finish(code)`; then `stop()` runs in the main thread and the process
exits with the code (0 after a signal).  Work threads are started with
`self.spawn(fn, name)`: an exception escaping one is logged and ends the
tool with exit 1.

A new tool is registered in `apps.TOOLS` (command -> module), gets a console
script in setup.cfg and a man page man/TOOL.1 whose OPTIONS block is
generated from FLAGS (`python -m nsqd_sync.flags nsqd_sync.apps.TOOL:FLAGS
man/TOOL.1`); tests/unit/test_apps_flags.py checks that block and that every
flag of the real 1.3.0 tool (its REAL_FLAGS entry) exists with its default.

`--consumer-opt` / `--producer-opt` take go-nsq's `key,value` pairs; the
keys that nsq-sync's client supports are in CLIENT_OPTIONS, mapped onto the
keyword arguments of `Consumer` / `Producer`.  An unknown key is refused with
go-nsq's "invalid option" text, a key go-nsq has but nsq-sync's client does
not with "not supported", both as one line and exit 2.
"""
from __future__ import annotations

import logging
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import click

from .. import flags, logs, signals
from ..addresses import split_host_port
from ..flags import Flag, FlagError
from ..durations import format_duration, parse_duration

__all__ = [
    "App", "UsageError", "CLIENT_OPTIONS", "parse_client_opts", "client_kwargs",
    "make_consumer", "make_producer", "make_http_client", "user_agent",
    "nsqd_tcp_address_flag", "lookupd_http_address_flag", "topic_flag", "topic_list_flag",
    "channel_flag", "max_in_flight_flag", "consumer_opt_flag", "producer_opt_flag",
    "http_client_connect_timeout_flag", "http_client_request_timeout_flag", "version_flag",
    "log_level_flag", "log_prefix_flag", "require_sources", "check_http_addresses",
]

logger = logging.getLogger("nsqd_sync.apps")

UsageError = FlagError  # raised by App.check(): "PROG: message (see PROG --help)", exit 2


# ---------------------------------------------------------------- shared flags
# Each returns a fresh Flag with NSQ's name and help; the tool passes its own default.

def nsqd_tcp_address_flag(help: str = "nsqd TCP address (may be given multiple times)") -> Flag:
    return Flag("nsqd-tcp-address", "strlist", [], help, metavar="ADDR")


def lookupd_http_address_flag(help: str = "lookupd HTTP address (may be given multiple times)") -> Flag:
    return Flag("lookupd-http-address", "strlist", [], help, metavar="ADDR")


def topic_flag(help: str = "NSQ topic", default: str = "") -> Flag:
    """A single --topic (nsq_to_http, to_nsq, nsq_stat)."""
    return Flag("topic", "str", default, help, metavar="TOPIC")


def topic_list_flag(help: str = "NSQ topic (may be given multiple times)") -> Flag:
    """A repeatable --topic (nsq_tail, nsq_to_file, nsq_to_nsq)."""
    return Flag("topic", "strlist", [], help, metavar="TOPIC")


def channel_flag(default: str, help: str = "NSQ channel", default_text: Optional[str] = None) -> Flag:
    return Flag("channel", "str", default, help, metavar="CHANNEL", default_text=default_text)


def max_in_flight_flag(default: int = 200) -> Flag:
    return Flag("max-in-flight", "int", default, "max number of messages to allow in flight",
                validate=flags.non_negative)


def _opts_validator(role: str) -> Callable[[Union[str, List[str]]], Optional[str]]:
    def validate(items: Union[str, List[str]]) -> Optional[str]:
        # click checks a repeatable flag one value at a time; a config file gives a list
        try:
            parse_client_opts([items] if isinstance(items, str) else items, role)
        except FlagError as e:
            return str(e)
        return None
    return validate


def consumer_opt_flag(help: str = "option to passthrough to nsq.Consumer (may be given multiple times, "
                                  "http://godoc.org/github.com/nsqio/go-nsq#Config)") -> Flag:
    return Flag("consumer-opt", "strlist", [], help, metavar="KEY,VALUE", validate=_opts_validator("consumer"))


def producer_opt_flag(help: str = "option to passthrough to nsq.Producer (may be given multiple times, "
                                  "http://godoc.org/github.com/nsqio/go-nsq#Config)") -> Flag:
    return Flag("producer-opt", "strlist", [], help, metavar="KEY,VALUE", validate=_opts_validator("producer"))


def http_client_connect_timeout_flag(default: float = 2.0) -> Flag:
    return Flag("http-client-connect-timeout", "duration", default, "timeout for HTTP connect",
                validate=flags.positive)


def http_client_request_timeout_flag(default: float = 5.0) -> Flag:
    return Flag("http-client-request-timeout", "duration", default, "timeout for HTTP request",
                validate=flags.positive)


def version_flag(help: str = "print version string") -> Flag:
    return Flag("version", "bool", False, help)


def log_level_flag() -> Flag:
    return Flag("log-level", "str", "info", "set log verbosity: debug, info, warn, error, or fatal",
                validate=flags.check_log_level)


def log_prefix_flag(prog: str) -> Flag:
    return Flag("log-prefix", "str", "[%s] " % prog, "log message prefix")


def require_sources(values: Dict[str, Any], tcp_key: str = "nsqd_tcp_address",
                    tcp_flag: str = "--nsqd-tcp-address") -> None:
    """NSQ's rule for consumers: nsqd addresses or lookupd addresses, one of them, not both."""
    if not values[tcp_key] and not values["lookupd_http_address"]:
        raise UsageError("%s or --lookupd-http-address required" % tcp_flag)
    if values[tcp_key] and values["lookupd_http_address"]:
        raise UsageError("use %s or --lookupd-http-address not both" % tcp_flag)
    for addr in values[tcp_key]:
        _check_host_port(addr, tcp_flag)
    check_http_addresses(values["lookupd_http_address"], "--lookupd-http-address")


def check_http_addresses(addrs: Sequence[str], flag: str) -> None:
    for addr in addrs:
        if addr.startswith("http"):
            raise UsageError("%s error - address should not contain scheme" % flag)
        _check_host_port(addr, flag)


def _check_host_port(addr: str, flag: str) -> None:
    try:
        split_host_port(addr)
    except ValueError as e:
        raise UsageError("invalid %s %r: %s" % (flag, addr, e)) from None


# ---------------------------------------------------------------- go-nsq options

@dataclass(frozen=True)
class ClientOption:
    """One go-nsq Config option nsq-sync's client supports."""

    kind: str  # duration | int | float | bool | str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    consumer: Optional[str] = None  # keyword of Consumer(...)
    producer: Optional[str] = None  # keyword of Producer(...)


def _both(kind: str, kw: str, minimum: Optional[float] = None, maximum: Optional[float] = None) -> ClientOption:
    return ClientOption(kind, minimum, maximum, kw, kw)


def _cons(kind: str, kw: str, minimum: Optional[float] = None, maximum: Optional[float] = None) -> ClientOption:
    return ClientOption(kind, minimum, maximum, kw, None)


#: go-nsq Config name -> how nsq-sync's client takes it (ranges as go-nsq's struct tags)
CLIENT_OPTIONS: Dict[str, ClientOption] = {
    "dial_timeout": _both("duration", "connect_timeout"),
    "read_timeout": _both("duration", "read_timeout", 0.1, 300.0),
    "lookupd_poll_interval": _cons("duration", "lookupd_poll_interval", 0.01, 300.0),
    "lookupd_poll_jitter": _cons("float", "lookupd_poll_jitter", 0.0, 1.0),
    "lookupd_poll_timeout": _cons("duration", "lookupd_request_timeout"),
    "max_requeue_delay": _cons("duration", "max_requeue_delay", 0.0, 3600.0),
    "default_requeue_delay": _cons("duration", "requeue_delay", 0.0, 3600.0),
    "max_backoff_duration": _cons("duration", "max_backoff_duration", 0.0, 3600.0),
    "backoff_multiplier": _cons("duration", "backoff_multiplier", 0.0, 3600.0),
    "max_attempts": _cons("uint", "max_attempts", 0, 65535),
    "low_rdy_idle_timeout": _cons("duration", "low_rdy_idle_timeout", 1.0, 300.0),
    "rdy_redistribute_interval": _cons("duration", "rdy_redistribute_interval", 0.001, 5.0),
    "client_id": _both("str", "client_id"),
    "hostname": _both("str", "hostname"),
    "user_agent": _both("str", "user_agent"),
    "heartbeat_interval": _both("duration", "heartbeat_interval"),
    "sample_rate": _cons("int", "sample_rate", 0, 99),
    "tls_v1": _both("bool", "tls_v1"),
    "tls_root_ca_file": _both("str", "tls_root_ca_file"),
    "tls_insecure_skip_verify": _both("bool", "tls_insecure_skip_verify"),
    "tls_cert": _both("str", "tls_cert"),
    "tls_key": _both("str", "tls_key"),
    "tls_min_version": _both("str", "tls_min_version"),
    "deflate": _both("bool", "deflate"),
    "deflate_level": _both("int", "deflate_level", 1, 9),
    "snappy": _both("bool", "snappy"),
    "output_buffer_size": _both("int", "output_buffer_size"),
    "output_buffer_timeout": _both("duration", "output_buffer_timeout"),
    "max_in_flight": _cons("int", "max_in_flight", 0),
    "msg_timeout": _both("duration", "msg_timeout", 0.0),
    "auth_secret": _both("str", "auth_secret"),
}

#: go-nsq Config names nsq-sync's client has no equivalent for
UNSUPPORTED_OPTIONS = ("write_timeout", "local_addr", "backoff_strategy", "low_rdy_timeout",
                       "topology_region", "topology_zone", "tls_config", "max_msg_size",
                       "skip_lookupd_authorization")

_TLS_VERSIONS = {"ssl3.0": ssl.TLSVersion.SSLv3, "tls1.0": ssl.TLSVersion.TLSv1,
                 "tls1.1": ssl.TLSVersion.TLSv1_1, "tls1.2": ssl.TLSVersion.TLSv1_2}
_TLS_KEYS = ("tls_root_ca_file", "tls_insecure_skip_verify", "tls_cert", "tls_key", "tls_min_version")


def _coerce(key: str, spec: ClientOption, text: str) -> Any:
    try:
        if spec.kind == "duration":
            value: Any = parse_duration(text)
        elif spec.kind == "int":
            value = int(text, 10)
        elif spec.kind == "uint":
            if text.strip().startswith("-"):
                raise ValueError("invalid syntax")
            value = int(text, 10)
        elif spec.kind == "float":
            value = float(text)
        elif spec.kind == "bool":
            value = flags.parse_bool(text)
        else:
            value = text
    except ValueError as e:
        raise FlagError("failed to coerce option %s (%s) - %s" % (key, text, e)) from None
    if spec.kind == "str" and key == "tls_min_version" and value not in _TLS_VERSIONS:
        raise FlagError("unknown tls_min_version %s" % value)
    shown = format_duration if spec.kind == "duration" else str
    if spec.minimum is not None and value < spec.minimum:
        raise FlagError("invalid %s ! %s < %s" % (key, shown(value), shown(spec.minimum)))
    if spec.maximum is not None and value > spec.maximum:
        raise FlagError("invalid %s ! %s > %s" % (key, shown(value), shown(spec.maximum)))
    return value


def parse_client_opts(items: Sequence[str], role: str) -> Dict[str, Any]:
    """go-nsq's ConfigFlag: `key,value` (or `key` alone: true) -> {go-nsq name: value}.

    role is "consumer" or "producer"; a consumer-only key (max_in_flight,
    max_attempts, ...) given to a producer is accepted and has no effect, as
    in go-nsq, whose Producer ignores those fields of its Config.  Raises
    FlagError with go-nsq's text ("invalid option foo", "invalid max_attempts ! ...").
    """
    out: Dict[str, Any] = {}
    for item in items:
        key, value = parse_client_opt(item)
        out[key] = value
    return out


def parse_client_opt(item: str) -> Tuple[str, Any]:
    """One `key,value` pair -> (go-nsq name, value); FlagError with go-nsq's reason."""
    key, sep, text = item.partition(",")
    key = key.replace("-", "_")
    spec = CLIENT_OPTIONS.get(key)
    if spec is None:
        if key in UNSUPPORTED_OPTIONS:
            raise FlagError("option %s is not supported by nsq-sync's client" % key)
        raise FlagError("invalid option %s" % key)
    return key, _coerce(key, spec, text if sep else "true")


def tls_context_from(opts: Dict[str, Any]) -> Optional[ssl.SSLContext]:
    """An SSLContext from go-nsq's tls_* options, or None when none of them is set."""
    if not any(k in opts for k in _TLS_KEYS):
        return None
    ctx = ssl.create_default_context(cafile=opts.get("tls_root_ca_file"))
    if opts.get("tls_insecure_skip_verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.get("tls_cert") or opts.get("tls_key"):
        ctx.load_cert_chain(opts.get("tls_cert") or opts.get("tls_key"), opts.get("tls_key"))
    ctx.minimum_version = _TLS_VERSIONS.get(opts.get("tls_min_version", "tls1.0"), ssl.TLSVersion.TLSv1)
    return ctx


def client_kwargs(opts: Dict[str, Any], role: str) -> Dict[str, Any]:
    """Keyword arguments for Consumer (role "consumer") or Producer from parsed go-nsq options."""
    out: Dict[str, Any] = {}
    for key, value in opts.items():
        if key in _TLS_KEYS:
            continue
        kw = getattr(CLIENT_OPTIONS[key], role)
        if kw is not None:
            out[kw] = value
    try:
        ctx = tls_context_from(opts)
    except (OSError, ssl.SSLError) as e:
        raise FlagError("cannot set up TLS from the %s options: %s" % (role, e)) from None
    if ctx is not None:
        out["tls_context"] = ctx
        out["tls_v1"] = True
    return out


def user_agent(prog: str) -> str:
    from .. import __version__

    return "%s/%s nsq-sync/%s" % (prog, __version__, __version__)


def make_consumer(values: Dict[str, Any], prog: str, topic: str, channel: str,
                  handler: Callable[[Any], Optional[bool]], **overrides: Any) -> Any:
    """A Consumer for topic/channel from the tool's flags (addresses, --max-in-flight,
    --consumer-opt); go-nsq's defaults where they differ from the library's
    (max_attempts 5); overrides win over everything."""
    from ..client import Consumer

    kwargs: Dict[str, Any] = {"max_attempts": 5, "user_agent": user_agent(prog)}
    kwargs.update(client_kwargs(parse_client_opts(values.get("consumer_opt", []), "consumer"), "consumer"))
    if "max_in_flight" in values:
        kwargs["max_in_flight"] = values["max_in_flight"]
    kwargs.update(overrides)
    return Consumer(topic, channel, handler,
                    nsqd_tcp_addresses=values.get("nsqd_tcp_address", []),
                    lookupd_http_addresses=values.get("lookupd_http_address", []), **kwargs)


def make_producer(values: Dict[str, Any], prog: str, address: str, **overrides: Any) -> Any:
    """A Producer for one nsqd address from the tool's --producer-opt flags."""
    from ..client import Producer

    kwargs: Dict[str, Any] = {"user_agent": user_agent(prog)}
    kwargs.update(client_kwargs(parse_client_opts(values.get("producer_opt", []), "producer"), "producer"))
    kwargs.update(overrides)
    return Producer(address, **kwargs)


def make_http_client(values: Dict[str, Any]) -> Any:
    """The shared HTTP client with the tool's --http-client-*-timeout flags."""
    from ..http_client import HTTPClient

    return HTTPClient(values.get("http_client_connect_timeout", 2.0),
                      values.get("http_client_request_timeout", 5.0))


# ---------------------------------------------------------------- the run skeleton

class App:
    """One run of a tool: subclasses set PROG, FLAGS, HELP and write check/start/stop."""

    PROG: str = ""
    FLAGS: List[Flag] = []
    HELP: str = ""
    #: shutdown budget for stop(): in-flight messages are finished or requeued within it
    STOP_TIMEOUT: float = 10.0
    #: the signals that stop the tool (blocked before any thread starts, taken with sigwait)
    STOP_SIGNALS: Tuple[int, ...] = tuple(signals.EXIT_SIGNALS)
    #: further signals the tool acts on without stopping (nsq_to_file: SIGHUP); see signalled()
    OTHER_SIGNALS: Tuple[int, ...] = ()

    def __init__(self, values: Dict[str, Any]) -> None:
        self.values = values
        self.exit_code = 0
        self._finished = False
        self._finish_lock = threading.Lock()
        self._threads: List[threading.Thread] = []

    # -------------------------------------------------------- written by each tool

    def check(self) -> None:
        """Refuse bad flag combinations with UsageError (one line, exit 2)."""

    def start(self) -> None:
        """Start the work (threads, consumers) and return."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop cleanly: finish or requeue in-flight work, close files and connections."""

    def signalled(self, signum: int) -> None:
        """One of OTHER_SIGNALS arrived (called in the main thread, no lock held)."""

    # -------------------------------------------------------- for the tool's threads

    def finish(self, code: int = 0, reason: Optional[str] = None) -> None:
        """The work is over (from any thread): main wakes, calls stop() and exits with code.

        The first call decides the exit code; reason is logged (as an error if code != 0).
        """
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
            self.exit_code = code
        if reason:
            (logger.error if code else logger.info)("%s", reason)
        signals.send_self(signal.SIGTERM)

    @property
    def finished(self) -> bool:
        return self._finished

    def spawn(self, target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
        """Start a named daemon thread; an exception escaping it ends the tool with exit 1."""

        def run() -> None:
            try:
                target(*args)
            except Exception as e:  # the boundary of a work thread: log it, end the tool
                logger.exception("%s: %s failed", self.PROG, name)
                self.finish(1, "%s failed: %s" % (name, e))

        t = threading.Thread(target=run, name="%s-%s" % (self.PROG, name), daemon=True)
        self._threads.append(t)
        t.start()
        return t

    # -------------------------------------------------------- the command

    @classmethod
    def setup_logging(cls, values: Dict[str, Any]) -> None:
        prefix = values.get("log_prefix", "[%s] " % cls.PROG)
        level = logs.parse_level(values.get("log_level", "info"))
        logs.setup(prefix, level)

    @classmethod
    def run(cls, raw: Dict[str, Any]) -> int:
        """Run with raw click values; returns the exit code."""
        spec = next((f for f in cls.FLAGS if f.name == "version"), None)
        if spec is not None and raw.get("version") is not None and spec.convert(raw["version"], "--version"):
            sys.stdout.write(flags.version_line(cls.PROG) + "\n")
            sys.stdout.flush()
            return 0
        values = flags.resolve(cls.FLAGS, raw, {}, flags.warn_stderr(cls.PROG))
        app = cls(values)
        app.check()
        stop_signals = cls.STOP_SIGNALS
        handled = tuple(stop_signals) + tuple(cls.OTHER_SIGNALS)

        def on_signal(signum: int) -> bool:
            if signum in stop_signals:
                return True
            app.signalled(signum)
            return False

        previous = signals.block_signals(handled)
        try:
            cls.setup_logging(values)
            app.start()
            signals.wait_for_signal(on_signal, handled)
            with app._finish_lock:
                app._finished = True  # a finish() from here on changes nothing and sends nothing
            app.stop()
        finally:
            while set(signal.sigpending()) & set(handled):
                signal.sigwait(handled)  # don't let a late one kill us on unblock
            signals.unblock_signals(previous, handled)
        return app.exit_code

    @classmethod
    def command(cls) -> click.Command:
        @click.command(name=cls.PROG, help=cls.HELP,
                       context_settings={"help_option_names": ["--help"], "max_content_width": 100})
        @flags.click_options(cls.FLAGS)
        def command(**raw: Any) -> None:
            code = cls.run(raw)
            sys.stdout.flush()
            sys.exit(code)

        return command

    @classmethod
    def main(cls, argv: Optional[Sequence[str]] = None) -> None:
        """Console-script entry point (Go-style flags accepted)."""
        flags.run_command(cls.command(), cls.PROG, cls.FLAGS, argv)

