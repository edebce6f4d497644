"""A topic: every message published to it is copied to each of its channels.

Publishing (`put_many`) takes the topic lock once per batch.  When the topic
has channels, is not paused and holds nothing queued, the batch goes
straight to every channel from the publisher's thread (the common case, no
thread hop).  Otherwise it waits in the topic's bounded memory queue
(overflow: the topic's diskqueue, named `<topic>`) until the topic's pump
thread (`nsqd-topic-<name>`) can hand it to channels: messages published
before any channel exists, or while the topic is paused, are kept.

The same `bytes` object is given to every channel: messages are immutable,
and each delivery builds its own frame with its own attempts count.

Locks: the topic lock (the memory queue's lock) may be held while taking a
channel lock (topic -> channel); channels never call into the topic while
holding their lock.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from . import wire
from .channel import Channel
from .errors import BackendError, ExitingError
from .guid import GUIDFactory
from .memqueue import MemoryQueue

log = logging.getLogger(__name__)


class TopicNode(Protocol):
    """What a topic needs of its node (nsqd.NSQD is the one): options, backends, callbacks."""

    opts: Any

    def make_backend(self, *args: Any, **kwargs: Any) -> Any: ...
    def new_latency_stream(self, *args: Any, **kwargs: Any) -> Any: ...
    def notify_change(self, *args: Any, **kwargs: Any) -> Any: ...
    def delete_topic(self, *args: Any, **kwargs: Any) -> Any: ...

PUMP_BATCH = 200


class Topic:
    """Memory queue + backend of one topic, its channels, and its pump thread."""

    def __init__(self, nsqd: "TopicNode", name: str) -> None:
        self.nsqd = nsqd
        self.name = name
        self.ephemeral = wire.is_ephemeral(name)
        self.guid = GUIDFactory(nsqd.opts.node_id)  # IDs per topic, as NSQ's topic.idFactory
        self.memory = MemoryQueue(nsqd.opts.mem_queue_size)
        self.lock = self.memory.lock
        # the pump waits on this; it is notified only when it has somewhere to deliver
        self._work = threading.Condition(self.lock)
        self.backend = nsqd.make_backend(name, self.ephemeral)
        self.channels: Dict[str, Channel] = {}
        self._fanout: Tuple[Channel, ...] = ()
        self._deferred: List[Tuple[bytes, float]] = []  # DPUBs waiting for a channel
        self.paused = False
        self.exiting = False
        self.message_count = 0
        self.message_bytes = 0
        self.start_time = time.time()
        self._pump = threading.Thread(target=self._pump_loop, name="nsqd-topic-%s" % name, daemon=True)
        self._pump.start()

    def __repr__(self) -> str:
        return "Topic(%s)" % self.name

    # ------------------------------------------------------------ publishing

    def put_many(self, msgs: Sequence[bytes], body_bytes: int) -> None:
        """Publish encoded messages (one lock round for the whole batch)."""
        with self.lock:
            if self.exiting:
                raise ExitingError("exiting")
            self.message_count += len(msgs)
            self.message_bytes += body_bytes
            direct = self._fanout if (self._fanout and not self.paused and not self.memory
                                      and not self._deferred) else ()
            if direct and self.backend.depth() > 0:
                direct = ()
            if not direct:
                taken = self.memory.put_many_locked(msgs)
                overflow = msgs[taken:] if taken < len(msgs) else None
                self._wake_pump_locked()
            else:
                overflow = None
        if direct:
            for channel in direct:
                try:
                    channel.put_many(msgs)
                except ExitingError:
                    if self.exiting:  # the node is exiting: not stored, the publisher is told
                        raise
                    continue  # the channel was deleted under us: its messages go with it
            return
        if overflow:
            self.backend.put_many(overflow)
            with self.lock:
                self._wake_pump_locked()

    def put_deferred(self, data: bytes, delay: float, body_bytes: int) -> None:
        """DPUB: each channel gets the message after delay seconds."""
        with self.lock:
            if self.exiting:
                raise ExitingError("exiting")
            self.message_count += 1
            self.message_bytes += body_bytes
            direct = self._fanout if not self.paused else ()
            if not direct:
                # waiting for a channel (or unpause): it counts against --mem-queue-size like
                # any queued message; past that it goes to disk and, as in NSQ, loses its delay
                if len(self.memory) + len(self._deferred) < self.memory.capacity:
                    self._deferred.append((data, time.monotonic() + delay))
                    return
        if not direct:
            self.backend.put_many([data])
            with self.lock:
                self._wake_pump_locked()
            return
        for channel in direct:
            try:
                channel.put_deferred(data, delay)
            except ExitingError:
                if self.exiting:
                    raise

    # ------------------------------------------------------------ the pump

    def _wake_pump_locked(self) -> None:
        """Wake the pump if it can deliver (a topic with no channel, or paused, keeps its messages)."""
        if self._fanout and not self.paused:
            self._work.notify()

    def _has_work(self) -> bool:
        return bool(self._fanout) and not self.paused and (
            bool(self.memory) or bool(self._deferred) or self.backend.depth() > 0)

    def _pump_loop(self) -> None:
        while True:
            try:
                if self._pump_once():
                    return
            except Exception:  # noqa: BLE001 - log with stack, keep pumping
                log.exception("TOPIC(%s): pump failed", self.name)
                time.sleep(0.1)

    def _pump_once(self) -> bool:
        """Move one batch from the topic to its channels; True when the topic exits."""
        deferred: List[Tuple[bytes, float]] = []
        with self.lock:
            while not self.exiting and not self._has_work():
                self._work.wait(10.0)  # every change notifies; this is only a safety net
            if self.exiting:
                return True
            channels = self._fanout
            batch = self.memory.get_many_locked(PUMP_BATCH)
            if self._deferred:
                deferred, self._deferred = self._deferred, []
        if not batch and not deferred:
            batch = self.backend.read_many(PUMP_BATCH)
        self._deliver(channels, batch, deferred)
        return False

    def _deliver(self, channels: Sequence[Channel], batch: List[bytes],
                 deferred: List[Tuple[bytes, float]]) -> None:
        now = time.monotonic()
        for channel in channels:
            try:
                if batch:
                    channel.put_many(batch, held=True)  # taken from the topic: kept even if the disk fails
                for data, due in deferred:
                    channel.put_deferred(data, max(due - now, 0.0))
            except ExitingError:
                continue
            except BackendError as e:  # as NSQ: logged, the channel misses these messages
                log.error("TOPIC(%s): failed to put %d messages to channel(%s) - %s",
                          self.name, len(batch), channel.name, e)

    # ------------------------------------------------------------ channels

    def get_channel(self, name: str) -> Channel:
        """The channel, created on first use (SUB, /channel/create)."""
        with self.lock:
            channel = self.channels.get(name)
            if channel is not None and not channel.exiting:
                return channel
            if self.exiting:
                raise ExitingError("exiting")
            backend = self.nsqd.make_backend("%s:%s" % (self.name, name), wire.is_ephemeral(name))
            channel = Channel(self.name, name, backend, self.nsqd.opts, self.nsqd.new_latency_stream(),
                              self._channel_unused)
            self.channels[name] = channel
            self._fanout = tuple(self.channels.values())
            self._work.notify()
        log.info("TOPIC(%s): new channel(%s)", self.name, name)
        self.nsqd.notify_change(self, channel)
        return channel

    def _channel_unused(self, name: str) -> None:
        """An ephemeral channel's last client left: delete it (NSQ does so too)."""
        self.delete_channel(name, only_if_unused=True)

    def get_existing_channel(self, name: str) -> Optional[Channel]:
        return self.channels.get(name)

    def delete_channel(self, name: str, only_if_unused: bool = False) -> bool:
        """Delete a channel and its data; False if it does not exist (or is in use)."""
        with self.lock:
            channel = self.channels.get(name)
            if channel is None:
                return False
            if only_if_unused and channel.clients:
                return False
            del self.channels[name]
            self._fanout = tuple(self.channels.values())
            last_gone = not self.channels
        log.info("TOPIC(%s): deleting channel %s", self.name, name)
        channel.close(flush=False)
        self.nsqd.notify_change(self, channel, deleted=True)
        if last_gone and self.ephemeral:
            self.nsqd.delete_topic(self.name)
        return True

    def channel_list(self) -> List[Channel]:
        with self.lock:
            return list(self.channels.values())

    # ------------------------------------------------------------ state

    def depth(self) -> int:
        return len(self.memory) + self.backend.depth() + len(self._deferred)

    def pause(self) -> None:
        self._set_paused(True)

    def unpause(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        with self.lock:
            self.paused = paused
            self._work.notify()

    def empty(self) -> None:
        with self.lock:
            self.memory.clear_locked()
            self._deferred.clear()
        self.backend.empty()

    def close(self, flush: bool) -> None:
        """Stop the topic and its channels; with flush, persist what memory holds."""
        with self.lock:
            if self.exiting:
                return
            self.exiting = True
            self._work.notify_all()
            channels = list(self.channels.values())
        if threading.current_thread() is not self._pump:
            self._pump.join(2.0)
        for channel in channels:
            try:
                channel.close(flush)
            except Exception:  # noqa: BLE001 - one channel's failure must not cost the others their data
                log.exception("TOPIC(%s): failed to close channel(%s)", self.name, channel.name)
        if flush:
            held = self.memory.drain() + [data for data, _ in self._deferred]
            self._deferred = []
            if held:
                log.info("TOPIC(%s): flushing %d memory messages to backend", self.name, len(held))
                try:
                    self.backend.put_many(held)
                except BackendError as e:  # report and go on closing
                    log.error("TOPIC(%s): failed to flush %d messages - %s", self.name, len(held), e)
            try:
                self.backend.close()
            except BackendError as e:
                log.error("TOPIC(%s): failed to close its backend - %s", self.name, e)
        else:
            self.memory.drain()
            self.backend.delete()
