"""The flags of every nsq_bench subcommand, declared once.

Names and defaults follow NSQ's bench_writer / bench_reader (Go's `flag`
forms all work: `-runfor=5s`, `--runfor 5s`).  `--workers` is one
connection (and one OS process) each; NSQ's tools use GOMAXPROCS, the CPU
count, and so do we by default.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from ..flags import Flag
from ..wire import is_valid_name

CPUS = os.cpu_count() or 1
UTILS_CASES = ("tail", "to_nsq", "to_file")  # what `nsq_bench utils` times


def _positive(value: float) -> Optional[str]:
    return None if value > 0 else "must be positive"


def _at_least(n: int):
    def check(value: int) -> Optional[str]:
        return None if value >= n else "must be at least %d" % n
    return check


def _counts(value: str) -> Optional[str]:
    try:
        parse_counts(value)
    except ValueError as e:
        return str(e)
    return None


def _cases(value: str) -> Optional[str]:
    try:
        parse_cases(value)
    except ValueError as e:
        return str(e)
    return None


def parse_cases(text: str) -> List[str]:
    """--skip of `nsq_bench utils`: the cases left to run, in UTILS_CASES order."""
    skip = {s.strip() for s in text.split(",") if s.strip()}
    unknown = skip - set(UTILS_CASES)
    if unknown:
        raise ValueError("unknown case(s) %s (cases: %s)"
                         % (", ".join(sorted(unknown)), ", ".join(UTILS_CASES)))
    return [c for c in UTILS_CASES if c not in skip]


def parse_counts(text: str) -> List[int]:
    """`1,100,1000` -> [1, 100, 1000] (each at least 1)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        n = int(part)
        if n < 1:
            raise ValueError("topic counts must be at least 1")
        out.append(n)
    if not out:
        raise ValueError("no topic counts given")
    return out


def _address(default: str = "127.0.0.1:4150") -> Flag:
    return Flag("nsqd-tcp-address", "str", default, "<addr>:<port> of the nsqd to connect to",
                metavar="ADDR")


def _name(value: str) -> Optional[str]:
    return None if is_valid_name(value) else "not a valid NSQ topic/channel name"


def _topic(default: str = "sub_bench") -> Flag:
    return Flag("topic", "str", default, "topic to publish to / receive messages on",
                validate=_name)


def _channel(default: str = "ch") -> Flag:
    return Flag("channel", "str", default, "channel to receive messages on", validate=_name)


def _size() -> Flag:
    return Flag("size", "int", 200, "size of messages in bytes", validate=_at_least(1))


def _batch() -> Flag:
    return Flag("batch-size", "int", 200, "messages per MPUB", validate=_at_least(1))


def _rdy() -> Flag:
    return Flag("rdy", "int", 2500, "RDY count to use", validate=_at_least(1))


def _runfor(default: float = 10.0) -> Flag:
    return Flag("runfor", "duration", default, "duration of time to run", validate=_positive)


def _workers() -> Flag:
    return Flag("workers", "int", CPUS, "connections, one OS process each",
                validate=_at_least(1), default_text="number of CPUs")


def _idle() -> Flag:
    return Flag("idle-timeout", "duration", 0.0,
                "end early once no message has arrived for this long, timing the run to the "
                "last message (0 = run for the whole --runfor, like bench_reader)")


def _nsqd_path() -> Flag:
    return Flag("nsqd-path", "str", "",
                "nsqd command to start (split like a shell would); default: this package's "
                "nsqd run by this Python", metavar="CMD")


def _node_args() -> Flag:
    return Flag("nsqd-args", "str", "",
                "extra flags for every nsqd started (split like a shell would)", metavar="ARGS")


def _topic_counts() -> Flag:
    return Flag("topic-counts", "str", "1,100,1000", "numbers of topics to spread the load over",
                validate=_counts, metavar="N,N,...")


def _http_address() -> Flag:
    return Flag("nsqd-http-address", "str", "",
                "<addr>:<port> of the node's HTTP API; when given, topics deletes the topics "
                "it created after each case", metavar="ADDR")


WRITER = [_address(), _topic(), _size(), _batch(), _runfor(), _workers()]

READER = [_address(), _topic(), _channel(), _size(), _rdy(), _runfor(), _workers(), _idle()]

PUBSUB = [_address(), _topic(), _channel(), _size(), _batch(), _rdy(), _runfor(),
          Flag("workers", "int", CPUS, "connections on each side (writers and readers), "
               "one OS process each", validate=_at_least(1),
               default_text="number of CPUs")]

SINGLE = [_address(), _topic(), _size(), _runfor(), _workers()]

LATENCY = [
    _address(), _topic("lat_bench"), _channel(), _size(), _runfor(),
    Flag("rate", "int", 10000, "messages per second to publish", validate=_at_least(1)),
    _rdy(),
    Flag("output-buffer-size", "int", -1,
         "output_buffer_size sent in IDENTIFY (-1 disables the node's output buffering, "
         "0 keeps the node's default)"),
    Flag("output-buffer-timeout", "int", 0,
         "output_buffer_timeout in ms sent in IDENTIFY (-1 disables the flush timer, "
         "0 keeps the node's default)"),
]

