"""nsq_to_nsq: relay topics to other nsqd nodes, optionally filtering JSON messages.

    nsq_to_nsq --topic=events --lookupd-http-address=127.0.0.1:4161 \\
        --destination-nsqd-tcp-address=10.0.0.2:4150 --destination-topic=events_copy

NSQ's Go: `apps/nsq_to_nsq/nsq_to_nsq.go`.  One consumer per --topic; each
message that passes the JSON filters goes to one destination nsqd chosen by
--mode (`hostpool`, `round-robin` or `epsilon-greedy`, mostly the fastest;
see relay.py), to --destination-topic or the topic it came from.  A message is FIN'd only once the destination answered OK:
the handler hands it over (`enable_async()`), and each destination's
publisher thread `nsq_to_nsq-pub-<addr>` sends what has gathered as one
MPUB per topic, then FINs that batch; a failed publish REQs it (with the
consumer's backoff).  Unlike NSQ (go-nsq gives a message up and FINs it
after `max_attempts`, 5), a message that was not relayed is never FIN'd:
max_attempts defaults to 0 (unlimited); `--consumer-opt=max_attempts,N` is
the way to drop poison messages after N attempts.

JSON filters (only when --require-json-field or --whitelist-json-field is
set): a body that is not a JSON object is logged and dropped (FIN'd); a
message without the required field is dropped, or REQ'd with backoff when
--require-json-value is also set (NSQ's behaviour); the value matches a
JSON string exactly, or a JSON number when the flag parses as one.
--whitelist-json-field rewrites the body to an object of just those fields,
written as Go's encoding/json writes it (sorted keys, `<>&` escaped).
"""
from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from .. import wire
from ..client import NSQConnectionError, NSQError
from ..flags import Flag
from . import common
from .relay import MODES, Destinations, TimerMetrics, never_give_up

logger = logging.getLogger("nsqd_sync.apps.nsq_to_nsq")

PROG = "nsq_to_nsq"

#: a publisher sends at most this much in one MPUB (nsqd's default max-body-size is 5 MB)
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_COUNT = 1000

FLAGS: List[Flag] = [
    common.version_flag(),
    common.channel_flag("nsq_to_nsq", "nsq channel"),
    Flag("destination-topic", "str", "",
         "use this destination topic for all consumed topics (default is consumed topic name)",
         metavar="TOPIC"),
    common.max_in_flight_flag(200),
    Flag("status-every", "int", 250,
         "the # of requests between logging status (per destination), 0 disables"),
    Flag("mode", "str", "hostpool",
         "the upstream request mode options: round-robin, hostpool (default), epsilon-greedy",
         metavar="MODE", choices=MODES),
    common.nsqd_tcp_address_flag(),
    Flag("destination-nsqd-tcp-address", "strlist", [],
         "destination nsqd TCP address (may be given multiple times)", metavar="ADDR"),
    common.lookupd_http_address_flag(),
    common.topic_list_flag("nsq topic (may be given multiple times)"),
    Flag("whitelist-json-field", "strlist", [],
         "for JSON messages: pass this field (may be given multiple times)", metavar="FIELD"),
    Flag("require-json-field", "str", "", "for JSON messages: only pass messages that contain this field",
         metavar="FIELD"),
    Flag("require-json-value", "str", "",
         "for JSON messages: only pass messages in which the required field has this value",
         metavar="VALUE"),
    common.consumer_opt_flag("option to passthrough to nsq.Consumer (may be given multiple times, "
                             "see http://godoc.org/github.com/nsqio/go-nsq#Config); max_attempts defaults "
                             "to 0 (never give up): max_attempts,N drops a message after N attempts"),
    common.producer_opt_flag("option to passthrough to nsq.Producer (may be given multiple times, "
                             "see http://godoc.org/github.com/nsqio/go-nsq#Config)"),
]


# ---------------------------------------------------------------- JSON, as Go writes it

