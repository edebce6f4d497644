"""The `nsqd` command: Go-style flags -> Options -> NSQD.main()."""
from __future__ import annotations

import logging
import sys
from typing import Any, Optional, Sequence

import click

from . import flags, logs
from .options import FLAGS, Options

log = logging.getLogger("nsqd_sync")


@click.command(name="nsqd", context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@flags.click_options(FLAGS)
def command(**cli_values: Any) -> None:
    """nsqd: the NSQ daemon that receives, queues and delivers messages."""
    warn = flags.warn_stderr("nsqd")
    if cli_values.get("version") is not None and FLAGS_BY_NAME["version"].convert(cli_values["version"], "--version"):
        click.echo(flags.version_line("nsqd"))
        return
    values = flags.resolve(FLAGS, cli_values, {}, warn)  # --config went into click's default_map
    opts = Options.from_values(values)
    logs.setup(opts.log_prefix, logs.parse_level(opts.log_level))
    from .nsqd import NSQD

    from .metadata import MetadataError

    nsqd = NSQD(opts)
    try:
        nsqd.main()
    except MetadataError as e:
        log.critical("failed to load metadata - %s", e)
        sys.exit(1)
    except (OSError, RuntimeError) as e:
        log.critical("failed to instantiate nsqd - %s", e)
        sys.exit(1)


FLAGS_BY_NAME = {f.name: f for f in FLAGS}


def main(argv: Optional[Sequence[str]] = None) -> None:
    flags.run_command(command, "nsqd", FLAGS, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
