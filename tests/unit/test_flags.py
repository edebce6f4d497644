"""nsqd_sync.flags: Go booleans, the click parameter types, Go-style argv,
precedence (command line > config file > default), click glue and the
version line.  (Durations: test_durations.py.)"""
from __future__ import annotations

import re
import sys

import click
import pytest

from nsqd_sync import flags
from nsqd_sync.flags import Flag, FlagError


@pytest.mark.parametrize("text,value", [("1", True), ("t", True), ("true", True), ("TRUE", True),
                                        ("True", True), ("0", False), ("f", False), ("false", False),
                                        ("FALSE", False), ("False", False)])
def test_parse_bool_like_go(text, value):
    assert flags.parse_bool(text) is value


@pytest.mark.parametrize("text", ["yes", "no", "", "2", "tRuE"])
def test_parse_bool_rejects(text):
    with pytest.raises(ValueError):
        flags.parse_bool(text)


# ---------------------------------------------------------------- argv

FLAGS = [
    Flag("tcp-address", "str", "0.0.0.0:4150", "address"),
    Flag("max-rdy-count", "int", 2500, "max RDY"),
    Flag("msg-timeout", "duration", 60.0, "timeout"),
    Flag("snappy", "bool", True, "snappy"),
    Flag("verbose", "bool", False, "no effect", deprecated="--verbose is deprecated"),
    Flag("lookupd-tcp-address", "strlist", [], "lookupd", cfg="nsqlookupd_tcp_addresses"),
    Flag("percentile", "floatlist", [], "percentiles", cfg="percentiles"),
    Flag("node-id", "int", 1, "node id", validate=lambda v: None if 0 <= v < 1024 else "out of range"),
    Flag("worker-id", "int", None, "use --node-id", alias_of="node-id", deprecated="--worker-id is deprecated"),
    Flag("tls-required", "bool", False, "tls", extra_bool_values=("tcp-https",)),
    Flag("tls-min-version", "str", "tls1.0", "min", choices=("tls1.0", "tls1.2")),
]


@pytest.mark.parametrize("argv,expected", [
    (["-tcp-address=X"], ["--tcp-address=X"]),
    (["-tcp-address", "X"], ["--tcp-address", "X"]),
    (["--tcp-address=X"], ["--tcp-address=X"]),
    (["--tcp-address", "X"], ["--tcp-address", "X"]),
    (["--snappy"], ["--snappy=true"]),
    (["-snappy"], ["--snappy=true"]),
    (["-snappy=false"], ["--snappy=false"]),
    (["--snappy", "positional"], ["--snappy=true", "positional"]),  # a bare bool never takes a value
    (["-max-rdy-count", "5", "-snappy", "-msg-timeout=1s"], ["--max-rdy-count", "5", "--snappy=true",
                                                             "--msg-timeout=1s"]),
    (["-nope=1"], ["--nope=1"]),
    (["-h"], ["--help"]),
    (["-help"], ["--help"]),
    (["--help"], ["--help"]),
    (["--", "-snappy"], ["--", "-snappy"]),
    (["-"], ["-"]),
    (["plain"], ["plain"]),
    (["-lookupd-tcp-address", "a:1", "--lookupd-tcp-address=b:2"],
     ["--lookupd-tcp-address", "a:1", "--lookupd-tcp-address=b:2"]),
])
def test_normalize_argv(argv, expected):
    assert flags.normalize_argv(argv, FLAGS) == expected


# ---------------------------------------------------------------- resolve

def resolve(cli=None, config=None):
    warnings = []
    values = flags.resolve(FLAGS, cli or {}, config or {}, warnings.append)
    return values, warnings


def test_defaults_when_nothing_is_given():
    values, warnings = resolve()
    assert warnings == []
    assert values["tcp_address"] == "0.0.0.0:4150"
    assert values["max_rdy_count"] == 2500
    assert values["msg_timeout"] == 60.0
    assert values["snappy"] is True
    assert values["lookupd_tcp_address"] == []
    assert values["node_id"] == 1
    assert "worker_id" not in values  # an alias has no value of its own


def test_list_defaults_are_copies():
    values, _ = resolve()
    values["lookupd_tcp_address"].append("x:1")
    assert FLAGS[5].default == []


def test_command_line_beats_config_beats_default():
    config = {"max_rdy_count": 9, "msg_timeout": "3s", "tcp_address": "127.0.0.1:1"}
    values, _ = resolve(cli={"max_rdy_count": "11"}, config=config)
    assert values["max_rdy_count"] == 11          # command line
    assert values["msg_timeout"] == 3.0           # config file
    assert values["tcp_address"] == "127.0.0.1:1"  # config file
    assert values["node_id"] == 1                  # default


def test_config_integer_durations_are_milliseconds():
    values, _ = resolve(config={"msg_timeout": 5000})
    assert values["msg_timeout"] == 5.0


def test_config_lists_and_booleans():
    values, _ = resolve(config={"nsqlookupd_tcp_addresses": ["a:1", "b:2"], "snappy": False,
                                "percentiles": [0.99, 0.5]})
    assert values["lookupd_tcp_address"] == ["a:1", "b:2"]
    assert values["snappy"] is False
    assert values["percentile"] == [0.99, 0.5]


