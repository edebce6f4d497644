"""The Consumer's message handling: the work queue, worker threads and answers.

Reader threads put each recv's messages on the `_WorkQueue` in one call;
each worker takes a batch, calls the handler per message and collects the
FIN/REQ answers per connection, writing them with one `send` per connection
when the batch is done (or every FLUSH_INTERVAL for a slow batch).
Answers from user code (`Message.finish()` etc., e.g. after
`enable_async()`) are written at once.  `HandlerPool` is the Consumer's
collaborator for all of this: it owns the work queue, the worker threads and
the counters; it tells the Consumer's flow control about each answer through
the `backoff_signal` callback it is given.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Deque, Dict, List, Optional

from .errors import NSQConnectionError
from .message import Message

if TYPE_CHECKING:  # pragma: no cover
    from .conn_state import ConsumerConn

logger = logging.getLogger(__name__)

# how long a worker may hold answers of a batch before writing them
FLUSH_INTERVAL = 0.05
MAX_BATCH = 256


class _WorkQueue:
    """Messages waiting for a worker: a deque with batch put/get under one mutex."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.not_empty = threading.Condition(self.mutex)
        self.items: Deque[Message] = collections.deque()
        self.closed = False

    def put_many(self, msgs: List[Message]) -> None:
        with self.mutex:
            self.items.extend(msgs)
            self.not_empty.notify(len(msgs))

    def get_batch(self, max_n: int) -> Optional[List[Message]]:
        """Up to max_n messages, blocking for the first; None once closed and empty."""
        with self.mutex:
            while not self.items:
                if self.closed:
                    return None
                self.not_empty.wait()
            items = self.items
            if max_n == 1 or len(items) == 1:
                return [items.popleft()]
            n = min(max_n, len(items))
            return [items.popleft() for _ in range(n)]

    def take_all(self) -> List[Message]:
        with self.mutex:
            out = list(self.items)
            self.items.clear()
            return out

    def close(self) -> None:
        with self.mutex:
            self.closed = True
            self.not_empty.notify_all()

    def __len__(self) -> int:
        return len(self.items)


