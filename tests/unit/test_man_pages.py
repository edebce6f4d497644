"""man/nsqd.8 documents exactly the flags the `nsqd` command has."""
from __future__ import annotations

import os
import re

import click

from nsqd_sync import cli, flags
from nsqd_sync.options import FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE_PATH = os.path.join(ROOT, "man", "nsqd.8")


def read_page() -> str:
    with open(PAGE_PATH, encoding="utf-8") as f:
        return f.read()


def roff_flag(name: str) -> str:
    return "\\fB\\-\\-%s\\fR" % name.replace("-", "\\-")


def test_generated_options_block_is_current():
    page = read_page()
    assert flags.replace_roff_options(page, FLAGS) == page, (
        "man/nsqd.8 is out of date: run `python -m nsqd_sync.flags nsqd_sync.options:FLAGS man/nsqd.8`")


def test_every_click_option_is_in_the_man_page():
    page = read_page()
    options = [p for p in cli.command.params if isinstance(p, click.Option)]
    assert len(options) >= 50
    for opt in options:
        for name in opt.opts:
            if name == "--help":
                continue
            assert roff_flag(name.lstrip("-")) in page, "%s missing from man/nsqd.8" % name


def test_every_documented_flag_is_an_option():
    page = read_page()
    documented = set(re.findall(r"^\\fB\\-\\-([a-z0-9\\-]+)\\fR", page, re.M))
    names = {n.replace("\\-", "-") for n in documented}
    assert len(names) >= 50
    options = {o.lstrip("-") for p in cli.command.params if isinstance(p, click.Option) for o in p.opts}
    assert names <= options | {"help"}, names - options


def test_defaults_are_documented():
    block = flags.roff_options(FLAGS)
    for name, default in [("tcp-address", "0.0.0.0:4150"), ("http-address", "0.0.0.0:4151"),
                          ("mem-queue-size", "10000"), ("max-msg-size", "1048576"),
                          ("max-body-size", "5242880"), ("msg-timeout", "1m0s"),
                          ("max-msg-timeout", "15m0s"), ("max-req-timeout", "1h0m0s"),
                          ("max-rdy-count", "2500"), ("max-heartbeat-interval", "1m0s"),
                          ("output-buffer-timeout", "250ms")]:
        entry = block.split(roff_flag(name), 1)[1].split(".TP", 1)[0]
        assert "Default: " + flags._roff_escape(default) in entry, (name, entry)


def test_page_has_the_usual_sections():
    page = read_page()
    assert page.startswith(".TH NSQD 8")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"):
        assert re.search(r"^\.SH %s\b" % section, page, re.M), section
