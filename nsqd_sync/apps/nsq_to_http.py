"""nsq_to_http: deliver each message of a topic/channel as an HTTP request.

    nsq_to_http --topic=events --lookupd-http-address=127.0.0.1:4161 --post=http://127.0.0.1:8080/events

NSQ's Go: `apps/nsq_to_http/`.  `--post` URLs get the body as the request
body (`--content-type`); `--get` URLs have their one `%s` replaced by the
query-escaped body.  With several URLs, `--mode` picks one per message
(`hostpool`, `round-robin` or `epsilon-greedy`, mostly the fastest; see
relay.py).  `-n` handler threads make requests in parallel.  A message is FIN'd only after a 2xx answer (200 for GET);
another status, a timeout or a connection error REQs it with the
consumer's backoff (go-nsq's: `default_requeue_delay` x attempts, at most
`max_requeue_delay`).  Unlike NSQ (go-nsq gives a message up and FINs it
after `max_attempts`, 5), a message that was not delivered is never FIN'd:
max_attempts defaults to 0 (unlimited); `--consumer-opt=max_attempts,N` is
the way to drop poison messages after N attempts.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote_plus

from .. import __version__, wire
from ..flags import Flag
from . import common
from .relay import MODES, Destinations, TimerMetrics, never_give_up

logger = logging.getLogger("nsqd_sync.apps.nsq_to_http")

PROG = "nsq_to_http"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def _sample(value: float) -> Optional[str]:
    return None if 0.0 <= value <= 1.0 else "--sample must be between 0.0 and 1.0"


FLAGS: List[Flag] = [
    common.version_flag(),
    common.topic_flag("nsq topic"),
    common.channel_flag("nsq_to_http", "nsq channel"),
    common.max_in_flight_flag(200),
    Flag("n", "int", 100, "number of concurrent publishers", metavar="N",
         validate=lambda v: None if v >= 1 else "must be at least 1"),
    Flag("mode", "str", "hostpool",
         "the upstream request mode options: round-robin, hostpool (default), epsilon-greedy",
         metavar="MODE", choices=MODES),
    Flag("sample", "float", 1.0, "% of messages to publish (float b/w 0 -> 1)", validate=_sample,
         default_text="1"),
    common.http_client_connect_timeout_flag(2.0),
    common.http_client_request_timeout_flag(20.0),
    Flag("status-every", "int", 250,
         "the # of requests between logging status (per handler), 0 disables"),
    Flag("content-type", "str", DEFAULT_CONTENT_TYPE, "the Content-Type used for POST requests",
         metavar="TYPE"),
    Flag("post", "strlist", [], "HTTP address to make a POST request to.  data will be in the body "
                                "(may be given multiple times)", metavar="URL"),
    Flag("header", "strlist", [], "Custom header for HTTP requests (may be given multiple times)",
         metavar="KEY:VALUE"),
    Flag("get", "strlist", [], "HTTP address to make a GET request to. '%s' will be printf replaced "
                               "with data (may be given multiple times)", metavar="URL"),
    common.nsqd_tcp_address_flag(),
    common.lookupd_http_address_flag(),
    common.consumer_opt_flag("option to passthrough to nsq.Consumer (may be given multiple times, "
                             "http://godoc.org/github.com/nsqio/go-nsq#Config); max_attempts defaults "
                             "to 0 (never give up): max_attempts,N drops a message after N attempts"),
]


def parse_headers(items: List[str]) -> Dict[str, str]:
    """`Key: value` pairs of --header (Go's parseCustomHeaders)."""
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise common.UsageError("--header value format should be 'key=value'")
        out[key] = value
    return out


class PublishError(Exception):
    """A request that did not get the answer that counts as delivered."""


class NSQToHTTP(common.App):
    """One consumer with -n handler threads, each making one request per message."""

    PROG = PROG
    FLAGS = FLAGS
    HELP = "nsq_to_http: make an HTTP request (GET or POST) for every message of an NSQ topic."
    STOP_TIMEOUT = 30.0

    def __init__(self, values: Dict[str, Any]) -> None:
        super().__init__(values)
        self.headers: Dict[str, str] = {}
        self.consumer: Any = None
        self.http: Any = None
        self.get_mode = False
        self.addresses: List[str] = []
        self.destinations: Optional[Destinations] = None
        self.per_address: Dict[str, TimerMetrics] = {}
        self.aggregate = TimerMetrics(values["status_every"], "[aggregate]:")

    def check(self) -> None:
        v = self.values
        if v["header"]:
            self.headers = parse_headers(v["header"])
        if not v["topic"] or not v["channel"]:
            raise common.UsageError("--topic and --channel are required")
        if not wire.is_valid_topic_name(v["topic"]):
            raise common.UsageError("--topic is invalid")
        if not wire.is_valid_channel_name(v["channel"]):
            raise common.UsageError("--channel is invalid")
        if v["content_type"] != DEFAULT_CONTENT_TYPE:
            if not v["post"]:
                raise common.UsageError("--content-type only used with --post")
            if not v["content_type"]:
                raise common.UsageError("--content-type requires a value when used")
        common.require_sources(v)
        if not v["get"] and not v["post"]:
            raise common.UsageError("--get or --post required")
        if v["get"] and v["post"]:
            raise common.UsageError("use --get or --post not both")
        for url in v["get"]:
            if url.count("%s") != 1:
                raise common.UsageError("invalid GET address - must be a printf string")
        self.get_mode = bool(v["get"])
        self.addresses = list(v["get"] or v["post"])
        self.destinations = Destinations(self.addresses, v["mode"])
        if len(self.addresses) == 1:
            self.per_address = {self.addresses[0]: TimerMetrics(0, "")}
        else:
            self.per_address = {a: TimerMetrics(v["status_every"], "[%s]:" % a) for a in self.addresses}

    # ------------------------------------------------------------ requests

    def publish(self, address: str, body: bytes) -> None:
        """One request; raises PublishError unless it counts as delivered."""
        from ..http_client import HTTPClientError

        headers = {"User-Agent": "%s v%s" % (PROG, __version__)}
        if self.get_mode:
            url = address.replace("%s", quote_plus(body, safe=""), 1)
            method, data = "GET", None
        else:
            url, method, data = address, "POST", body
            headers["Content-Type"] = self.values["content_type"]
        headers.update(self.headers)
        try:
            resp = self.http.request(method, url, data=data, headers=headers, allow_redirects=True)
        except HTTPClientError as e:
            raise PublishError(str(e)) from None
        status = resp.status_code
        resp.close()
        ok = status == 200 if self.get_mode else 200 <= status < 300
        if not ok:
            raise PublishError("%s %s - got status code %d" % (method, address, status))

    def handle(self, msg: Any) -> Optional[bool]:
        sample = self.values["sample"]
        if sample < 1.0 and random.random() > sample:
            return None
        assert self.destinations is not None
        start = time.monotonic()
        address = self.destinations.get()
        try:
            self.publish(address, msg.body)
        except PublishError as e:
            self.destinations.mark(address, False)
            logger.warning("[%s/%s] message %s (attempt %d): %s", self.values["topic"],
                           self.values["channel"], msg.id.decode("ascii", "replace"), msg.attempts, e)
            return False
        self.destinations.mark(address, True, time.monotonic() - start)
        self.per_address[address].status(start)
        self.aggregate.status(start)
        return None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from ..http_client import HTTPClient

        v = self.values
        self.http = HTTPClient(v["http_client_connect_timeout"], v["http_client_request_timeout"],
                               pool_size=max(10, v["n"]))
        self.consumer = common.make_consumer(v, PROG, v["topic"], v["channel"], self.handle,
                                             concurrency=v["n"], **never_give_up(v))
        self.consumer.start()

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop(self.STOP_TIMEOUT)
        if self.http is not None:
            self.http.close()


main = NSQToHTTP.main

if __name__ == "__main__":  # pragma: no cover
    main()
