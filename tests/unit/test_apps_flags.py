"""Every nsq_* utility has every flag of the real 1.3.0 tool, and its man page documents them.

REAL_FLAGS is fixed here, copied from `TOOL -h` of NSQ 1.3.0's binaries; a
tool that loses one of them fails.  Each tool's man/TOOL.1 OPTIONS block is
generated from its FLAGS (regenerate with
`python -m nsqd_sync.flags nsqd_sync.apps.TOOL:FLAGS man/TOOL.1`).
"""
from __future__ import annotations

import importlib
import os
import re

import click
import pytest

from nsqd_sync import flags
from nsqd_sync.apps import TOOLS, common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: tool -> {flag: default as `-h` of the 1.3.0 binary shows it ("" when it shows none)}
REAL_FLAGS = {
    "nsq_tail": {
        "channel": "", "consumer-opt": "", "lookupd-http-address": "", "max-in-flight": "200",
        "n": "", "nsqd-tcp-address": "", "print-topic": "", "topic": "", "version": "",
    },
    "to_nsq": {
        "delimiter": '"\\n"', "nsqd-tcp-address": "", "producer-opt": "", "rate": "", "topic": "",
    },
    "nsq_stat": {
        "channel": "", "count": "", "http-client-connect-timeout": "2s",
        "http-client-request-timeout": "5s", "interval": "2s", "lookupd-http-address": "",
        "nsqd-http-address": "", "topic": "", "version": "",
    },
    "nsq_to_file": {
        "channel": "nsq_to_file", "consumer-opt": "", "datetime-format": "%Y-%m-%d_%H",
        "filename-format": "<TOPIC>.<HOST><REV>.<DATETIME>.log", "gzip": "", "gzip-level": "6",
        "host-identifier": "", "http-client-connect-timeout": "2s", "http-client-request-timeout": "5s",
        "log-level": "info", "log-prefix": "[nsq_to_file] ", "lookupd-http-address": "",
        "max-in-flight": "200", "nsqd-tcp-address": "", "output-dir": "/tmp", "rotate-interval": "",
        "rotate-size": "", "skip-empty-files": "", "sync-interval": "30s", "topic": "", "topic-pattern": "",
        "topic-refresh": "1m0s", "version": "", "work-dir": "",
    },
    "nsq_to_http": {
        "channel": "nsq_to_http", "consumer-opt": "", "content-type": "application/octet-stream", "get": "",
        "header": "", "http-client-connect-timeout": "2s", "http-client-request-timeout": "20s",
        "lookupd-http-address": "", "max-in-flight": "200", "mode": "hostpool", "n": "100",
        "nsqd-tcp-address": "", "post": "", "sample": "1", "status-every": "250", "topic": "", "version": "",
    },
    "nsq_to_nsq": {
        "channel": "nsq_to_nsq", "consumer-opt": "", "destination-nsqd-tcp-address": "",
        "destination-topic": "", "lookupd-http-address": "", "max-in-flight": "200", "mode": "hostpool",
        "nsqd-tcp-address": "", "producer-opt": "", "require-json-field": "", "require-json-value": "",
        "status-every": "250", "topic": "", "version": "", "whitelist-json-field": "",
    },
}


def tool_module(tool: str):
    return importlib.import_module(TOOLS[tool])


def test_every_tool_with_real_flags_is_registered():
    assert set(REAL_FLAGS) == set(TOOLS)


@pytest.mark.parametrize("tool", sorted(REAL_FLAGS))
def test_every_real_flag_exists_with_its_default(tool):
    module = tool_module(tool)
    by_name = {f.name: f for f in module.FLAGS}
    options = {o.lstrip("-") for p in module.main.__self__.command().params
               if isinstance(p, click.Option) for o in p.opts}
    for name, default in REAL_FLAGS[tool].items():
        assert name in by_name, "%s lacks -%s" % (tool, name)
        assert name in options, "%s's command lacks --%s" % (tool, name)
        if default:
            assert by_name[name].shown_default() == default, (tool, name, by_name[name].shown_default())


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_version_flag_matches_real_tool(tool):
    names = {f.name for f in tool_module(tool).FLAGS}
    assert ("version" in names) == (tool != "to_nsq")


