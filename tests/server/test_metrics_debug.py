"""GET /metrics (Prometheus text format) and the Python /debug/pprof pages and signals."""
from __future__ import annotations

import re
import signal
from typing import Dict, Tuple

import pytest
import requests

from nsqd_sync import wire
from tests.helpers import NodeProcess, RawConn, wait_for

pytestmark = pytest.mark.timeout(60)

_HELP = re.compile(r"# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*")
_TYPE = re.compile(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)")
_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? '
                     r"(-?[0-9.e+-]+|NaN|\+Inf|-Inf)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess("nsqd", args=["--e2e-processing-latency-percentile=0.5"],
                    data_path=str(tmp_path_factory.mktemp("metrics")))
    yield n
    n.stop()


def parse_metrics(text: str) -> Tuple[Dict[str, str], Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]]:
    """Parse the exposition format line by line; every line must be HELP, TYPE or a sample."""
    types: Dict[str, str] = {}
    helps = set()
    samples: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float] = {}
    assert text.endswith("\n")
    for line in text.split("\n")[:-1]:
        m = _HELP.fullmatch(line)
        if m:
            assert m.group(1) not in helps, line
            helps.add(m.group(1))
            continue
        m = _TYPE.fullmatch(line)
        if m:
            assert m.group(1) not in types, "TYPE given twice: " + line
            assert m.group(1) in helps, "TYPE before HELP: " + line
            types[m.group(1)] = m.group(2)
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, "not a valid exposition line: %r" % line
        name = m.group(1)
        assert name in types, "sample before its TYPE: " + line
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        key = (name, labels)
        assert key not in samples, "duplicate sample: " + line
        samples[key] = float(m.group(4))
    return types, samples


