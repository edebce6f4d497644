"""man/nsqadmin.8 documents exactly the flags the `nsqadmin` command has, with NSQ's defaults."""
from __future__ import annotations

import os
import re

import click

from nsqadmin_sync import cli
from nsqadmin_sync.options import FLAGS
from nsqd_sync import flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE_PATH = os.path.join(ROOT, "man", "nsqadmin.8")

#: `nsqadmin -h` of NSQ 1.3.0: every flag and its default
NSQ_FLAGS = {
    "acl-http-header": "X-Forwarded-User", "admin-user": "", "allow-config-from-cidr": "127.0.0.1/8",
    "base-path": "/", "config": "", "dev-static-dir": "", "graphite-url": "",
    "http-address": "0.0.0.0:4171", "http-client-connect-timeout": "2s",
    "http-client-request-timeout": "5s", "http-client-tls-cert": "",
    "http-client-tls-insecure-skip-verify": "false", "http-client-tls-key": "",
    "http-client-tls-root-ca-file": "", "log-level": "INFO", "log-prefix": '"[nsqadmin] "',
    "lookupd-http-address": "", "notification-http-endpoint": "", "nsqd-http-address": "",
    "proxy-graphite": "false", "statsd-counter-format": "stats.counters.%s.count",
    "statsd-gauge-format": "stats.gauges.%s", "statsd-interval": "1m0s", "statsd-prefix": "nsq.%s",
    "verbose": "false", "version": "false",
}


def read_page() -> str:
    with open(PAGE_PATH, encoding="utf-8") as f:
        return f.read()


def roff_flag(name: str) -> str:
    return "\\fB\\-\\-%s\\fR" % name.replace("-", "\\-")


def test_generated_options_block_is_current():
    page = read_page()
    assert flags.replace_roff_options(page, FLAGS) == page, (
        "man/nsqadmin.8 is out of date: run "
        "`python -m nsqd_sync.flags nsqadmin_sync.options:FLAGS man/nsqadmin.8`")


def test_every_nsq_flag_exists_with_nsqs_default():
    by_name = {f.name: f for f in FLAGS}
    for name, default in NSQ_FLAGS.items():
        assert name in by_name, name
        assert by_name[name].shown_default() == default, (name, by_name[name].shown_default())


def test_every_click_option_is_in_the_man_page_and_back():
    page = read_page()
    options = {o.lstrip("-") for p in cli.command.params if isinstance(p, click.Option) for o in p.opts}
    options.discard("help")
    for name in options:
        assert roff_flag(name) in page, "%s missing from man/nsqadmin.8" % name
    documented = {n.replace("\\-", "-") for n in re.findall(r"^\\fB\\-\\-([a-z0-9\\-]+)\\fR", page, re.M)}
    assert documented == options


def test_page_has_the_usual_sections():
    page = read_page()
    assert page.startswith(".TH NSQADMIN 8")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "HTTP API"):
        assert re.search(r"^\.SH %s\b" % section, page, re.M), section