class HandlerPool:
    """The work queue, the worker threads that call the handler, and the FIN/REQ answers."""

    def __init__(self, name: str, handler: Callable[[Message], Optional[bool]], *,
                 giveup_handler: Optional[Callable[[Message], None]], after_batch: Optional[Callable[[], None]],
                 max_attempts: int, requeue_delay: float, max_requeue_delay: float, concurrency: int,
                 batch_size: int, backoff_signal: Callable[[Optional[bool]], None]) -> None:
        self.name = name
        self.handler = handler
        self.giveup_handler = giveup_handler
        self.after_batch = after_batch
        self.max_attempts = max_attempts
        self.requeue_delay = requeue_delay
        self.max_requeue_delay = max_requeue_delay
        self.concurrency = concurrency
        self._batch_size = batch_size
        self._backoff_signal = backoff_signal
        self._queue = _WorkQueue()
        self._respond_lock = threading.Lock()
        self._workers: List[threading.Thread] = []
        self._abandon = False
        # counters: received, finished, requeued, given_up, backoffs, errors (non-fatal error frames)
        self.stats: Dict[str, int] = collections.Counter()
        self._stats_lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker_loop, name="nsq-consumer-%s-worker-%d" % (self.name, i),
                                 daemon=True)
            self._workers.append(t)
            t.start()

    def put_many(self, msgs: List[Message]) -> None:
        """Messages a reader received, for the workers."""
        self._queue.put_many(msgs)

    def abandon(self) -> None:
        """Out of time at stop: REQ 0 what is still queued, then let the workers exit."""
        self._abandon = True
        pending: Dict[ConsumerConn, List[bytes]] = {}
        for msg in self._queue.take_all():
            if not msg._conn.closed and not msg._responded:
                self._answer(msg, False, 0, False, pending)
        self._flush(pending)
        self._queue.close()

    def join(self, grace: float) -> None:
        for t in self._workers:
            if t is not threading.current_thread():
                t.join(grace)
                if t.is_alive():
                    logger.warning("[%s] worker %s still busy in the handler at stop", self.name, t.name)

    def count(self, key: str, n: int) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _worker_loop(self) -> None:
        queue = self._queue
        batch_size = self._batch_size
        pending: Dict[ConsumerConn, List[bytes]] = {}
        monotonic = time.monotonic
        while True:
            batch = queue.get_batch(batch_size)
            if batch is None:
                break
            if len(batch) == 1:
                self._process(batch[0], pending)
            else:
                flush_at = monotonic() + FLUSH_INTERVAL
                for msg in batch:
                    self._process(msg, pending)
                    if pending and monotonic() > flush_at:
                        if self.after_batch is not None:
                            self.after_batch()
                        self._flush(pending)
                        flush_at = monotonic() + FLUSH_INTERVAL
            if self.after_batch is not None:
                self.after_batch()
            if pending:
                self._flush(pending)

    def _process(self, msg: Message, pending: Dict[ConsumerConn, List[bytes]]) -> None:
        cc = msg._conn
        if cc.closed:
            msg._responded = True  # nsqd gives it to someone else; its FIN would fail
            return
        if self._abandon:
            self._answer(msg, False, 0, False, pending)
            return
        if self.max_attempts > 0 and msg.attempts > self.max_attempts:
            self._give_up(msg, pending)
            return
        try:
            result = self.handler(msg)
        except Exception:
            logger.exception("[%s] handler failed for message %s (attempt %d)",
                             self.name, msg.id.decode("ascii", "replace"), msg.attempts)
            result = False
        if msg._responded or msg._async:
            return
        if result is False:
            self._answer(msg, False, None, True, pending)
        else:
            self._answer(msg, True, 0, False, pending)

    def _give_up(self, msg: Message, pending: Dict[ConsumerConn, List[bytes]]) -> None:
        logger.warning("[%s] giving up on message %s after %d attempts", self.name,
                       msg.id.decode("ascii", "replace"), msg.attempts)
        self.count("given_up", 1)
        if self.giveup_handler is not None:
            try:
                self.giveup_handler(msg)
            except Exception:
                logger.exception("[%s] giveup_handler failed", self.name)
        if not msg._responded:
            self._answer(msg, True, 0, False, pending)

    def _requeue_delay_ms(self, msg: Message) -> int:
        delay = min(self.requeue_delay * max(msg.attempts, 1), self.max_requeue_delay)
        return int(delay * 1000)

    def _command_for(self, msg: Message, success: bool, delay_ms: Optional[int]) -> bytes:
        if success:
            return b"FIN " + msg.id + b"\n"
        if delay_ms is None or delay_ms < 0:
            delay_ms = self._requeue_delay_ms(msg)
        return b"REQ %s %d\n" % (msg.id, int(delay_ms))

    def _answer(self, msg: Message, success: bool, delay_ms: Optional[int], backoff: bool,
                pending: Dict[ConsumerConn, List[bytes]]) -> None:
        """Queue a worker's FIN/REQ to be written with the rest of its batch."""
        msg._responded = True
        _add_command(pending, msg, self._command_for(msg, success, delay_ms))
        self._backoff_signal(True if success else (False if backoff else None))

    def _flush(self, pending: Dict[ConsumerConn, List[bytes]]) -> None:
        fins = reqs = 0
        for cc, cmds in pending.items():
            n_fin = sum(1 for c in cmds if c[0] == 70)  # b"F"
            fins += n_fin
            reqs += len(cmds) - n_fin
            if not cc.closed:
                try:
                    cc.conn.send(b"".join(cmds))
                except NSQConnectionError as e:
                    logger.debug("[%s] answers to %s lost: %s", self.name, cc.address, e)
            cc.answered(len(cmds))
        pending.clear()
        with self._stats_lock:
            self.stats["finished"] += fins
            self.stats["requeued"] += reqs

    def respond_message(self, msg: Message, success: bool, delay_ms: Optional[int], backoff: bool) -> None:
        """Message.finish()/requeue() called by user code: answer right away."""
        with self._respond_lock:
            if msg._responded:
                logger.debug("[%s] message %s already answered", self.name, msg.id)
                return
            msg._responded = True
        cc = msg._conn
        cmd = self._command_for(msg, success, delay_ms)
        if not cc.closed:
            try:
                cc.conn.send(cmd)
            except NSQConnectionError as e:
                logger.debug("[%s] answer to %s lost: %s", self.name, cc.address, e)
        cc.answered(1)
        self.count("finished" if success else "requeued", 1)
        self._backoff_signal(True if success else (False if backoff else None))

    def finish_many(self, msgs: List[Message]) -> None:
        """FIN messages answered later (`enable_async()`), one write per connection.

        For handlers that batch (e.g. write a batch to disk, then finish it);
        messages already answered are skipped.
        """
        self._answer_many(msgs, True, 0, False)

    def requeue_many(self, msgs: List[Message], delay_ms: Optional[int] = None,
                     backoff: bool = True) -> None:
        """REQ messages answered later, one write per connection (see `Message.requeue`)."""
        self._answer_many(msgs, False, delay_ms, backoff)

    def _answer_many(self, msgs: List[Message], success: bool, delay_ms: Optional[int],
                     backoff: bool) -> None:
        with self._respond_lock:
            todo = [m for m in msgs if not m._responded]
            for m in todo:
                m._responded = True
        if not todo:
            return
        pending: Dict[ConsumerConn, List[bytes]] = {}
        for msg in todo:
            _add_command(pending, msg, self._command_for(msg, success, delay_ms))
        self._flush(pending)
        self._backoff_signal(True if success else (False if backoff else None))

    def touch_message(self, msg: Message) -> None:
        """Message.touch(): TOUCH it on its connection."""
        cc = msg._conn
        if cc is None or cc.closed:
            return
        try:
            cc.conn.send(b"TOUCH " + msg.id + b"\n")
        except NSQConnectionError as e:
            logger.debug("[%s] TOUCH to %s lost: %s", self.name, cc.address, e)


def _add_command(pending: Dict["ConsumerConn", List[bytes]], msg: Message, cmd: bytes) -> None:
    """Queue cmd on msg's connection, to be written with the rest of the batch."""
    cmds = pending.get(msg._conn)  # type: ignore[arg-type]
    if cmds is None:
        pending[msg._conn] = [cmd]  # type: ignore[index]
    else:
        cmds.append(cmd)
