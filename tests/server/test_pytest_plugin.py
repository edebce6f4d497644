"""The pytest plugin, tested as a user meets it: pytest runs in a subprocess on a test file.

`pytester` (pytest's own fixture for testing plugins) writes test files into
a temporary directory and runs pytest on them in a child process; the plugin
is found there through its `pytest11` entry point only, as in a project that
merely installed the package.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from nsqd_sync.testing import flag_args
from tests.helpers import pid_gone

pytest_plugins = ["pytester"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "nsqd_sync")
RUN_TIMEOUT = 100.0


def readme_example() -> str:
    """The example test file of README's "Testing your code against NSQ"."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    marker = "<!-- example test file: test_orders.py"
    start = text.index("```python\n", text.index(marker)) + len("```python\n")
    return text[start:text.index("```\n", start)]


def run_subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=RUN_TIMEOUT)


# ---------------------------------------------------------------- registration


def test_plugin_is_registered_through_pytest11():
    eps = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "nsq_sync"]
    assert [ep.value for ep in eps] == ["nsqd_sync.testing.pytest_plugin"]


def test_only_the_plugin_module_imports_pytest():
    importers = []
    for dirpath, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    if re.search(r"^\s*(import pytest|from pytest|from _pytest)", f.read(), re.M):
                        importers.append(os.path.relpath(path, ROOT))
    assert importers == [os.path.join("nsqd_sync", "testing", "pytest_plugin.py")]
    # and importing the testing helpers does not pull pytest in
    out = subprocess.run([sys.executable, "-c", "import sys, nsqd_sync.testing, "
                          "nsqd_sync.testing.nsq_cluster; print('pytest' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_flag_args_are_go_style_flags():
    assert flag_args(mem_queue_size=0, snappy=True, deflate=False, tls_cert=None,
                     lookupd_tcp_address=["a:1", "b:2"]) == [
        "--mem-queue-size=0", "--snappy=true", "--deflate=false",
        "--lookupd-tcp-address=a:1", "--lookupd-tcp-address=b:2"]


# ---------------------------------------------------------------- a user's test file


def test_readme_example_file_passes(pytester: pytest.Pytester):
    pytester.makepyfile(test_orders=readme_example())
    result = run_subprocess(pytester, "-v")
    result.assert_outcomes(passed=5)


def test_a_failed_test_still_gets_its_nodes_stopped(pytester: pytest.Pytester):
    pids = pytester.path / "pids.json"
    pytester.makepyfile(test_fails=textwrap.dedent("""
        import json, os

        PIDS = %r

        def test_fails_with_nodes_running(nsqd, nsqd_factory, nsq_cluster, nsqlookupd):
            other = nsqd_factory(mem_queue_size=0)
            procs = [nsqd, other, nsqlookupd, nsq_cluster.lookupd, *nsq_cluster.nodes]
            with open(PIDS, "w") as f:
                json.dump([p.pid for p in procs], f)
            nsqd.pub("orders", b"x")
            assert nsqd.depth("orders") == 2, "this test fails on purpose"

        def test_next_test_finds_them_stopped():
            with open(PIDS) as f:
                pids = json.load(f)
            for pid in pids:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                raise AssertionError("node pid %%d still running" %% pid)
    """ % str(pids)))
    result = run_subprocess(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    started = json.loads(pids.read_text())
    assert len(started) == 6
    assert all(pid_gone(pid) for pid in started)
    # the failure report carries the nodes' logs
    text = result.stdout.str()
    assert "this test fails on purpose" in text
    assert "nsqd pid %d log" % started[0] in text
    assert "TCP: listening on 127.0.0.1:" in text


def test_two_runs_at_once_get_their_own_ports(pytester: pytest.Pytester):
    """Two pytest processes, each holding a node until it has seen the other's ports."""
    for name in ("a", "b"):
        other = "b" if name == "a" else "a"
        sub = pytester.mkdir("run_" + name)
        (sub / ("test_run_%s.py" % name)).write_text(textwrap.dedent("""
            import json, os, time

            def test_ports(nsqd, nsqlookupd):
                mine = [nsqd.tcp_port, nsqd.http_port, nsqlookupd.tcp_port, nsqlookupd.http_port]
                with open(%r, "w") as f:
                    json.dump(mine, f)
                deadline = time.monotonic() + 60
                while not os.path.exists(%r):
                    assert time.monotonic() < deadline, "the other run never started"
                    time.sleep(0.05)
                time.sleep(0.1)  # the other run's file is complete (written before its check)
                with open(%r) as f:
                    theirs = json.load(f)
                assert not set(mine) & set(theirs), (mine, theirs)
                nsqd.pub("t", b"still serving")
                assert nsqd.depth("t") == 1
        """ % (str(pytester.path / (name + ".json")), str(pytester.path / (other + ".json")),
               str(pytester.path / (other + ".json")))))
    procs = [subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                               "--basetemp", str(pytester.path / ("tmp_" + name)),
                               "run_" + name],
                              cwd=str(pytester.path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for name in ("a", "b")]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=RUN_TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
        assert "1 passed" in out, out
    a = json.loads((pytester.path / "a.json").read_text())
    b = json.loads((pytester.path / "b.json").read_text())
    assert not set(a) & set(b)


def test_session_node_is_shared_and_topics_are_per_test(pytester: pytest.Pytester):
    seen = pytester.path / "seen.json"
    pytester.makepyfile(test_session=textwrap.dedent("""
        import json

        SEEN = %r

        def test_first(nsqd_session):
            topic = nsqd_session.topic("orders")
            assert topic.startswith(nsqd_session.prefix)
            nsqd_session.mpub(topic, [b"a", b"b"])
            nsqd_session.wait_for_depth(topic, 2)
            assert nsqd_session.topic_names() == [topic]
            with open(SEEN, "w") as f:
                json.dump([nsqd_session.pid, topic], f)

        def test_second(nsqd_session, nsqd_session_node):
            with open(SEEN) as f:
                pid, first_topic = json.load(f)
            assert nsqd_session.pid == pid                  # the same node
            assert nsqd_session.topic("orders") != first_topic
            assert first_topic not in nsqd_session_node.topic_names()  # deleted after test_first
            assert nsqd_session.topic_names() == []

        def test_cluster(nsq_cluster_session):
            topic = nsq_cluster_session.topic("events")
            for node in nsq_cluster_session.nodes:
                node.pub(topic, b"x")
            nsq_cluster_session.wait_for_producers(topic)
            assert len(nsq_cluster_session.lookup(topic)) == 2
    """ % str(seen)))
    result = run_subprocess(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert pid_gone(json.loads(seen.read_text())[0])


# ---------------------------------------------------------------- start-up benchmark


def test_nsq_bench_startup_prints_its_three_figures():
    out = subprocess.run([sys.executable, "-m", "nsqd_sync.bench", "startup", "--runs=2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    for line, what in zip(lines, ("listening", "/ping answers OK", "exit after SIGTERM")):
        m = re.search(r"\[bench_startup\] .* %s.*median +([0-9.]+)s +max +([0-9.]+)s +\(2 runs\)"
                      % re.escape(what), line)
        assert m, line
        assert 0 < float(m.group(1)) <= float(m.group(2))
