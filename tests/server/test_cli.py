"""The `nsqd` command line as scripts and client test harnesses use it: Go-style
flags, --version, one-line errors with exit code 2, --config (TOML), the log
line format on stderr, the listening lines, and prompt exit on SIGTERM/SIGINT.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import List, Sequence

import pytest

from nsqd_sync.guid import id_parts
from nsqd_sync.options import FLAGS
from tests.helpers import command_for, http_request

pytestmark = pytest.mark.timeout(60)

VERSION_LINE = re.compile(r"^nsqd v(\d+\.\d+\.\d+)(-[a-z]+)? \(built w/[a-z0-9.-]+\)\n$")
LOG_LINE = re.compile(r"^\[nsqd\] (\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\.\d{6} (DEBUG|INFO|WARNING|ERROR|FATAL): ")


def run_nsqd(args: Sequence[str], timeout: float = 20.0, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command_for("nsqd") + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, **kw)


# ---------------------------------------------------------------- --version, --help

@pytest.mark.parametrize("argv", [["--version"], ["-version"], ["--version=true"], ["-version=true"]])
def test_version_prints_one_line_on_stdout(argv):
    r = run_nsqd(argv)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    m = VERSION_LINE.match(out)
    assert m, out
    assert m.group(1) == "1.3.0"
    assert r.stderr == b""


def test_console_script_runs():
    script = os.path.join(os.path.dirname(sys.executable), "nsqd")
    if not os.path.exists(script):
        pytest.skip("the nsqd console script is not installed next to this interpreter")
    r = subprocess.run([script, "--version"], capture_output=True, timeout=20)
    assert r.returncode == 0 and VERSION_LINE.match(r.stdout.decode()), r


def test_help_lists_every_flag():
    r = run_nsqd(["--help"])
    assert r.returncode == 0
    text = r.stdout.decode()
    for flag in FLAGS:
        assert "--" + flag.name in text, flag.name


# ---------------------------------------------------------------- bad flags

@pytest.mark.parametrize("argv", [
    ["--no-such-flag"],
    ["-no-such-flag=1"],
    ["--max-rdy-count=abc"],
    ["-max-rdy-count", "abc"],
    ["--msg-timeout=5x"],
    ["--msg-timeout", "10"],
    ["--node-id=5000"],
    ["--log-level=nope"],
    ["--snappy=maybe"],
    ["--tcp-address=no-port"],
    ["--http-address=127.0.0.1:99999"],
    ["--tls-min-version=tls9"],
    ["--msg-timeout=20m", "--max-msg-timeout=10m"],
    ["--msg-timeout"],
    ["--config=/nonexistent/nsqd.cfg"],
])
def test_bad_flags_give_one_line_and_exit_2(argv, tmp_path):
    r = run_nsqd(["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                  "--data-path=" + str(tmp_path)] + argv)
    assert r.returncode == 2, r
    assert r.stdout == b""
    err = r.stderr.decode()
    assert err.endswith("\n") and err.count("\n") == 1 and err.strip(), err
    assert "listening" not in err


def test_bad_config_file_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "nsqd.cfg"
    cfg.write_text('max_rdy_count = "not closed\n')
    r = run_nsqd(["--config=" + str(cfg), "--data-path=" + str(tmp_path)])
    assert r.returncode == 2
    assert r.stderr.decode().count("\n") == 1


# ---------------------------------------------------------------- flags, config, precedence

def test_flags_in_every_go_form(nsqd_factory, conns, tmp_path):
    data = tmp_path / "space-form"
    data.mkdir()
    node = nsqd_factory(
        "-tcp-address", "127.0.0.1:0",        # Go: -flag value (overrides the harness' own)
        "-max-rdy-count", "7",
        "--msg-timeout", "2s",
        "-max-msg-timeout=1m30s",
        "--max-heartbeat-interval=5s",
        "--snappy",                            # bare booleans
        "-deflate=false",
        "--verbose",                           # deprecated, accepted
        "-log-prefix=[x] ",
        "--tls-root-ca-file=",
        "-node-id", "5",
        "-data-path", str(data),
        data_path=str(tmp_path),
    )
    conn = conns(node)
    answer = conn.identify()
    assert (answer["max_rdy_count"], answer["msg_timeout"], answer["max_msg_timeout"]) == (7, 2000, 90000)
    assert answer["deflate"] is False
    bad = conns(node)
    bad.send("IDENTIFY", b'{"heartbeat_interval": 5001}')
    bad.expect_error("E_BAD_BODY IDENTIFY heartbeat interval (5001) is invalid")
    conn.sub("t", "c", rdy=1)
    conns(node).pub("t", b"x")
    assert id_parts(conn.message().id)[1] == 5  # --node-id is in every message ID
    listening = [line for line in node.log_text().splitlines() if "listening on" in line]
    assert listening and all(line.startswith("[x] ") for line in listening)
    assert node.stop() == 0
    assert (data / "nsqd.dat").exists()  # the last --data-path won


def test_worker_id_is_a_deprecated_boolean():
    r = run_nsqd(["--worker-id", "--version"])
    assert r.returncode == 0 and VERSION_LINE.match(r.stdout.decode()), r


def test_config_file_with_command_line_precedence(nsqd_factory, conns, tmp_path):
    cfg = tmp_path / "nsqd.cfg"
    cfg.write_text("\n".join([
        "# NSQ's config file keys",
        'tcp_address = "127.0.0.1:1"',   # the command line's --tcp-address wins
        "max_rdy_count = 9",
        'msg_timeout = "3s"',
        'max_msg_timeout = "20s"',
        "max_msg_size = 1000",
        'log_prefix = "[cfg] "',
        "",
    ]))
    node = nsqd_factory("--config=" + str(cfg), "--max-rdy-count=11")
    answer = conns(node).identify()
    assert (answer["max_rdy_count"], answer["msg_timeout"], answer["max_msg_timeout"]) == (11, 3000, 20000)
    big = conns(node)
    big.send("PUB t", b"x" * 1001)
    big.expect_error("E_BAD_MESSAGE PUB message too big 1001 > 1000")
    assert all(line.startswith("[cfg] ") for line in node.log_text().splitlines() if "listening on" in line)


def test_default_data_path_is_the_working_directory(tmp_path):
    proc = subprocess.Popen(command_for("nsqd") + ["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"],
                            cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _read_until_listening(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()
    meta = json.loads((tmp_path / "nsqd.dat").read_text())
    assert meta["version"] == "1.3.0"


# ---------------------------------------------------------------- logs and listening lines

def _read_until_listening(proc: subprocess.Popen, timeout: float = 15.0) -> List[str]:
    """stderr lines up to and including the HTTP listening line."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = proc.stderr.readline()
        if not raw:
            break
        lines.append(raw.decode())
        if "HTTP: listening on" in lines[-1]:
            return lines
    raise AssertionError("no listening lines: %r" % lines)