def go_json(value: Any) -> str:
    """encoding/json's Marshal of a decoded value: sorted keys, no spaces, HTML-safe,
    numbers as Go prints a float64 (integral ones without a fraction)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    if isinstance(value, dict):
        return "{" + ",".join("%s:%s" % (go_json(k), go_json(value[k])) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError("cannot encode %r" % (value,))


def _go_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError("unsupported value: %r" % f)
    a = abs(f)
    if a == 0 or 1e-6 <= a < 1e21:
        if f == int(f):
            return str(int(f))
        text = repr(f)
        if "e" in text:
            from decimal import Decimal

            text = format(Decimal(text), "f")
        return text
    mant, _, exp = repr(f).partition("e")
    sign = exp[0] if exp[0] in "+-" else "+"
    digits = exp.lstrip("+-").lstrip("0") or "0"
    if len(digits) < 2:
        digits = "0" + digits
    return "%se%s%s" % (mant, sign, digits)


class JSONFilter:
    """--require-json-field / --require-json-value / --whitelist-json-field."""

    def __init__(self, require_field: str, require_value: str, whitelist: List[str]) -> None:
        self.require_field = require_field
        self.require_value = require_value
        self.whitelist = list(whitelist)
        self.active = bool(require_field or whitelist)
        self.value_number: Optional[float] = None
        if require_value:
            try:
                self.value_number = float(require_value)
            except ValueError:
                self.value_number = None

    def should_pass(self, js: Dict[str, Any]) -> Tuple[bool, bool]:
        """(pass, backoff) for a decoded object (Go's shouldPassMessage)."""
        if not self.require_field:
            return True, False
        if self.require_field not in js:
            if self.require_value:
                logger.error("missing field to check required value")
                return False, True
            return False, False
        if not self.require_value:
            return True, False
        value = js[self.require_field]
        if isinstance(value, str):
            return value == self.require_value, False
        if self.value_number is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) == self.value_number, False
        return False, False

    def rewrite(self, js: Dict[str, Any], raw: bytes) -> bytes:
        """The body to relay: only the whitelisted fields, if any are configured."""
        if not self.whitelist:
            return raw
        out: Dict[str, Any] = {}
        for key in self.whitelist:
            if key in js:
                value = js[key]
                if isinstance(value, float) and not math.isinf(value) and not math.isnan(value) \
                        and float(int(value)) == value and abs(value) < 2 ** 63:
                    value = int(value)
                out[key] = value
        return go_json(out).encode("utf-8")

    def apply(self, body: bytes) -> Tuple[Optional[bytes], bool]:
        """(body to relay or None to drop, backoff)."""
        if not self.active:
            return body, False
        try:
            js = json.loads(body)
        except ValueError:
            js = None
        if not isinstance(js, dict):
            logger.error("Unable to decode json: %s", body[:1000].decode("utf-8", "replace"))
            return None, False
        passed, backoff = self.should_pass(js)
        if not passed:
            return None, backoff
        try:
            return self.rewrite(js, body), False
        except (TypeError, ValueError) as e:
            logger.error("filterMessage() failed: unable to marshal filtered message: %s", e)
            return None, True


# ---------------------------------------------------------------- publishing

class _Item:
    __slots__ = ("consumer", "msg", "topic", "body", "start")

    def __init__(self, consumer: Any, msg: Any, topic: str, body: bytes, start: float) -> None:
        self.consumer = consumer
        self.msg = msg
        self.topic = topic
        self.body = body
        self.start = start


class DestinationPublisher:
    """One destination nsqd: a producer and a thread publishing what the handlers queue."""

    def __init__(self, app: "NSQToNSQ", address: str, producer: Any) -> None:
        self.app = app
        self.address = address
        self.producer = producer
        self._items: Deque[_Item] = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._closing = False
        self.thread = threading.Thread(target=self._loop, name="%s-pub-%s" % (PROG, address), daemon=True)

    def put(self, item: _Item) -> None:
        with self._lock:
            self._items.append(item)
            self._not_empty.notify()

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closing = True
            self._not_empty.notify_all()
        self.thread.join(timeout)
        self.producer.close()

    def _take(self) -> Optional[List[_Item]]:
        with self._lock:
            while not self._items:
                if self._closing:
                    return None
                self._not_empty.wait()
            batch: List[_Item] = []
            size = 0
            items = self._items
            while items and len(batch) < MAX_BATCH_COUNT and (not batch or size + len(items[0].body) <= MAX_BATCH_BYTES):
                item = items.popleft()
                batch.append(item)
                size += len(item.body)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            by_topic: Dict[str, List[_Item]] = {}
            for item in batch:
                by_topic.setdefault(item.topic, []).append(item)
            for topic, items in by_topic.items():
                self._publish(topic, items)

    def _publish(self, topic: str, items: List[_Item]) -> None:
        try:
            if len(items) == 1:
                self.producer.pub(topic, items[0].body)
            else:
                self.producer.mpub(topic, [i.body for i in items])
        except NSQConnectionError as e:
            self._failed(items, e)
            return
        except NSQError as e:
            if len(items) > 1:
                # one bad message (e.g. too big) must not hold back the rest: one by one
                for item in items:
                    self._publish(topic, [item])
                return
            self._failed(items, e)
            return
        self.app.delivered(self.address, items)

    def _failed(self, items: List[_Item], error: Exception) -> None:
        logger.error("publishing %d message(s) to %s failed: %s; requeued", len(items), self.address, error)
        self.app.failed(self.address, items)


