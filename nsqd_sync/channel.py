"""A channel: one consumer group's copy of a topic's messages.

Messages wait in a bounded `MemoryQueue` (overflow goes to the backend: a
diskqueue named `<topic>:<channel>`, or nothing for ephemeral channels).
Subscribed clients' message pumps `take()` batches from here; a taken
message is then in flight until it is FIN'd, REQ'd, timed out or its client
goes away.  The delivery functions carry NSQ's names (channel.go):
`start_in_flight_timeout`, `finish_message`, `requeue_message`,
`touch_message`, `process_in_flight_queue`, `process_deferred_queue`.  The
in-flight table itself is kept per client (client_v2.py, in deadline order,
so a timeout scan looks only at each table's head); the deferred heap is
kept by the channel's timer thread (timerwheel.py).

A channel knows its clients only as `ChannelClient` (a Protocol below), and
its topic only as the `on_unused` callback, so it imports nothing above it.

Locks: the channel lock is the memory queue's lock; a pump waiting in
`take()` waits on its own condition of that lock (`_Waiter`).  A backend's
own lock may be taken while holding the channel lock (channel -> backend),
never the other way round.  The channel lock and a client's lock are never
held together.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence, Tuple

from . import wire
from .errors import BackendError, ExitingError
from .memqueue import MemoryQueue
from .timerwheel import TimerWheel

log = logging.getLogger(__name__)


class _Waiter:
    """A pump waiting in Channel.take() for a hand-off (its condition uses the channel lock)."""

    __slots__ = ("channel", "cond", "room", "inbox")

    def __init__(self, channel: "Channel") -> None:
        self.channel = channel
        self.cond = threading.Condition(channel.lock)
        self.room = 0
        self.inbox: Optional[Sequence[bytes]] = None


class ChannelClient(Protocol):
    """A subscribed client as the channel sees it (client_v2.ClientV2 is the one)."""

    id: int
    rdy: int
    closed: bool
    msg_timeout: float
    in_flight: Dict[bytes, Tuple[bytes, float]]
    waiter: Any  # the channel's _Waiter for this client's pump

    def add_in_flight(self, batch: List[bytes], deadline: float) -> Tuple[Optional[bytes], List[bytes]]: ...
    def pop_in_flight(self, ids: List[bytes], keep: bool) -> Tuple[List[bytes], List[bytes]]: ...
    def remove_in_flight(self, mid: bytes) -> Optional[bytes]: ...
    def reset_in_flight_timeout(self, mid: bytes) -> bool: ...
    def pop_expired(self, now: float) -> List[bytes]: ...
    def first_deadline(self) -> float: ...
    def drop_in_flight(self) -> List[bytes]: ...
    def detach(self) -> List[bytes]: ...
    def join_pump(self, timeout: float) -> None: ...


class Channel:
    """Memory queue + backend, clients, deferred messages and counters of one channel.

    on_unused(name) is called when the last client of an ephemeral channel
    leaves (the topic deletes it, as NSQ does).
    """

    def __init__(self, topic_name: str, name: str, backend: Any, opts: Any, e2e: Any,
                 on_unused: Callable[[str], Any]) -> None:
        self.topic_name = topic_name
        self.name = name
        self.ephemeral = wire.is_ephemeral(name)
        self.memory = MemoryQueue(opts.mem_queue_size)
        # --mem-queue-size=0 means every message goes through disk, as in NSQ (ephemeral
        # channels have no disk: they hand messages straight to a waiting consumer)
        self._hand_off_allowed = opts.mem_queue_size > 0 or self.ephemeral
        self._max_consumers = opts.max_channel_consumers
        self._on_unused = on_unused
        self.lock = self.memory.lock
        self.backend = backend
        self.clients: Dict[int, ChannelClient] = {}
        self.paused = False
        self.exiting = False
        self._flushed = False  # close() took the memory queue: nothing may be added to it
        self.message_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        self._waiters: Deque[_Waiter] = collections.deque()
        self.e2e = e2e
        self.timer = TimerWheel("%s:%s" % (topic_name, name), self._on_timer)
        self.timer.start()

    def __repr__(self) -> str:
        return "Channel(%s:%s)" % (self.topic_name, self.name)

    # ---------------------------------------------------------- putting messages

    def put_many(self, msgs: Sequence[bytes], held: bool = False) -> None:
        """A batch of new messages from the topic (counted in message_count).

        Raises ExitingError once the channel is closing: the check is made
        under the channel lock, so a message is either in the queue before
        close() takes it (and flushed with it) or refused.  A publisher's
        batch raises BackendError if the backend cannot take it; a `held`
        batch (the topic's pump: already accepted) is kept in memory instead.
        """
        self._enqueue(msgs, new=True, held=held)

    def _enqueue(self, msgs: Sequence[bytes], new: bool = False, held: bool = True) -> None:
        """Hand messages to waiting pumps first (round robin), then memory, then backend.

        Messages the node already holds (new=False: requeued, timed out,
        deferred and due; or held=True) are never dropped: if the backend
        fails (disk full) they stay in memory past --mem-queue-size.
        """
        with self.lock:
            if self.exiting and (new or self._flushed):
                raise ExitingError("exiting")
            if new:
                self.message_count += len(msgs)
            if self._waiters and not self.paused and self._hand_off_allowed:
                msgs = self._hand_off(msgs)
                if not msgs:
                    return
            taken = self.memory.put_many_locked(msgs)
        if taken < len(msgs):
            rest = msgs[taken:] if taken else msgs
            try:
                self.backend.put_many(rest)
            except BackendError as e:
                if new and not held:
                    raise  # a publisher's message: E_PUB_FAILED
                log.error("CHANNEL(%s:%s): failed to write %d messages to backend, keeping them in memory - %s",
                          self.topic_name, self.name, len(rest), e)
                with self.lock:
                    self.memory.put_all_locked(rest)
            self.wake_takers()

    def _hand_off(self, msgs: Sequence[bytes]) -> Sequence[bytes]:
        """Give each waiting pump its share of a batch; return what is left (lock held).

        Like a Go channel handing each message to one waiting receiver, this
        spreads a burst over the consumers instead of letting the first thread
        to wake take it all.  A share is the batch divided by every consumer
        of the channel, not only those waiting right now: a consumer whose
        pump is a moment late finds its share in the memory queue.
        """
        waiters = self._waiters
        total = len(msgs)
        share = -(-total // max(len(self.clients), len(waiters), 1))
        pos = 0
        while pos < total and waiters:
            w = waiters.popleft()
            k = min(w.room, share, total - pos)
            if k <= 0:
                w.cond.notify()
                continue
            w.inbox = msgs[pos:pos + k]
            pos += k
            w.cond.notify()
        return msgs[pos:] if pos else msgs

    def requeue_many(self, msgs: Sequence[bytes], timed_out: bool = False) -> None:
        """Messages coming back from flight (timeout, REQ 0, client gone)."""
        if not msgs:
            return
        with self.lock:
            if timed_out:
                self.timeout_count += len(msgs)
            else:
                self.requeue_count += len(msgs)
        # even while exiting: close(flush=True) drains memory after every client is detached
        self._enqueue(msgs)

    def give_back(self, msgs: Sequence[bytes]) -> None:
        """Messages a pump took but could not deliver: back to the front, uncounted."""
        if not msgs:
            return
        with self.lock:
            self.memory.push_front_locked(msgs)
            self._wake_all_locked()

    def put_deferred(self, data: bytes, delay: float) -> None:
        """A message to become available after delay seconds (DPUB); ExitingError once closing."""
        with self.lock:  # held while deferring (channel -> timer), so close() drains it or we refuse
            if self.exiting:
                raise ExitingError("exiting")
            self.message_count += 1
            self.timer.defer(data, delay)

    # ---------------------------------------------------------- in flight (NSQ's names)

    def start_in_flight_timeout(self, client: ChannelClient, batch: List[bytes]) -> Optional[bytes]:
        """Go: Channel.StartInFlightTimeout (for a batch): record it in flight, arm the timer, frame it."""
        deadline = time.monotonic() + client.msg_timeout
        data, excess = client.add_in_flight(batch, deadline)
        if excess:
            self.give_back(excess)
        if data is not None:
            self.timer.arm(deadline)
        return data

    def finish_message(self, client: ChannelClient, ids: List[bytes]) -> List[bytes]:
        """Go: Channel.FinishMessage (for a run of FINs); returns the ids client did not have in flight."""
        finished, missing = client.pop_in_flight(ids, self.e2e.enabled)
        if finished:
            self.e2e.record_many(finished)
        return missing

    def requeue_message(self, client: ChannelClient, mid: bytes, delay: float) -> bool:
        """Go: Channel.RequeueMessage: back to the queue now, or deferred by delay seconds."""
        data = client.remove_in_flight(mid)
        if data is None:
            return False
        if delay > 0:
            with self.lock:
                self.requeue_count += 1
            self.timer.defer(data, delay)
        else:
            self.requeue_many([data])
        return True

    def touch_message(self, client: ChannelClient, mid: bytes) -> bool:
        """Go: Channel.TouchMessage: the message gets a full msg_timeout again."""
        return client.reset_in_flight_timeout(mid)

    def process_in_flight_queue(self, now: float) -> float:
        """Go: Channel.processInFlightQueue: requeue what timed out; return the next deadline."""
        best = float("inf")
        for c in self.client_list():
            expired = c.pop_expired(now)
            if expired:
                self.requeue_many(expired, timed_out=True)
            d = c.first_deadline()
            if d < best:
                best = d
        return best

    def process_deferred_queue(self, now: float) -> None:
        """Go: Channel.processDeferredQueue: queue the deferred messages that are due."""
        due = self.timer.pop_due(now)
        if due:
            self._enqueue(due)

    def _on_timer(self, now: float) -> float:
        """The timer thread's tick: both scans, as NSQ's queueScanWorker does for a channel."""
        self.process_deferred_queue(now)
        return self.process_in_flight_queue(time.monotonic())

    # ---------------------------------------------------------- taking messages

    def take(self, client: ChannelClient, max_n: int, timeout: float) -> Optional[List[bytes]]:
        """Up to max_n messages for client's pump; [] on timeout, None if the channel exits.

        Takes from memory if anything is queued, else from the backend, else
        waits (up to timeout) for a publisher to hand it a share of a batch.
        """
        deadline = time.monotonic() + timeout
        waiter = client.waiter
        if waiter is None or waiter.channel is not self:
            waiter = client.waiter = _Waiter(self)
        with self.lock:
            while True:
                if self.exiting:
                    return None
                room = min(max_n, client.rdy - len(client.in_flight))
                if client.closed or room <= 0:
                    return []
                if not self.paused:
                    queued = len(self.memory)
                    if queued:
                        # a fair share: the queue divided over the channel's consumers
                        share = -(-queued // max(len(self.clients), 1 + len(self._waiters)))
                        return self.memory.get_many_locked(min(room, share))
                    if self.backend.depth() > 0:
                        break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                waiter.room = room
                waiter.inbox = None
                self._waiters.append(waiter)
                waiter.cond.wait(remaining)
                inbox = waiter.inbox
                if inbox is not None:
                    waiter.inbox = None
                    return list(inbox)
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        return self.backend.read_many(max_n)

    def wake_takers(self) -> None:
        """Make waiting pumps re-check (RDY changed, client closing, pause, backend data)."""
        with self.lock:
            self._wake_all_locked()

    def _wake_all_locked(self) -> None:
        waiters = self._waiters
        while waiters:
            waiters.popleft().cond.notify()

    # ---------------------------------------------------------- clients

    def add_client(self, client: ChannelClient) -> None:
        max_consumers = self._max_consumers
        with self.lock:
            if self.exiting:
                raise ExitingError("exiting")
            if max_consumers and client.id not in self.clients and len(self.clients) >= max_consumers:
                raise OverflowError("too many consumers")
            self.clients[client.id] = client

    def remove_client(self, client: ChannelClient) -> None:
        with self.lock:
            self.clients.pop(client.id, None)
            self._wake_all_locked()
            last_gone = not self.clients
        if last_gone and self.ephemeral and not self.exiting:
            self._on_unused(self.name)

    def client_list(self) -> List[ChannelClient]:
        with self.lock:
            return list(self.clients.values())

    def find_owner(self, msg_id: bytes) -> Optional[ChannelClient]:
        """The client that has msg_id in flight (error paths only)."""
        for c in self.client_list():
            if msg_id in c.in_flight:
                return c
        return None

    # ---------------------------------------------------------- state

    def depth(self) -> int:
        return len(self.memory) + self.backend.depth()

    def in_flight_count(self) -> int:
        return sum(len(c.in_flight) for c in self.client_list())

    def deferred_count(self) -> int:
        return self.timer.deferred_count()

    def pause(self) -> None:
        self._set_paused(True)

    def unpause(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        with self.lock:
            self.paused = paused
            self._wake_all_locked()

    def empty(self) -> None:
        """Drop every queued, in-flight and deferred message."""
        self.memory.drain()
        for c in self.client_list():
            c.drop_in_flight()
        self.timer.clear()
        self.backend.empty()

    def close(self, flush: bool) -> None:
        """Stop the channel; with flush, write every message it holds to the backend."""
        with self.lock:
            if self.exiting:
                return
            self.exiting = True
            self._wake_all_locked()
        clients = self.client_list()
        held: List[bytes] = []
        for c in clients:
            held.extend(c.detach())
        for c in clients:
            c.join_pump(2.0)
        self.timer.stop()
        if flush:
            with self.lock:
                self._flushed = True
                queued = self.memory.get_many_locked(len(self.memory))
                deferred = self.timer.drain()
            held = queued + held + deferred
            if held:
                log.info("CHANNEL(%s:%s): flushing %d memory messages to backend",
                         self.topic_name, self.name, len(held))
                try:
                    self.backend.put_many(held)
                except BackendError as e:  # report, keep closing the rest
                    log.error("CHANNEL(%s:%s): failed to flush %d messages - %s",
                              self.topic_name, self.name, len(held), e)
            try:
                self.backend.close()
            except BackendError as e:
                log.error("CHANNEL(%s:%s): failed to close its backend - %s", self.topic_name, self.name, e)
        else:
            self.memory.drain()
            self.timer.drain()
            self.backend.delete()
