"""`nsq_bench SUBCOMMAND [flags]` / `python -m nsqd_sync.bench SUBCOMMAND [flags]`."""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import click

from .. import flags
from .common import BenchError, Reporter
from .options import SUBCOMMANDS, SUMMARIES

PROG = "nsq_bench"


def _usage() -> str:
    lines = ["Usage: %s SUBCOMMAND [flags]" % PROG, "", "Subcommands:"]
    for name, text in SUMMARIES.items():
        lines.append("  %-8s %s" % (name, text))
    lines += ["", "Run '%s SUBCOMMAND --help' for its flags." % PROG]
    return "\n".join(lines)


# ---------------------------------------------------------------- subcommand bodies

def _writer(v: Dict[str, Any], rep: Reporter) -> None:
    from .writer import bench_writer

    bench_writer(v["nsqd_tcp_address"], v["topic"], v["size"], v["batch_size"], v["runfor"],
                 v["workers"], rep)


def _reader(v: Dict[str, Any], rep: Reporter) -> None:
    from .reader import bench_reader

    bench_reader(v["nsqd_tcp_address"], v["topic"], v["channel"], v["size"], v["rdy"],
                 v["runfor"], v["workers"], v["idle_timeout"], rep)


def _pubsub(v: Dict[str, Any], rep: Reporter) -> None:
    from .reader import bench_pubsub

    bench_pubsub(v["nsqd_tcp_address"], v["topic"], v["channel"], v["size"], v["batch_size"],
                 v["rdy"], v["runfor"], v["workers"], rep)


def _single(v: Dict[str, Any], rep: Reporter) -> None:
    from .writer import bench_single

    bench_single(v["nsqd_tcp_address"], v["topic"], v["size"], v["runfor"], v["workers"], rep)


def _latency(v: Dict[str, Any], rep: Reporter) -> None:
    from .latency import bench_latency

    bench_latency(v["nsqd_tcp_address"], v["topic"], v["channel"], v["size"], v["rate"],
                  v["runfor"], v["rdy"], v["output_buffer_size"], v["output_buffer_timeout"], rep)


def _memory(v: Dict[str, Any], rep: Reporter) -> None:
    from .memory import bench_memory
    from .node import node_command, split_args

    bench_memory(node_command(v["nsqd_path"]), split_args(v["nsqd_args"]), v["topic"],
                 v["channel"], v["count"], v["size"], v["batch_size"], v["mem_queue_size"],
                 v["overflow"], v["steps"], rep)


def _topics(v: Dict[str, Any], rep: Reporter) -> None:
    from .options import parse_counts
    from .topics import bench_topics

    bench_topics(v["nsqd_tcp_address"], v["nsqd_http_address"], v["topic"], v["channel"],
                 v["size"], v["batch_size"], v["runfor"], v["workers"],
                 parse_counts(v["topic_counts"]), rep)


def _all(v: Dict[str, Any], rep: Reporter) -> None:
    from .runner import run_all

    run_all(v, rep)


def _admin(v: Dict[str, Any], rep: Reporter) -> None:
    from .admin import bench_admin

    bench_admin(v, rep)


def _utils(v: Dict[str, Any], rep: Reporter) -> None:
    from .utils import bench_utils

    bench_utils(v, rep)


def _startup(v: Dict[str, Any], rep: Reporter) -> None:
    from .node import node_command, split_args
    from .startup import bench_startup

    bench_startup(node_command(v["nsqd_path"]), split_args(v["nsqd_args"]), v["runs"], rep)


BODIES: Dict[str, Callable[[Dict[str, Any], Reporter], None]] = {
    "writer": _writer, "reader": _reader, "pubsub": _pubsub, "single": _single,
    "latency": _latency, "memory": _memory, "topics": _topics, "all": _all, "admin": _admin,
    "utils": _utils,
    "startup": _startup,
}


def parse_args(name: str, argv: Sequence[str]) -> Dict[str, Any]:
    """Parse one subcommand's Go-style flags into {dest: value} (raises SystemExit on bad flags)."""
    spec = SUBCOMMANDS[name]
    got: Dict[str, Any] = {}

    @click.command(name=name, help=SUMMARIES[name], context_settings={"max_content_width": 100})
    @flags.click_options(spec)
    def command(**raw: Any) -> None:
        got.update(flags.resolve(spec, raw, {}, flags.warn_stderr(PROG)))

    flags.run_command(command, "%s %s" % (PROG, name), spec, list(argv))
    if not got:  # --help was shown
        raise SystemExit(0)
    return got


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def main(argv: Optional[List[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "-help", "--help", "help"):
        print(_usage())
        sys.exit(0 if args else 2)
    name = args[0]
    if name not in SUBCOMMANDS:
        sys.stderr.write("%s: unknown subcommand %r\n%s\n" % (PROG, name, _usage()))
        sys.exit(2)
    values = parse_args(name, args[1:])
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        BODIES[name](values, Reporter())
    except BenchError as e:
        sys.stderr.write("%s %s: error: %s\n" % (PROG, name, e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("%s %s: interrupted\n" % (PROG, name))
        sys.exit(130)
    except BrokenPipeError:  # e.g. `nsq_bench writer | head -1`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
