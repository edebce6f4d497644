"""The `nsqadmin` command: Go-style flags -> Options -> NSQAdmin, until SIGTERM/SIGINT."""
from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Optional, Sequence

import click

from nsqd_sync import flags, logs, signals

from .options import FLAGS, Options

PROG = "nsqadmin"

log = logging.getLogger("nsqadmin_sync")

_VERSION_FLAG = next(f for f in FLAGS if f.name == "version")


@click.command(name=PROG, help="nsqadmin: a web UI and admin API for an NSQ cluster.",
               context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@flags.click_options(FLAGS)
def command(**raw: Any) -> None:
    sys.exit(run(raw))


def run(raw: Dict[str, Any]) -> int:
    """Run nsqadmin with raw click values; returns the exit code."""
    if raw.get("version") is not None and _VERSION_FLAG.convert(raw["version"], "--version"):
        sys.stdout.write(flags.version_line(PROG) + "\n")
        sys.stdout.flush()
        return 0
    config = flags.load_config_file(raw["config"]) if raw.get("config") else {}
    values = flags.resolve(FLAGS, raw, config, flags.warn_stderr(PROG))
    opts = Options.from_values(values)
    logs.setup(opts.log_prefix, opts.log_level_number)

    from .nsqadmin import ListenError, NSQAdmin

    signals.block_signals()  # before any thread starts: they all inherit the mask
    admin = NSQAdmin(opts)
    try:
        admin.main()
    except ListenError as e:
        log.critical("failed to instantiate nsqadmin - %s", e)
        admin.exit()
        return 1
    try:
        signals.wait_for_signal(signals.exit_on)
    finally:
        admin.exit()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point (Go-style flags accepted)."""
    flags.run_command(command, PROG, FLAGS, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
