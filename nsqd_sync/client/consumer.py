"""Consumer: subscribe to a topic/channel on one or more nsqd, handle messages in threads.

Threads (all named after the subscription, all stopped by `stop()`):

  nsq-consumer-<topic>/<channel>-<addr>       one reader per connection: recv
                                              in large chunks, answer
                                              heartbeats, queue messages
  nsq-consumer-<topic>/<channel>-worker-<i>   `concurrency` workers: call the
                                              handler, answer with FIN/REQ,
                                              a batch's answers in one write
  nsq-consumer-<topic>/<channel>-manager      connects and reconnects, polls
                                              lookupd, ends backoff blocks,
                                              rotates RDY

The Consumer is composed of collaborators it owns: one `Connection` per
nsqd (connection.py) with its state (`ConsumerConn`, conn_state.py), the
flow control (`FlowControl`, flow.py: RDY and backoff) and the handler pool
(`HandlerPool`, handling.py: the work queue, workers and FIN/REQ answers).
This module holds the lifecycle, the manager and the readers.

Locks: `Consumer._lock` (connections, RDY, backoff) may be held while a
connection's write lock is taken (RDY is sent under it, so RDY changes stay
ordered).  `ConsumerConn.lock` (in-flight counts) and the work queue's mutex
are leaves: nothing else is taken while holding them.
"""
from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Union

from .. import wire
from .connection import NOP, Connection, identify_fields
from .errors import NSQConnectionError, NSQError, error_from_frame, is_fatal
from .flow import FlowControl
from .handling import MAX_BATCH, HandlerPool
from .lookup import lookup_nsqd_addresses
from .conn_state import ConsumerConn
from .message import Message

_ConsumerConn = ConsumerConn  # its old private name

__all__ = ["Consumer", "Handler"]

logger = logging.getLogger(__name__)

MANAGER_ERROR_PAUSE = 1.0  # seconds the manager thread waits after an unexpected error


class _ManagerTimers:
    """The manager thread's schedule, kept across rounds (and across a failed round)."""

    def __init__(self, next_poll: Optional[float], next_redistribute: float) -> None:
        self.next_poll = next_poll
        self.next_redistribute = next_redistribute
        self.first_poll = True

Handler = Callable[[Message], Optional[bool]]