def test_unknown_config_key_is_a_warning():
    values, warnings = resolve(config={"no_such_option": 1})
    assert len(warnings) == 1 and "no_such_option" in warnings[0]


def test_repeated_and_comma_separated_lists():
    values, _ = resolve(cli={"lookupd_tcp_address": ("a:1", "b:2"), "percentile": ("0.99,0.95", "0.5")})
    assert values["lookupd_tcp_address"] == ["a:1", "b:2"]
    assert values["percentile"] == [0.99, 0.95, 0.5]


def test_deprecated_flag_warns():
    values, warnings = resolve(cli={"verbose": "true"})
    assert warnings == ["--verbose is deprecated"]


def test_alias_sets_its_target():
    values, warnings = resolve(cli={"worker_id": "7"})
    assert values["node_id"] == 7
    assert warnings == ["--worker-id is deprecated"]


@pytest.mark.parametrize("cli,config,mentions", [
    ({"max_rdy_count": "abc"}, {}, "--max-rdy-count"),
    ({"msg_timeout": "10"}, {}, "--msg-timeout"),
    ({"snappy": "maybe"}, {}, "--snappy"),
    ({"node_id": "1024"}, {}, "--node-id"),
    ({"tls_min_version": "tls9"}, {}, "--tls-min-version"),
    ({}, {"max_rdy_count": "x"}, "max_rdy_count in config file"),
    ({}, {"max_rdy_count": True}, "max_rdy_count in config file"),
    ({}, {"msg_timeout": True}, "msg_timeout in config file"),
    ({}, {"tcp_address": 5}, "tcp_address in config file"),
])
def test_invalid_values_are_flag_errors(cli, config, mentions):
    with pytest.raises(FlagError) as info:
        resolve(cli=cli, config=config)
    assert mentions in str(info.value)


def test_convert_details():
    by_name = {f.name: f for f in FLAGS}
    assert by_name["max-rdy-count"].convert("0x10", "x") == 16  # Go's flag package takes 0x too
    assert by_name["max-rdy-count"].convert(" 12 ", "x") == 12
    assert by_name["tls-required"].convert("tcp-https", "x") == "tcp-https"
    assert by_name["tls-required"].convert("true", "x") is True
    assert by_name["snappy"].convert(False, "x") is False


# ---------------------------------------------------------------- click glue

def make_command(seen):
    @click.command(name="prog")
    @flags.click_options(FLAGS)
    def command(**values):
        seen.update(values)

    return command


def test_run_command_passes_values_parsed_by_click_types():
    seen = {}
    flags.run_command(make_command(seen), "prog", FLAGS,
                      ["-max-rdy-count", "0x5", "--snappy", "-lookupd-tcp-address=a:1", "--lookupd-tcp-address", "b:2",
                       "-msg-timeout=1m15s", "--percentile=0.99,0.5"])
    assert seen["max_rdy_count"] == 5
    assert seen["snappy"] is True
    assert seen["lookupd_tcp_address"] == ("a:1", "b:2")
    assert seen["msg_timeout"] == 75.0
    assert seen["percentile"] == ([0.99, 0.5],)
    assert seen["node_id"] is None  # not given: resolve() fills the default
    values = flags.resolve(FLAGS, seen, {}, lambda m: None)  # parsed values go through resolve unchanged
    assert (values["max_rdy_count"], values["msg_timeout"], values["percentile"]) == (5, 75.0, [0.99, 0.5])


