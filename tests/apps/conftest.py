"""Fixtures for the nsq_* utilities: run a tool as a subprocess, publish, read /stats.

`run_tool(name, *args, stdin=b"", timeout=30)` runs a tool to completion;
`start_tool(name, *args)` starts one in the background (stdout/stderr to
files, stopped with SIGTERM and checked at teardown).  Tools run as
`python -m nsqd_sync.apps.NAME`, so no PATH is needed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Callable, Iterator, List, Optional, Sequence

import pytest

from nsqd_sync.apps import TOOLS
from tests.helpers import http_request



def tool_argv(name: str, args: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", TOOLS[name]] + [str(a) for a in args]


def run_tool(name: str, *args: str, stdin: bytes = b"", timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(tool_argv(name, args), input=stdin, capture_output=True, timeout=timeout)


class ToolProcess:
    """A tool running in the background, output in files under tmp_path."""

    def __init__(self, name: str, args: Sequence[str], workdir: str, stdin: Optional[bytes] = None) -> None:
        self.name = name
        self.out_path = os.path.join(workdir, "%s-%d.out" % (name, id(self)))
        self.err_path = os.path.join(workdir, "%s-%d.err" % (name, id(self)))
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(tool_argv(name, args), stdout=self._out, stderr=self._err,
                                     stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def stdout(self) -> bytes:
        with open(self.out_path, "rb") as f:
            return f.read()

    def stderr(self) -> str:
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal it and wait; returns the exit code (the process is killed past timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("%s did not exit within %ss: %s" % (self.name, timeout, self.stderr()[-2000:]))
        self._out.close()
        self._err.close()
        return self.proc.returncode

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running after %ss: %s" % (self.name, timeout, self.stderr()[-2000:]))


@pytest.fixture
def start_tool(tmp_path) -> Iterator[Callable[..., ToolProcess]]:
    """start(name, *args, stdin=None) -> ToolProcess; all stopped (SIGTERM, then kill) at teardown."""
    made: List[ToolProcess] = []

    def start(name: str, *args: str, stdin: Optional[bytes] = None) -> ToolProcess:
        p = ToolProcess(name, args, str(tmp_path), stdin)
        made.append(p)
        return p

    yield start
    for p in made:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(5)


def publish(node, topic: str, bodies: Sequence[bytes]) -> None:
    """MPUB bodies (no newlines in them) over HTTP."""
    status, body, _ = http_request(node.http_port, "/mpub?topic=" + topic, "POST", b"\n".join(bodies))
    assert status == 200, body


def topic_stats(node, topic: str) -> dict:
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + topic)
    assert status == 200, body
    topics = json.loads(body)["topics"]
    return topics[0] if topics else {}


def channel_stats(node, topic: str, channel: str) -> dict:
    for c in topic_stats(node, topic).get("channels", []):
        if c["channel_name"] == channel:
            return c
    return {}