def read_page(tool: str) -> str:
    with open(os.path.join(ROOT, "man", tool + ".1"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_man_page_options_block_is_current(tool):
    page = read_page(tool)
    assert flags.replace_roff_options(page, tool_module(tool).FLAGS) == page, (
        "man/%s.1 is out of date: run `python -m nsqd_sync.flags %s:FLAGS man/%s.1`" % (tool, TOOLS[tool], tool))


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_man_page_documents_exactly_the_options(tool):
    page = read_page(tool)
    documented = {n.replace("\\-", "-") for n in re.findall(r"^\\fB\\-\\-([a-z0-9\\-]+)\\fR", page, re.M)}
    options = {o.lstrip("-") for p in tool_module(tool).main.__self__.command().params
               if isinstance(p, click.Option) for o in p.opts} - {"help"}
    assert documented == options
    assert page.startswith(".TH %s 1 " % tool.upper())


# ---------------------------------------------------------------- go-nsq client options

def test_client_opts_parse_go_nsq_names_and_values():
    opts = common.parse_client_opts(["max_attempts,7", "dial-timeout,3s", "snappy", "deflate_level,9",
                                     "lookupd_poll_jitter,0.5", "user_agent,x,y"], "consumer")
    assert opts == {"max_attempts": 7, "dial_timeout": 3.0, "snappy": True, "deflate_level": 9,
                    "lookupd_poll_jitter": 0.5, "user_agent": "x,y"}
    kwargs = common.client_kwargs(opts, "consumer")
    assert kwargs == {"max_attempts": 7, "connect_timeout": 3.0, "snappy": True, "deflate_level": 9,
                      "lookupd_poll_jitter": 0.5, "user_agent": "x,y"}
    assert "max_attempts" not in common.client_kwargs(opts, "producer")


@pytest.mark.parametrize("item,reason", [
    ("foo,bar", "invalid option foo"),
    ("max_attempts,-1", "failed to coerce option max_attempts (-1)"),
    ("max_attempts,abc", "failed to coerce option max_attempts (abc)"),
    ("read_timeout,1ms", "invalid read_timeout ! 1ms < 100ms"),
    ("deflate_level,10", "invalid deflate_level ! 10 > 9"),
    ("snappy,maybe", "failed to coerce option snappy (maybe)"),
    ("write_timeout,1s", "option write_timeout is not supported"),
])
def test_client_opts_refuse_bad_keys_and_values(item, reason):
    with pytest.raises(flags.FlagError) as e:
        common.parse_client_opts([item], "consumer")
    assert str(e.value).startswith(reason)


def test_every_client_option_maps_onto_a_client_keyword():
    import inspect

    from nsqd_sync.client import Consumer, Producer

    consumer_kw = set(inspect.signature(Consumer.__init__).parameters)
    producer_kw = set(inspect.signature(Producer.__init__).parameters) | set(
        inspect.signature(__import__("nsqd_sync.client.connection", fromlist=["x"]).identify_fields).parameters)
    identify = {"client_id", "hostname", "user_agent", "heartbeat_interval", "deflate", "deflate_level",
                "snappy", "tls_v1", "output_buffer_size", "output_buffer_timeout", "msg_timeout",
                "sample_rate"}
    tls = {"tls_root_ca_file", "tls_insecure_skip_verify", "tls_cert", "tls_key", "tls_min_version"}
    for key, spec in common.CLIENT_OPTIONS.items():
        if key in tls:
            continue
        assert spec.consumer in consumer_kw, key
        if spec.producer is not None:
            assert spec.producer in producer_kw or spec.producer in identify, key