MEMORY = [
    _nsqd_path(), _node_args(), _topic("mem_bench"), _channel(),
    Flag("count", "int", 1000000, "messages to queue", validate=_at_least(1)),
    _size(), _batch(),
    Flag("mem-queue-size", "int", 0,
         "--mem-queue-size for the node (0: the message count, so all stay in memory; "
         "with --overflow: the node's default)", validate=_at_least(0)),
    Flag("overflow", "bool", False,
         "queue beyond the node's memory queue and show RSS while messages go to disk"),
    Flag("steps", "int", 10, "RSS samples while queueing with --overflow", validate=_at_least(1)),
]

STARTUP = [
    _nsqd_path(), _node_args(),
    Flag("runs", "int", 20, "nodes to start and stop, one after the other", validate=_at_least(1)),
]

TOPICS = [_address(), _http_address(), _topic("topics_bench"), _channel(), _size(), _batch(),
          _runfor(), _workers(), _topic_counts()]

ALL = [
    _nsqd_path(),
    Flag("against", "str", "", "another nsqd executable to run the same table against, "
         "one after the other (split like a shell would)", metavar="CMD"),
    _node_args(),
    _runfor(5.0), _size(), _batch(), _rdy(), _workers(),
    Flag("rate", "int", 10000, "latency: messages per second", validate=_at_least(1)),
    Flag("memory-count", "int", 1000000, "memory: messages to queue", validate=_at_least(1)),
    _topic_counts(),
    Flag("repeat", "int", 1, "runs of the whole table per node; each row shows the median",
         validate=_at_least(1)),
    Flag("skip", "str", "", "comma-separated rows groups to leave out: writer, reader, "
         "pubsub, single, latency, memory, overflow, topics", metavar="LIST"),
]

ADMIN = [
    _nsqd_path(), _node_args(),
    Flag("nsqlookupd-path", "str", "",
         "nsqlookupd command to start (split like a shell would); default: this package's "
         "nsqlookupd run by this Python", metavar="CMD"),
    Flag("nsqadmin-path", "str", "",
         "nsqadmin command to time (split like a shell would); default: this package's "
         "nsqadmin run by this Python", metavar="CMD"),
    Flag("against", "str", "", "another nsqadmin executable to time on the same cluster, "
         "one after the other (split like a shell would)", metavar="CMD"),
    Flag("nodes", "int", 5, "nsqd nodes in the cluster", validate=_at_least(1)),
    Flag("topics", "int", 500, "topics on every node", validate=_at_least(1)),
    Flag("channels", "int", 2, "channels in every topic", validate=_at_least(0)),
    Flag("requests", "int", 5, "timed requests per URL in each round", validate=_at_least(1)),
    Flag("rounds", "int", 3, "rounds; each starts every nsqadmin afresh, one after the other",
         validate=_at_least(1)),
    Flag("parallel", "int", 32, "HTTP requests in flight while creating topics and channels",
         validate=_at_least(1)),
]

UTILS = [
    _nsqd_path(), _node_args(),
    Flag("against", "str", "", "directory holding NSQ's nsq_tail, to_nsq and nsq_to_file, run "
         "alternately with ours on the same node", metavar="DIR"),
    Flag("count", "int", 1000000, "messages per run", validate=_at_least(1)),
    _size(),
    Flag("mem-queue-size", "int", 0, "--mem-queue-size for the node (0: --count, so queued "
         "messages stay in memory)", validate=_at_least(0)),
    Flag("repeat", "int", 3, "runs per tool and case; each row shows the median",
         validate=_at_least(1)),
    Flag("skip", "str", "", "comma-separated cases to leave out: tail, to_nsq, to_file",
         validate=_cases, metavar="LIST"),
]

SUBCOMMANDS: Dict[str, List[Flag]] = {
    "writer": WRITER, "reader": READER, "pubsub": PUBSUB, "single": SINGLE,
    "latency": LATENCY, "memory": MEMORY, "topics": TOPICS, "all": ALL, "admin": ADMIN,
    "utils": UTILS,
    "startup": STARTUP,
}

SUMMARIES: Dict[str, str] = {
    "writer": "publish MPUB batches as fast as the node answers (NSQ's bench_writer)",
    "reader": "consume with a large RDY and a FIN per message (NSQ's bench_reader)",
    "pubsub": "writer and reader at the same time; prints both rates",
    "single": "one PUB per round trip",
    "latency": "fixed-rate publisher and a consumer; publish-to-receive p50/p99/p99.9/max",
    "memory": "start a node, queue messages with no consumer, print RSS per queued message",
    "topics": "PUB throughput spread over 1, 100 and 1000 topics (one channel each)",
    "all": "start a node and run everything as one table (--against: side by side)",
    "admin": "build a cluster (5 nodes x 500 topics x 2 channels) and time nsqadmin's pages",
    "utils": "nsq_tail, to_nsq and nsq_to_file drain/publish rates (--against: NSQ's tools)",
    "startup": "start nodes as the pytest fixtures do; time to listening, to /ping OK, to exit",
}

GROUPS = ["writer", "reader", "pubsub", "single", "latency", "memory", "overflow", "topics"]
