"""One OS process per client connection, started together like bench_writer's goroutines.

CPython runs one thread at a time, so a benchmark client with several
connections in threads would measure the GIL, not the node.  Each worker is
a process: it connects and gets ready (`prepare`), reports ready, waits for
the common start signal, runs (`run`) and reports its figures.  The parent
takes the start time just before the signal, and a run's duration is from
there to the last worker's own end time (CLOCK_MONOTONIC is system-wide, so
the clocks of the processes agree).

A job is a pair of module-level functions (so the `forkserver`/`spawn`
start methods can find them) and a picklable spec dict:

    prepare(spec) -> state        connect, IDENTIFY, SUB...; raise BenchError
    run(state, spec, start_ns) -> dict with at least "count"; may set "end_ns"
"""
from __future__ import annotations

import gc
import multiprocessing
import queue
import signal
import time
import traceback
from typing import Any, Callable, Dict, List, Tuple

from .common import BenchError, Throughput

Job = Tuple[Callable[[dict], Any], Callable[[Any, dict, int], dict], dict]

_PRELOAD = ["nsqd_sync.bench.writer", "nsqd_sync.bench.reader", "nsqd_sync.bench.latency",
            "nsqd_sync.bench.topics"]
_context: Any = None


def _get_context() -> Any:
    global _context
    if _context is None:
        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(_PRELOAD)
        else:  # pragma: no cover - not Linux
            _context = multiprocessing.get_context("spawn")
    return _context


def _parent_alive() -> bool:
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _worker_main(index: int, prepare: Callable, run: Callable, spec: dict, go: Any,
                 ready_q: Any, result_q: Any) -> None:
    # Ctrl-C goes to the whole process group: the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        state = prepare(spec)
    except BenchError as e:
        ready_q.put((index, str(e)))
        return
    except Exception:  # report anything to the parent rather than die silently
        ready_q.put((index, traceback.format_exc()))
        return
    ready_q.put((index, None))
    while not go.wait(0.5):
        if not _parent_alive():
            return
    start_ns = time.monotonic_ns()
    gc.disable()
    cpu0 = time.process_time()
    try:
        stats = run(state, spec, start_ns)
    except BenchError as e:
        result_q.put((index, {"error": str(e)}))
        return
    except Exception:
        result_q.put((index, {"error": traceback.format_exc()}))
        return
    now = time.monotonic_ns()
    stats.setdefault("end_ns", now)
    stats["cpu"] = time.process_time() - cpu0
    stats["wall"] = max(1, now - start_ns) / 1e9
    result_q.put((index, stats))


class WorkerPool:
    """Starts worker processes, releases them together, gathers their figures."""

    def __init__(self, jobs: List[Job], name: str = "bench") -> None:
        self.jobs = jobs
        self.name = name
        ctx = _get_context()
        self._go = ctx.Event()
        self._ready_q = ctx.Queue()
        self._result_q = ctx.Queue()
        self._procs: List[Any] = []
        self.results: Dict[int, dict] = {}
        self.start_ns = 0

    def start(self, timeout: float = 20.0) -> None:
        """Start every worker and wait until all are connected and ready."""
        ctx = _get_context()
        for i, (prepare, run, spec) in enumerate(self.jobs):
            p = ctx.Process(target=_worker_main, name="nsq_bench-%s-%d" % (self.name, i),
                            args=(i, prepare, run, spec, self._go, self._ready_q, self._result_q),
                            daemon=True)
            p.start()
            self._procs.append(p)
        deadline = time.monotonic() + timeout
        pending = len(self.jobs)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s workers did not get ready within %.0fs" % (self.name, timeout))
            try:
                _, problem = self._ready_q.get(timeout=min(left, 0.5))
            except queue.Empty:
                self._check_alive()
                continue
            if problem:
                raise BenchError(problem.strip())
            pending -= 1

    def _check_alive(self) -> None:
        for p in self._procs:
            if p.exitcode not in (None, 0):
                raise BenchError("%s worker %s died (exit code %s)"
                                 % (self.name, p.name, p.exitcode))

    def go(self) -> int:
        """Release all workers; returns the start time (monotonic ns)."""
        self.start_ns = time.monotonic_ns()
        self._go.set()
        return self.start_ns

    def poll(self) -> bool:
        """Take whatever results have arrived; True once every worker has reported."""
        while len(self.results) < len(self.jobs):
            try:
                index, stats = self._result_q.get_nowait()
            except queue.Empty:
                return False
            self._take(index, stats)
        return True

    def _take(self, index: int, stats: dict) -> None:
        if "error" in stats:
            raise BenchError(stats["error"].strip())
        self.results[index] = stats

    def collect(self, timeout: float) -> List[dict]:
        """Wait for every worker's figures (in job order)."""
        deadline = time.monotonic() + timeout
        while len(self.results) < len(self.jobs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s workers did not finish within %.0fs" % (self.name, timeout))
            try:
                index, stats = self._result_q.get(timeout=min(left, 0.5))
            except queue.Empty:
                self._check_alive()
                continue
            self._take(index, stats)
        return [self.results[i] for i in range(len(self.jobs))]

    def close(self) -> None:
        """Stop any worker still running and reap them all."""
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(5)
            if p.is_alive():  # pragma: no cover - a worker ignoring SIGTERM
                p.kill()
                p.join(5)
        for q in (self._ready_q, self._result_q):
            q.close()
            q.join_thread()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_timed(jobs: List[Job], name: str, runfor: float) -> Tuple[int, List[dict]]:
    """Start, release and collect a set of timed jobs: (start_ns, per-job stats)."""
    with WorkerPool(jobs, name) as pool:
        pool.start()
        start_ns = pool.go()
        results = pool.collect(runfor + 60.0)
    return start_ns, results


def summarize(name: str, results: List[dict], start_ns: int, size: int) -> Throughput:
    """One Throughput from the stats of the workers of one kind."""
    count = sum(r["count"] for r in results)
    end_ns = max(r["end_ns"] for r in results)
    cpu = [r["cpu"] / r["wall"] for r in results]
    return Throughput(name=name, count=count, duration_ns=max(1, end_ns - start_ns), size=size,
                      workers=len(results), worker_cpu=cpu)