def _addresses(value: Union[str, Iterable[str], None]) -> List[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class Consumer:
    """Consume `topic`/`channel` with `handler(message)`.

    Give nsqd TCP addresses (`host:port`), lookupd HTTP addresses, or both.
    Durations are in seconds unless the name says `_ms`.  The handler runs in
    worker threads; returning None/True finishes the message, returning False
    or raising requeues it (delay requeue_delay * attempts, at most
    max_requeue_delay) and counts as a failure for backoff.  Messages whose
    attempts exceed max_attempts (when > 0) are finished without calling the
    handler and passed to giveup_handler.  after_batch(), if given, is called by a
    worker after the handler has run for a batch of messages and before their FINs
    are written (e.g. to flush an output buffer once per batch).
    """

    def __init__(self, topic: str, channel: str, handler: Handler,
                 nsqd_tcp_addresses: Union[str, Sequence[str]] = (),
                 lookupd_http_addresses: Union[str, Sequence[str]] = (),
                 max_in_flight: int = 1, max_attempts: int = 0,
                 giveup_handler: Optional[Callable[[Message], Any]] = None,
                 concurrency: int = 1, after_batch: Optional[Callable[[], Any]] = None,
                 lookupd_poll_interval: float = 60.0, lookupd_poll_jitter: float = 0.3,
                 lookupd_request_timeout: float = 2.0,
                 requeue_delay: float = 90.0, max_requeue_delay: float = 900.0,
                 backoff_multiplier: float = 1.0, max_backoff_duration: float = 120.0,
                 reconnect_interval: float = 1.0, max_reconnect_interval: float = 60.0,
                 rdy_redistribute_interval: float = 5.0, low_rdy_idle_timeout: float = 10.0,
                 msg_timeout: Optional[float] = None, heartbeat_interval: Optional[float] = None,
                 output_buffer_size: Optional[int] = None, output_buffer_timeout: Optional[float] = None,
                 sample_rate: Optional[int] = None, deflate: bool = False,
                 deflate_level: Optional[int] = None, snappy: bool = False,
                 tls_v1: bool = False, tls_context: Optional[ssl.SSLContext] = None,
                 auth_secret: Optional[str] = None, client_id: Optional[str] = None,
                 hostname: Optional[str] = None, user_agent: Optional[str] = None,
                 connect_timeout: float = 1.0, read_timeout: Optional[float] = None) -> None:
        if not wire.is_valid_topic_name(topic):
            raise ValueError("topic name %r is not valid" % (topic,))
        if not wire.is_valid_channel_name(channel):
            raise ValueError("channel name %r is not valid" % (channel,))
        if max_in_flight < 0:
            raise ValueError("max_in_flight must be >= 0")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.topic = topic
        self.channel = channel
        self.concurrency = int(concurrency)
        self.lookupd_http_addresses = _addresses(lookupd_http_addresses)
        self.lookupd_poll_interval = float(lookupd_poll_interval)
        self.lookupd_poll_jitter = float(lookupd_poll_jitter)
        self.lookupd_request_timeout = float(lookupd_request_timeout)
        self.reconnect_interval = float(reconnect_interval)
        self.max_reconnect_interval = float(max_reconnect_interval)
        self.rdy_redistribute_interval = float(rdy_redistribute_interval)
        self.connect_timeout = float(connect_timeout)
        hb = heartbeat_interval if heartbeat_interval is not None else 30.0
        self.read_timeout = float(read_timeout) if read_timeout is not None else max(2 * hb, 1.0) + 5.0
        self.tls_context = tls_context
        self.auth_secret = auth_secret

        self.identify: Dict[str, Any] = identify_fields(
            client_id=client_id, hostname=hostname, user_agent=user_agent,
            heartbeat_interval=heartbeat_interval, msg_timeout=msg_timeout,
            output_buffer_size=output_buffer_size, output_buffer_timeout=output_buffer_timeout,
            sample_rate=sample_rate, deflate=deflate, deflate_level=deflate_level, snappy=snappy, tls_v1=tls_v1)

        self.name = "%s/%s" % (topic, channel)
        self._lock = threading.Lock()
        self._idle = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._done = threading.Event()
        self._conns: Dict[str, ConsumerConn] = {}
        self._direct: List[str] = []
        self._discovered: Set[str] = set()
        self._reconnects: Dict[str, List[float]] = {}  # address -> [when, interval]
        self._manager: Optional[threading.Thread] = None
        self._started = False
        self._stopping = False
        # the collaborators: handler pool (workers, answers, counters) and flow control (RDY, backoff)
        self._pool = HandlerPool(
            self.name, handler, giveup_handler=giveup_handler, after_batch=after_batch,
            max_attempts=int(max_attempts), requeue_delay=float(requeue_delay),
            max_requeue_delay=float(max_requeue_delay), concurrency=self.concurrency,
            batch_size=max(1, min(MAX_BATCH, int(max_in_flight) // self.concurrency or 1)),
            backoff_signal=self._backoff_signal)
        self._flow = FlowControl(
            self.name, self._lock, self._conns, max_in_flight=int(max_in_flight),
            backoff_multiplier=float(backoff_multiplier), max_backoff_duration=float(max_backoff_duration),
            low_rdy_idle_timeout=float(low_rdy_idle_timeout), count=self._pool.count, wake=self._wake)
        self.stats = self._pool.stats
        for addr in _addresses(nsqd_tcp_addresses):
            self._add_direct(addr)

    def __repr__(self) -> str:
        return "<Consumer %s conns=%d>" % (self.name, len(self._conns))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "Consumer":
        """Start the threads and return at once; connections come up in the background."""
        with self._lock:
            if self._started:
                return self
            if self._stopping:
                raise RuntimeError("a stopped Consumer cannot be started again")
            self._started = True
        self._pool.start()
        self._manager = threading.Thread(target=self._manager_loop, name="nsq-consumer-%s-manager" % self.name,
                                         daemon=True)
        self._manager.start()
        return self

    def run(self) -> None:
        """Start and block until stop() (from another thread or a handler) or Ctrl-C."""
        self.start()
        try:
            while not self._done.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.stop()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait until the consumer has stopped; True if it has."""
        return self._done.wait(timeout)

    def __enter__(self) -> "Consumer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly: RDY 0 and CLS on every connection, wait for CLOSE_WAIT, let the
        workers finish the messages already received, requeue (REQ 0) what is left when
        `timeout` runs out, close the connections and join the threads.

        Called from one of the consumer's own threads (e.g. a handler), it starts the
        same sequence in a separate thread and returns; use join() to wait.
        """
        with self._lock:
            if self._stopping:
                already = True
            else:
                already = False
                self._stopping = True
                self._flow.stopping = True
        if already:
            if not self._is_own_thread():
                self._done.wait(timeout)
            return
        self._wake.set()
        if self._is_own_thread():
            threading.Thread(target=self._stop, args=(timeout,), name="nsq-consumer-%s-stop" % self.name,
                             daemon=True).start()
            return
        self._stop(timeout)

    @property
    def stopped(self) -> bool:
        return self._done.is_set()

    # ------------------------------------------------------------ public state

    def connect_to_nsqd(self, address: str) -> None:
        """Add an nsqd TCP address to consume from (connects in the background)."""
        with self._lock:
            self._add_direct(address)
        self._wake.set()

    def connected_addresses(self) -> List[str]:
        with self._lock:
            return [a for a, c in self._conns.items() if not c.closed]

    def connection_states(self) -> Dict[str, Dict[str, int]]:
        """address -> {"rdy", "in_flight"} for every live connection."""
        with self._lock:
            return {a: {"rdy": c.rdy, "in_flight": c.in_flight} for a, c in self._conns.items()}

    @property
    def total_rdy(self) -> int:
        with self._lock:
            return sum(c.rdy for c in self._conns.values())

    @property
    def backoff_counter(self) -> int:
        return self._flow.backoff_counter

    def in_backoff(self) -> bool:
        return self._flow.in_backoff()

    @property
    def max_in_flight(self) -> int:
        return self._flow.max_in_flight

    def is_starved(self) -> bool:
        """True when some connection has (nearly) as many messages in flight as its RDY:
        a handler batching messages should process its batch now."""
        with self._lock:
            return any(c.in_flight > 0 and c.in_flight >= 0.85 * c.rdy for c in self._conns.values())

    def set_max_in_flight(self, max_in_flight: int) -> None:
        """Change max_in_flight (0 pauses delivery) and redistribute RDY."""
        if max_in_flight < 0:
            raise ValueError("max_in_flight must be >= 0")
        with self._lock:
            self._flow.max_in_flight = int(max_in_flight)
            self._flow.rebalance_locked()

    # ------------------------------------------------------------ manager thread

    def _is_own_thread(self) -> bool:
        return threading.current_thread().name.startswith("nsq-consumer-%s-" % self.name)

    def _add_direct(self, address: str) -> None:
        if address not in self._direct:
            self._direct.append(address)
            self._reconnects.setdefault(address, [0.0, self.reconnect_interval])

    def _wanted(self, address: str) -> bool:
        return address in self._direct or address in self._discovered

    def _manager_loop(self) -> None:
        """Lookupd polls, reconnects, RDY redistribution and backoff resumes, until stop().

        An unexpected error in one round is logged with its stack and the
        loop carries on after MANAGER_ERROR_PAUSE: a consumer whose manager
        died would never reconnect again.
        """
        timers = _ManagerTimers(next_poll=time.monotonic() if self.lookupd_http_addresses else None,
                                next_redistribute=time.monotonic() + self.rdy_redistribute_interval)
        while not self._stopping:
            try:
                wait = self._manager_round(timers)
            except Exception:  # noqa: BLE001 - the manager must outlive any one failure
                logger.exception("[%s] manager thread: unexpected error, carrying on in %.1fs",
                                 self.name, MANAGER_ERROR_PAUSE)
                wait = MANAGER_ERROR_PAUSE
            if self._stopping:
                break
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def _manager_round(self, timers: "_ManagerTimers") -> float:
        """One round of the manager's work; returns how long to wait before the next."""
        now = time.monotonic()
        if timers.next_poll is not None and now >= timers.next_poll:
            # the next poll is scheduled first: a failing poll must not be retried at once
            interval = self.lookupd_poll_interval
            if timers.first_poll:
                interval += random.random() * self.lookupd_poll_jitter * self.lookupd_poll_interval
                timers.first_poll = False
            timers.next_poll = time.monotonic() + interval
            self._poll_lookupd()
        self._connect_due()
        with self._lock:
            resume_at = self._flow.backoff_resume_at
            if resume_at is not None and time.monotonic() >= resume_at:
                self._flow.resume_locked()
            now = time.monotonic()
            if now >= timers.next_redistribute:
                timers.next_redistribute = now + self.rdy_redistribute_interval
                self._flow.redistribute_locked()
            deadlines = [timers.next_redistribute]
            if timers.next_poll is not None:
                deadlines.append(timers.next_poll)
            if self._flow.backoff_resume_at is not None:
                deadlines.append(self._flow.backoff_resume_at)
            deadlines.extend(when for when, _ in self._reconnects.values())
        return min(deadlines) - time.monotonic()

    def _poll_lookupd(self) -> None:
        found: Set[str] = set()
        ok = False
        for addr in self.lookupd_http_addresses:
            try:
                found.update(lookup_nsqd_addresses(addr, self.topic, timeout=self.lookupd_request_timeout))
                ok = True
            except Exception as e:  # requests' exceptions, bad JSON: try again at the next poll
                logger.warning("[%s] lookupd %s query failed: %s", self.name, addr, e)
        if not ok:
            return
        with self._lock:
            new = found - self._discovered
            gone = self._discovered - found
            self._discovered = found
            for addr in sorted(new):
                if addr not in self._conns:
                    logger.info("[%s] lookupd: new nsqd %s", self.name, addr)
                    self._reconnects.setdefault(addr, [0.0, self.reconnect_interval])
            for addr in gone:
                if addr not in self._direct:
                    self._reconnects.pop(addr, None)

    def _connect_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [a for a, (when, _) in self._reconnects.items() if when <= now]
        for addr in due:
            if self._stopping:
                return
            with self._lock:
                if not self._wanted(addr) or addr in self._conns:
                    self._reconnects.pop(addr, None)
                    continue
            try:
                self._connect(addr)
            except Exception as e:  # noqa: BLE001 - NSQError, or a bug/OS error: retry with backoff
                if not isinstance(e, NSQError):
                    logger.exception("[%s] connecting to %s: unexpected error", self.name, addr)
                with self._lock:
                    entry = self._reconnects.get(addr)
                    if entry is not None:
                        logger.warning("[%s] connecting to %s failed (%s); retrying in %.1fs",
                                       self.name, addr, e, entry[1])
                        entry[0] = time.monotonic() + entry[1]
                        entry[1] = min(entry[1] * 2, self.max_reconnect_interval)
            else:
                with self._lock:
                    self._reconnects.pop(addr, None)

    def _connect(self, address: str) -> None:
        conn = Connection(address, self.identify, connect_timeout=self.connect_timeout,
                          read_timeout=self.read_timeout, tls_context=self.tls_context,
                          auth_secret=self.auth_secret)
        conn.connect()
        try:
            conn.send(wire.command(b"SUB", self.topic.encode(), self.channel.encode()))
            resp = conn.read_response()
            if resp != wire.OK:
                raise NSQError("unexpected SUB response %r" % resp[:100])
        except NSQError:
            conn.close()
            raise
        cc = ConsumerConn(conn, self._conn_idle)
        with self._lock:
            if self._stopping:
                conn.close()
                return
            old = self._conns.get(address)
            if old is not None:
                old.conn.close()
            self._conns[address] = cc
            logger.info("[%s] connected to nsqd %s", self.name, address)
            cc.reader = threading.Thread(target=self._reader_loop, args=(cc,),
                                         name="nsq-consumer-%s-%s" % (self.name, address), daemon=True)
            cc.reader.start()
            self._flow.rebalance_locked()

    # ------------------------------------------------------------ reader threads

    def _reader_loop(self, cc: ConsumerConn) -> None:
        conn = cc.conn
        put_many = self._pool.put_many
        count = self._pool.count
        msg_type = wire.FRAME_TYPE_MESSAGE
        decode = wire.decode_message
        try:
            while True:
                frames = conn.recv_frames()
                msgs = []
                for ftype, data in frames:
                    if ftype == msg_type:
                        ts, attempts, msg_id, body = decode(data)
                        msgs.append(Message(msg_id, body, ts, attempts, cc, self))
                    elif ftype == wire.FRAME_TYPE_RESPONSE:
                        if data == wire.HEARTBEAT:
                            conn.send(NOP)
                        elif data == wire.CLOSE_WAIT:
                            cc.close_wait.set()
                    elif ftype == wire.FRAME_TYPE_ERROR:
                        err = error_from_frame(data)
                        if is_fatal(err):
                            raise err
                        count("errors", 1)
                        logger.warning("[%s] nsqd %s: %s", self.name, cc.address, err)
                    else:
                        logger.warning("[%s] unknown frame type %d from %s", self.name, ftype, cc.address)
                if msgs:
                    cc.received(len(msgs))
                    count("received", len(msgs))
                    put_many(msgs)
        except NSQConnectionError as e:
            if not (cc.closing or self._stopping):
                logger.warning("[%s] connection to %s lost: %s", self.name, cc.address, e)
        except NSQError as e:
            logger.error("[%s] nsqd %s closed the connection: %s", self.name, cc.address, e)
        except Exception:
            logger.exception("[%s] reader for %s failed", self.name, cc.address)
        finally:
            conn.close()
            cc.close_wait.set()
            self._on_conn_closed(cc)

    def _on_conn_closed(self, cc: ConsumerConn) -> None:
        with self._lock:
            if self._conns.get(cc.address) is cc:
                del self._conns[cc.address]
            if self._stopping:
                return
            if self._wanted(cc.address) and cc.address not in self._reconnects:
                self._reconnects[cc.address] = [time.monotonic() + self.reconnect_interval,
                                                min(self.reconnect_interval * 2, self.max_reconnect_interval)]
            self._flow.conn_closed_locked()
        self._wake.set()
        if self._stopping:
            self._notify_idle()

    # ------------------------------------------------------------ stopping

    def _conn_idle(self) -> None:
        """A connection has nothing in flight: wake stop() if it waits for that."""
        if self._stopping:
            self._notify_idle()

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _in_flight_total(self) -> int:
        with self._lock:
            return sum(c.in_flight for c in self._conns.values() if not c.closed)

    def _stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            with self._lock:
                conns = list(self._conns.values())
            for cc in conns:
                cc.closing = True
                try:
                    cc.conn.send(b"RDY 0\nCLS\n")
                    cc.rdy = 0
                except NSQConnectionError:
                    pass
            for cc in conns:
                cc.close_wait.wait(max(0.0, deadline - time.monotonic()))
            with self._idle:
                while self._in_flight_total() > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._idle.wait(min(left, 0.1))
            # out of time: give back whatever is still waiting, then let workers exit
            self._pool.abandon()
            self._pool.join(max(1.0, deadline - time.monotonic()))
            with self._lock:
                conns = list(self._conns.values())
            for cc in conns:
                cc.closing = True
                cc.conn.close()
            for cc in conns:
                if cc.reader is not None and cc.reader is not threading.current_thread():
                    cc.reader.join(2.0)
            if self._manager is not None and self._manager is not threading.current_thread():
                self._manager.join(max(2.0, self.connect_timeout + self.lookupd_request_timeout))
            logger.info("[%s] stopped", self.name)
        finally:
            self._done.set()

    # ------------------------------------------------------------ answers (the handler pool's)

    def _backoff_signal(self, success: Optional[bool]) -> None:
        self._flow.backoff_signal(success)

    def respond_message(self, msg: Message, success: bool, delay_ms: Optional[int], backoff: bool) -> None:
        """Message.finish()/requeue(): answer right away (see HandlerPool.respond_message)."""
        self._pool.respond_message(msg, success, delay_ms, backoff)

    def touch_message(self, msg: Message) -> None:
        """Message.touch(): TOUCH it on its connection."""
        self._pool.touch_message(msg)

    def finish_many(self, msgs: List[Message]) -> None:
        """FIN messages answered later (`enable_async()`), one write per connection."""
        self._pool.finish_many(msgs)

    def requeue_many(self, msgs: List[Message], delay_ms: Optional[int] = None, backoff: bool = True) -> None:
        """REQ messages answered later, one write per connection (see `Message.requeue`)."""
        self._pool.requeue_many(msgs, delay_ms, backoff)
