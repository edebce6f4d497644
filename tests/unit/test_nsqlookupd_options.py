"""nsqlookupd's flags: names and defaults as NSQ 1.3.0, parsing, config file, man page, CLI exits."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from nsqd_sync import flags
from nsqd_sync.flags import FlagError
from nsqlookupd_sync.options import FLAGS, Options, split_address

MAN_PAGE = os.path.join(os.path.dirname(__file__), "..", "..", "man", "nsqlookupd.8")
VERSION_RE = re.compile(r"^nsqlookupd v\d+\.\d+\.\d+(-[a-z]+)? \(built w/[a-z0-9.-]+\)$")


def parse(argv, config=None) -> Options:
    """argv (Go style) -> Options, the way the command does it, without starting anything."""
    import click

    captured = {}

    @click.command()
    @flags.click_options(FLAGS)
    def cmd(**raw):
        captured.update(raw)

    cmd.main(args=flags.normalize_argv(argv, FLAGS), standalone_mode=False)
    values = flags.resolve(FLAGS, captured, config or {}, lambda msg: None)
    return Options.from_values(values)


def test_flag_names_are_nsqs():
    assert sorted(f.name for f in FLAGS) == [
        "broadcast-address", "config", "http-address", "inactive-producer-timeout", "log-level",
        "log-prefix", "tcp-address", "tombstone-lifetime", "verbose", "version"]


def test_defaults():
    opts = parse([])
    assert opts.tcp_address == "0.0.0.0:4160"
    assert opts.http_address == "0.0.0.0:4161"
    assert opts.inactive_producer_timeout == 300.0
    assert opts.tombstone_lifetime == 45.0
    assert opts.log_level == "info"
    assert opts.log_prefix == "[nsqlookupd] "
    assert opts.broadcast_address == flags.default_hostname()
    shown = {f.name: f.shown_default() for f in FLAGS}
    assert shown["inactive-producer-timeout"] == "5m0s"
    assert shown["tombstone-lifetime"] == "45s"


@pytest.mark.parametrize("argv", [
    ["-tombstone-lifetime=10s"], ["-tombstone-lifetime", "10s"],
    ["--tombstone-lifetime=10s"], ["--tombstone-lifetime", "10s"],
])
def test_go_style_forms(argv):
    assert parse(argv).tombstone_lifetime == 10.0


def test_durations_and_values():
    opts = parse(["-inactive-producer-timeout=1h30m", "-tcp-address", "127.0.0.1:0",
                  "--http-address=[::1]:4161", "-log-level=debug", "--verbose",
                  "-broadcast-address=b.example"])
    assert opts.inactive_producer_timeout == 5400.0
    assert opts.tcp_address == "127.0.0.1:0"
    assert opts.http_address == "[::1]:4161"
    assert opts.log_level_number == 10
    assert opts.broadcast_address == "b.example"


def test_config_file_merge(tmp_path):
    path = tmp_path / "lookupd.toml"
    path.write_text('tcp_address = "127.0.0.1:5160"\ninactive_producer_timeout = 2000\n'
                    'tombstone_lifetime = "1m"\nlog_level = "warn"\n')
    config = flags.load_config_file(str(path))
    opts = parse([], config)
    assert opts.tcp_address == "127.0.0.1:5160"
    assert opts.inactive_producer_timeout == 2.0  # integers in config files are milliseconds
    assert opts.tombstone_lifetime == 60.0
    assert opts.log_level == "warn"
    # the command line wins
    assert parse(["-tcp-address=127.0.0.1:6160"], config).tcp_address == "127.0.0.1:6160"


@pytest.mark.parametrize("argv", [
    ["--tombstone-lifetime=xx"], ["--inactive-producer-timeout=-1s"], ["--log-level=bogus"],
    ["--tcp-address=bogus"], ["--http-address=1.2.3.4:99999"], ["--verbose=maybe"],
])
def test_bad_values(argv):
    with pytest.raises(FlagError):
        parse(argv)


@pytest.mark.parametrize("addr,expected", [
    ("0.0.0.0:4160", ("0.0.0.0", 4160)), (":4160", ("", 4160)), ("[::]:0", ("::", 0)),
    ("localhost:1", ("localhost", 1)),
])
def test_split_address(addr, expected):
    assert split_address(addr) == expected


@pytest.mark.parametrize("addr", ["4160", "::1:4160", "h:x", "h:70000", "[::1:5"])
def test_split_address_errors(addr):
    with pytest.raises(ValueError):
        split_address(addr)


# ---------------------------------------------------------------- man page

def _man_text() -> str:
    with open(MAN_PAGE, encoding="utf-8") as f:
        return f.read().replace("\\-", "-").replace("\\(dq", '"')


def _man_entries(text: str) -> dict:
    """--flag-name -> the paragraph that documents it (from .TP to the next .TP/.SH)."""
    entries = {}
    for block in re.split(r"^\.(?:TP|SH)\b.*$", text, flags=re.M):
        m = re.match(r"\s*\.B[RI]?\s+--([a-z-]+)", block)
        if m:
            entries[m.group(1)] = block
    return entries


def test_man_page_documents_every_flag_with_its_default():
    entries = _man_entries(_man_text())
    for spec in FLAGS:
        assert spec.name in entries, "--%s is missing from man/nsqlookupd.8" % spec.name
        para = entries[spec.name]
        assert "Default:" in para, "--%s has no default in the man page" % spec.name
        shown = spec.shown_default() or "none"
        assert shown in para, "--%s: default %r not in the man page" % (spec.name, shown)


def test_man_page_has_no_unknown_flags():
    names = {f.name for f in FLAGS} | {"help"}
    assert set(_man_entries(_man_text())) <= names


# ---------------------------------------------------------------- CLI exits

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsqlookupd_sync", *args], capture_output=True,
                          timeout=20, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("form", ["--version", "-version", "--version=true"])
def test_version(form):
    proc = _run(form)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1
    assert VERSION_RE.match(out.strip()), out
    assert out.startswith("nsqlookupd v1.3.0-sync (built w/python")
    assert proc.stderr == b""


def test_version_wins_over_a_broken_config_file(tmp_path):
    proc = _run("--config=%s" % (tmp_path / "missing.toml"), "--version")
    assert proc.returncode == 0 and VERSION_RE.match(proc.stdout.decode().strip())


@pytest.mark.parametrize("argv", [
    ["--bogus"], ["-bogus=1"], ["--tombstone-lifetime=xx"], ["--log-level=nope"],
    ["--tcp-address=nope"], ["--config=/nonexistent/lookupd.toml"],
])
def test_bad_flag_is_one_line_and_exit_2(argv):
    proc = _run(*argv)
    assert proc.returncode == 2
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("nsqlookupd: ")


def test_unknown_flag_message_is_gos():
    proc = _run("-bogus")
    assert proc.stderr.decode().startswith("nsqlookupd: flag provided but not defined: -bogus")


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for spec in FLAGS:
        assert "--" + spec.name in text