@pytest.mark.parametrize("argv,text", [
    (["--nope"], "prog: flag provided but not defined: -nope (see prog --help)\n"),
    (["-nope=1"], "prog: flag provided but not defined: -nope (see prog --help)\n"),
])
def test_unknown_flag_is_one_line_and_exit_2(capsys, argv, text):
    with pytest.raises(SystemExit) as info:
        flags.run_command(make_command({}), "prog", FLAGS, argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", text)


def test_missing_value_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        flags.run_command(make_command({}), "prog", FLAGS, ["--max-rdy-count"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: ") and err.count("\n") == 1


def test_flag_error_in_command_is_one_line_and_exit_2(capsys):
    @click.command(name="prog")
    @flags.click_options(FLAGS)
    def command(**values):
        flags.resolve(FLAGS, values, {}, lambda m: None)

    with pytest.raises(SystemExit) as info:
        flags.run_command(command, "prog", FLAGS, ["--msg-timeout=5x"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: invalid value '5x' for --msg-timeout") and err.count("\n") == 1


def test_help_shows_go_defaults(capsys):
    try:
        flags.run_command(make_command({}), "prog", FLAGS, ["-h"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "--msg-timeout" in out and "(default 1m0s)" in out


def test_version_line_shape():
    line = flags.version_line("nsqd")
    assert re.match(r"^nsqd v1\.3\.0(-[a-z]+)? \(built w/[a-z0-9.-]+\)$", line), line
    v = sys.version_info
    assert line.endswith("%d.%d.%d)" % (v.major, v.minor, v.micro))


def test_load_config_file(tmp_path):
    path = tmp_path / "x.cfg"
    path.write_text('msg_timeout = "3s"\nmax_rdy_count = 9\nnsqlookupd_tcp_addresses = ["a:1"]\n')
    assert flags.load_config_file(str(path)) == {"msg_timeout": "3s", "max_rdy_count": 9,
                                                 "nsqlookupd_tcp_addresses": ["a:1"]}
    bad = tmp_path / "bad.cfg"
    bad.write_text("x = \n")
    with pytest.raises(FlagError):
        flags.load_config_file(str(bad))
    with pytest.raises(FlagError):
        flags.load_config_file(str(tmp_path / "missing.cfg"))


# ---------------------------------------------------------------- click parameter types

def test_go_duration_type():
    t = flags.GoDuration()
    assert t.convert("1m15s", None, None) == 75.0
    assert t.convert(2.5, None, None) == 2.5  # already parsed: seconds
    for bad in ("10", "5x", True):
        with pytest.raises(click.BadParameter):
            t.convert(bad, None, None)


def test_go_bool_type():
    t = flags.GoBool(("tcp-https",))
    assert t.convert("t", None, None) is True and t.convert("0", None, None) is False
    assert t.convert(False, None, None) is False
    assert t.convert("tcp-https", None, None) == "tcp-https"
    with pytest.raises(click.BadParameter):
        t.convert("yes", None, None)


def test_go_int_type_is_an_int_range():
    t = flags.GoInt(0, 1023)
    assert isinstance(t, click.IntRange)
    assert t.convert("0x10", None, None) == 16 and t.convert(" 7 ", None, None) == 7
    for bad in ("1024", "-1", "x", True):
        with pytest.raises(click.BadParameter):
            t.convert(bad, None, None)


def test_positive_and_non_negative_become_click_ranges():
    pos = Flag("max-rdy-count", "int", 2500, "x", validate=flags.positive)
    nonneg = Flag("sync-timeout", "duration", 2.0, "x", validate=flags.non_negative)
    assert isinstance(pos.param_type, click.IntRange) and pos.validate is None
    with pytest.raises(FlagError, match="must be greater than 0"):
        pos.convert("0", "--max-rdy-count")
    assert nonneg.convert("0s", "--sync-timeout") == 0.0
    with pytest.raises(FlagError, match="must not be negative"):
        nonneg.convert("-1s", "--sync-timeout")


def test_choices_are_a_click_choice():
    spec = Flag("tls-min-version", "str", "tls1.0", "min", choices=("", "tls1.0", "tls1.2"))
    assert isinstance(spec.param_type, click.Choice)
    assert spec.convert("", "x") == "" and spec.convert("tls1.2", "x") == "tls1.2"
    with pytest.raises(FlagError, match="must be one of"):
        spec.convert("tls9", "--tls-min-version")


def test_float_list_type():
    t = flags.FloatList()
    assert t.convert("0.99, 0.5", None, None) == [0.99, 0.5]
    assert t.convert([0.9, "0.1"], None, None) == [0.9, 0.1]
    with pytest.raises(click.BadParameter):
        t.convert("x", None, None)


CONFIG_FLAGS = FLAGS + [Flag("config", "str", "", "config file")]


def run_with_config(tmp_path, text, argv, capsys=None):
    path = tmp_path / "x.cfg"
    path.write_text(text)
    seen = {}

    @click.command(name="prog")
    @flags.click_options(CONFIG_FLAGS)
    def command(**values):
        seen["values"] = flags.resolve(CONFIG_FLAGS, values, {}, seen.setdefault("warnings", []).append)

    flags.run_command(command, "prog", CONFIG_FLAGS, ["--config", str(path)] + argv)
    return seen["values"], seen.get("warnings", [])


def test_config_file_goes_through_click_default_map(tmp_path):
    values, warnings = run_with_config(
        tmp_path, 'msg_timeout = 5000\nmax_rdy_count = 9\nsnappy = false\nverbose = true\n'
                  'nsqlookupd_tcp_addresses = ["a:1", "b:2"]\npercentiles = [0.99]\n', ["--max-rdy-count=11"])
    assert values["msg_timeout"] == 5.0            # config integer durations are milliseconds
    assert values["max_rdy_count"] == 11           # the command line wins
    assert values["snappy"] is False
    assert values["lookupd_tcp_address"] == ["a:1", "b:2"]
    assert values["percentile"] == [0.99]
    assert values["node_id"] == 1                  # default
    assert warnings == []                          # a deprecated key in the file is not a flag used


def test_bad_config_value_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_with_config(tmp_path, 'max_rdy_count = "abc"\n', [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: invalid value 'abc' for max_rdy_count in config file") and err.count("\n") == 1


def test_unknown_config_key_warns_once(tmp_path, capsys):
    values, _ = run_with_config(tmp_path, 'no_such = 1\n', [])
    assert capsys.readouterr().err.count("unknown option 'no_such'") == 1