def test_log_lines_on_stderr_in_nsq_format(tmp_path):
    proc = subprocess.Popen(command_for("nsqd") + ["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                                                   "--data-path=" + str(tmp_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = _read_until_listening(proc)
        tcp = [line for line in lines if "TCP: listening on" in line]
        http = [line for line in lines if "HTTP: listening on" in line]
        assert len(tcp) == 1 and len(http) == 1
        m = re.match(LOG_LINE.pattern + r"TCP: listening on 127\.0\.0\.1:(\d+)\n$", tcp[0])
        assert m, tcp[0]
        tcp_port = int(m.group(3))
        assert 0 < tcp_port < 65536
        stamp = datetime.datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S")
        assert abs((datetime.datetime.now() - stamp).total_seconds()) < 60
        m = re.match(LOG_LINE.pattern + r"HTTP: listening on 127\.0\.0\.1:(\d+)\n$", http[0])
        assert m, http[0]
        http_port = int(m.group(3))
        status, body, _ = http_request(http_port, "/ping")
        assert (status, body) == (200, b"OK")
        for line in lines:
            assert LOG_LINE.match(line), line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert out == b""  # nothing on stdout
        for line in err.decode().splitlines():
            assert LOG_LINE.match(line), line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


# ---------------------------------------------------------------- signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_promptly_with_clients_connected(nsqd_factory, conns, sig):
    node = nsqd_factory()
    sub = conns(node)
    sub.sub("t", "c", rdy=5)
    conns(node).mpub("t", [b"a", b"b"])
    sub.messages(2)
    conns(node)  # connected, idle
    t0 = time.monotonic()
    node.proc.send_signal(sig)
    node.proc.wait(10)
    assert time.monotonic() - t0 < 3.0
    assert node.proc.returncode == 0
