"""The `nsqlookupd` command: flags -> Options -> NSQLookupd, until SIGTERM/SIGINT (sigwait)."""
from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Optional, Sequence

import click

from nsqd_sync import flags, logs, signals

from .options import FLAGS, Options

PROG = "nsqlookupd"

logger = logging.getLogger("nsqlookupd_sync")


@click.command(name=PROG, help="nsqlookupd: the daemon that manages NSQ's topology information.",
               context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@flags.click_options(FLAGS)
def command(**raw: Any) -> None:
    sys.exit(run(raw))


def _version_requested(raw: Dict[str, Any]) -> bool:
    text = raw.get("version")
    if text is None:
        return False
    spec = next(f for f in FLAGS if f.name == "version")
    return bool(spec.convert(text, "--version"))


def run(raw: Dict[str, Any]) -> int:
    """Run the node with raw click values; returns the exit code."""
    if _version_requested(raw):
        sys.stdout.write(flags.version_line(PROG) + "\n")
        sys.stdout.flush()
        return 0
    values = flags.resolve(FLAGS, raw, {}, flags.warn_stderr(PROG))  # --config: click's default_map
    opts = Options.from_values(values)
    logs.setup(opts.log_prefix, opts.log_level_number)

    from .nsqlookupd import ListenError, NSQLookupd

    signals.block_signals()  # before the first thread: every thread inherits the mask
    logger.info(flags.version_line(PROG))
    node = NSQLookupd(opts)
    try:
        node.main()
    except ListenError as e:
        logger.critical("failed to instantiate nsqlookupd - %s", e)
        return 1
    try:
        signals.wait_for_signal(signals.exit_or_dump(logger))  # in the main thread, no handler
    finally:
        node.exit()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point (Go-style flags accepted)."""
    flags.run_command(command, PROG, FLAGS, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
