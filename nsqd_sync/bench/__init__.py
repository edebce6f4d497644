"""nsq_bench: NSQ's benchmark clients (bench_writer, bench_reader) and more, in Python.

Run as ``python -m nsqd_sync.bench SUBCOMMAND`` or ``nsq_bench SUBCOMMAND``.

  writer    MPUB batches as fast as the node answers (NSQ's bench_writer)
  reader    SUB with a large RDY and a FIN per message (NSQ's bench_reader)
  pubsub    writer and reader at the same time
  single    one PUB per round trip
  latency   fixed-rate publisher + consumer, publish-to-receive percentiles
  memory    the node's RSS per queued message (starts its own node)
  topics    PUB throughput spread over 1, 100 and 1000 topics
  all       every one of the above against a node it starts (and, with
            --against, against another nsqd executable), as one table

Modules: ``options`` (the flags of every subcommand), ``common`` (result
lines, raw protocol connections), ``workers`` (one OS process per client
connection, started together), ``writer``, ``reader``, ``pubsub``,
``latency``, ``memory``, ``topics``, ``node`` (starting and stopping a node),
``runner`` (``all``).
"""
from __future__ import annotations

from .common import BenchError, Throughput, format_result_line, go_duration

__all__ = ["BenchError", "Throughput", "format_result_line", "go_duration"]