# ---------------------------------------------------------------- the command

class NSQToNSQ(common.App):
    PROG = PROG
    FLAGS = FLAGS
    HELP = "nsq_to_nsq: relay NSQ topics to other nsqd nodes, optionally filtering JSON messages."
    STOP_TIMEOUT = 30.0

    def __init__(self, values: Dict[str, Any]) -> None:
        super().__init__(values)
        self.filter = JSONFilter(values["require_json_field"], values["require_json_value"],
                                 values["whitelist_json_field"])
        self.consumers: List[Any] = []
        self.publishers: Dict[str, DestinationPublisher] = {}
        self.destinations: Optional[Destinations] = None
        dests = values["destination_nsqd_tcp_address"]
        if len(dests) == 1:
            self.per_address = {dests[0]: TimerMetrics(0, "")}
        else:
            self.per_address = {a: TimerMetrics(values["status_every"], "[%s]:" % a) for a in dests}
        self.aggregate = TimerMetrics(values["status_every"], "[aggregate]:")

    def check(self) -> None:
        v = self.values
        if not v["topic"] or not v["channel"]:
            raise common.UsageError("--topic and --channel are required")
        for topic in v["topic"]:
            if not wire.is_valid_topic_name(topic):
                raise common.UsageError("--topic is invalid")
        if v["destination_topic"] and not wire.is_valid_topic_name(v["destination_topic"]):
            raise common.UsageError("--destination-topic is invalid")
        if not wire.is_valid_channel_name(v["channel"]):
            raise common.UsageError("--channel is invalid")
        common.require_sources(v)
        if not v["destination_nsqd_tcp_address"]:
            raise common.UsageError("--destination-nsqd-tcp-address required")
        for addr in v["destination_nsqd_tcp_address"]:
            try:
                common.split_host_port(addr)
            except ValueError as e:
                raise common.UsageError("invalid --destination-nsqd-tcp-address %r: %s" % (addr, e)) from None
        # --producer-opt is validated by its flag; build one producer's options now so a
        # TLS file that cannot be read is a usage error rather than a crash later
        common.client_kwargs(common.parse_client_opts(v["producer_opt"], "producer"), "producer")

    # ------------------------------------------------------------ handler side

    def _handler(self, destination_topic: str) -> Any:
        consumer_box: List[Any] = []

        def handle(msg: Any) -> Optional[bool]:
            body, backoff = self.filter.apply(msg.body)
            if body is None:
                return False if backoff else None
            assert self.destinations is not None
            address = self.destinations.get()
            msg.enable_async()
            self.publishers[address].put(_Item(consumer_box[0], msg, destination_topic, body, time.monotonic()))
            return None

        handle.consumer_box = consumer_box  # type: ignore[attr-defined]
        return handle

    def delivered(self, address: str, items: List[_Item]) -> None:
        assert self.destinations is not None
        self.destinations.mark(address, True, time.monotonic() - items[-1].start)
        for consumer, msgs in _by_consumer(items).items():
            consumer.finish_many(msgs)
        metrics = self.per_address[address]
        for item in items:
            metrics.status(item.start)
            self.aggregate.status(item.start)

    def failed(self, address: str, items: List[_Item]) -> None:
        assert self.destinations is not None
        self.destinations.mark(address, False)
        for consumer, msgs in _by_consumer(items).items():
            consumer.requeue_many(msgs)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        v = self.values
        dests = v["destination_nsqd_tcp_address"]
        self.destinations = Destinations(dests, v["mode"])
        for addr in dests:
            self.publishers[addr] = DestinationPublisher(self, addr, common.make_producer(v, PROG, addr))
        for pub in self.publishers.values():
            pub.thread.start()
        for topic in v["topic"]:
            handle = self._handler(v["destination_topic"] or topic)
            consumer = common.make_consumer(v, PROG, topic, v["channel"], handle, concurrency=len(dests),
                                           **never_give_up(v))
            handle.consumer_box.append(consumer)
            self.consumers.append(consumer)
        for consumer in self.consumers:
            consumer.start()

    def stop(self) -> None:
        threads = [threading.Thread(target=c.stop, args=(self.STOP_TIMEOUT,), name="%s-stop-%s" % (PROG, c.topic),
                                    daemon=True) for c in self.consumers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.STOP_TIMEOUT + 10.0)
        for pub in self.publishers.values():
            pub.close(10.0)


def _by_consumer(items: List[_Item]) -> Dict[Any, List[Any]]:
    out: Dict[Any, List[Any]] = {}
    for item in items:
        out.setdefault(item.consumer, []).append(item.msg)
    return out


main = NSQToNSQ.main

if __name__ == "__main__":  # pragma: no cover
    main()