def test_metrics_match_stats(node):
    base = "http://%s" % node.http_address
    conn = RawConn(node.tcp_port, timeout=10.0)
    conn.identify()
    conn.send("SUB mt_topic mt_chan")
    assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    conn.send("RDY 1")
    requests.post(base + "/mpub?topic=mt_topic", data=b"a\nbb\nccc", timeout=10)
    msg = conn.message()
    conn.send("RDY 0")  # keep the other two queued
    conn.send("FIN " + msg[2].decode())
    requests.post(base + "/channel/pause?topic=mt_topic&channel=mt_chan", timeout=10)
    requests.post(base + "/topic/create?topic=mt_quote", timeout=10)
    wait_for(lambda: requests.get(base + "/stats?format=json&topic=mt_topic", timeout=10).json()
             ["topics"][0]["e2e_processing_latency"]["count"] == 1, message="FIN recorded")

    r = requests.get(base + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse_metrics(r.text)
    st = requests.get(base + "/stats?format=json&topic=mt_topic", timeout=10).json()
    topic = st["topics"][0]
    channel = topic["channels"][0]
    t_labels = (("topic", "mt_topic"),)
    c_labels = (("channel", "mt_chan"), ("topic", "mt_topic"))
    for key in ("depth", "backend_depth", "message_count", "message_bytes"):
        assert samples[("nsq_topic_" + key, t_labels)] == topic[key], key
    assert samples[("nsq_topic_paused", t_labels)] == 0
    assert samples[("nsq_topic_channel_count", t_labels)] == 1
    for key in ("depth", "backend_depth", "in_flight_count", "deferred_count", "message_count", "requeue_count",
                "timeout_count", "client_count"):
        assert samples[("nsq_channel_" + key, c_labels)] == channel[key], key
    assert samples[("nsq_channel_paused", c_labels)] == 1
    assert (samples[("nsq_channel_depth", c_labels)], samples[("nsq_channel_message_count", c_labels)]) == (2, 3)
    assert types["nsq_topic_message_count"] == "counter" and types["nsq_channel_depth"] == "gauge"
    latency = samples[("nsq_e2e_processing_latency_seconds", (c_labels[0], ("quantile", "0.5"), c_labels[1]))]
    assert 0 < latency < 30
    assert ("nsq_e2e_processing_latency_seconds", (("quantile", "0.5"),) + t_labels) in samples
    assert samples[("nsq_topic_depth", (("topic", "mt_quote"),))] == 0
    assert samples[("nsq_healthy", ())] == 1
    assert samples[("nsq_clients", ())] >= 1
    assert samples[("nsq_info", (("version", "1.3.0"),))] == 1
    assert samples[("process_resident_memory_bytes", ())] > 1_000_000
    assert samples[("process_threads", ())] >= 4
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert types["process_cpu_seconds_total"] == "counter"
    conn.close()


def test_pprof_index_and_cmdline(node):
    base = "http://%s/debug/pprof/" % node.http_address
    r = requests.get(base, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    for name in ("goroutine", "profile", "heap", "cmdline"):
        assert "href='%s'" % name in r.text
    r = requests.get(base + "cmdline", timeout=10)
    assert "--http-address=127.0.0.1:0" in r.text.split("\x00")


def test_goroutine_dump_names_every_thread(node):
    conn = RawConn(node.tcp_port, timeout=10.0)
    conn.identify()
    conn.send("SUB dump_t ch")
    assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    r = requests.get("http://%s/debug/pprof/goroutine" % node.http_address, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = r.text
    assert re.match(r"thread profile: total \d+\n", text)
    names = re.findall(r'^Thread "([^"]+)" \(ident \d+, native \d+', text, re.M)
    assert names[0] == "MainThread"
    assert "nsqd-http-accept" in names and "nsqd-tcp-accept" in names
    assert any(n.startswith("nsqd-pump-127.0.0.1:") for n in names)
    assert any(n.startswith("nsqd-topic-dump_t") for n in names)
    assert 'File "' in text and "in do_pprof_goroutine" in text  # the request's own stack
    conn.close()


def test_profile_samples_every_thread(node):
    base = "http://%s" % node.http_address
    r = requests.get(base + "/debug/pprof/profile?seconds=1", timeout=20)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = r.text
    assert text.startswith("Python sampling CPU profile (all threads)\n")
    m = re.search(r"duration ([0-9.]+)s, (\d+) samples at 100 Hz", text)
    assert m and 0.9 <= float(m.group(1)) < 5 and int(m.group(2)) >= 20
    assert re.search(r"^\s+\S+\s+\d+\s+\d+  MainThread$", text, re.M)
    assert re.search(r"^\s+\S+\s+\d+\s+\d+  nsqd-http-accept$", text, re.M)
    assert "functions by self samples" in text and "functions by cumulative samples" in text


def test_heap_starts_tracing_on_first_request(node):
    base = "http://%s/debug/pprof/heap" % node.http_address
    first = requests.get(base, timeout=20).text
    assert first.startswith("Python heap profile (tracemalloc)\n")
    assert "tracing started by this request" in first
    requests.post("http://%s/mpub?topic=heap_t" % node.http_address, data=b"x" * 100 + b"\n" * 50, timeout=10)
    second = requests.get(base + "?limit=5", timeout=20).text
    assert "tracing started by this request" not in second
    assert re.search(r"traced memory: current \d+ bytes", second)
    rows = re.findall(r"^\s+\d+ B\s+\d+ blocks", second, re.M)
    assert 1 <= len(rows) <= 5
    grouped = requests.get(base + "?limit=2&group=traceback", timeout=20).text
    assert "traceback:" in grouped
    assert requests.get(base + "?stop=1", timeout=20).text == "tracemalloc stopped\n"


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGQUIT])
def test_signal_dumps_threads_to_the_log_and_keeps_running(tmp_path, sig):
    node = NodeProcess("nsqd", data_path=str(tmp_path))
    try:
        assert requests.get("http://%s/ping" % node.http_address, timeout=10).text == "OK"  # fully started
        node.proc.send_signal(sig)
        wait_for(lambda: "THREADS: dump on signal %s" % sig.name in node.log_text(), timeout=10,
                 message="thread dump in the log")
        wait_for(lambda: 'Thread "nsqd-http-accept"' in node.log_text(), message="named threads in the dump")
        assert node.proc.poll() is None
        assert requests.get("http://%s/ping" % node.http_address, timeout=10).text == "OK"
    finally:
        assert node.stop() == 0
