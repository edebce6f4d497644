"""nsq_to_http end to end: our nsqd, the tool, and test HTTP endpoints on loopback."""
from __future__ import annotations

import collections
import http.server
import json
import signal
import socket
import threading
from typing import Callable, Iterator, List, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.apps.conftest import channel_stats, publish, run_tool
from tests.helpers import http_request, wait_for

CHANNEL = "nsq_to_http"


class _Server(http.server.ThreadingHTTPServer):
    # the tool opens up to -n (100) connections at once: a listen backlog of 5 resets some
    request_queue_size = 256


class Endpoint:
    """A loopback HTTP server recording each request; `fail_first` requests get a 500."""

    def __init__(self, fail_first: int = 0, slow_first: int = 0, slow_seconds: float = 0.0,
                 delay: float = 0.0) -> None:
        self.requests: List[Tuple[str, str, dict, bytes, int]] = []  # method, path, headers, body, status
        self.fail_first = fail_first
        self.slow_first = slow_first  # the first slow_first requests answer after slow_seconds (status 599)
        self.slow_seconds = slow_seconds
        self.slow_done = threading.Event()  # set to let the slow ones answer at teardown
        self.down = False  # while True every request gets a 500
        self.delay = delay  # every request is answered after this long
        self.lock = threading.Lock()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with endpoint.lock:
                    n = len(endpoint.requests)
                    slow = n < endpoint.slow_first
                    status = 599 if slow else 500 if n < endpoint.fail_first or endpoint.down else 200
                    endpoint.requests.append((self.command, self.path, dict(self.headers), body, status))
                if slow:
                    endpoint.slow_done.wait(endpoint.slow_seconds)
                elif endpoint.delay:
                    endpoint.slow_done.wait(endpoint.delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-endpoint", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def delivered(self) -> List[bytes]:
        """Bodies (POST) that got a 2xx."""
        with self.lock:
            return [r[3] for r in self.requests if r[4] == 200]

    def failures(self) -> collections.Counter:
        """Body -> number of requests with it that did not get a 2xx."""
        with self.lock:
            return collections.Counter(r[3] for r in self.requests if r[4] != 200)

    def close(self) -> None:
        self.slow_done.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoints() -> Iterator[Callable[..., Endpoint]]:
    made: List[Endpoint] = []

    def make(fail_first: int = 0, **kw) -> Endpoint:
        e = Endpoint(fail_first, **kw)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def drained(node, topic, channel=CHANNEL):
    c = channel_stats(node, topic, channel)
    return c if c and c["depth"] == 0 and c["in_flight_count"] == 0 and c["deferred_count"] == 0 else None


def test_post_delivers_each_message_with_headers(nsqd, topic, start_tool, endpoints):
    ep = endpoints()
    bodies = [b"post-%d" % i for i in range(200)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url + "/in", "--content-type=text/plain",
                      "--header=X-Test: one", "--header=Authorization:Bearer xyz", "-n", "8")
    wait_for(lambda: len(ep.delivered()) >= 200, timeout=60, message="200 POSTs")
    wait_for(lambda: drained(nsqd, topic), timeout=30, message="all FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert sorted(ep.delivered()) == sorted(bodies)
    method, path, headers, _, _ = ep.requests[0]
    assert (method, path) == ("POST", "/in")
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Test"] == "one" and headers["Authorization"] == "Bearer xyz"
    assert headers["User-Agent"].startswith("nsq_to_http v")
    assert channel_stats(nsqd, topic, CHANNEL)["requeue_count"] == 0


def test_failing_endpoint_requeues_and_recovers_without_loss_or_duplicates(nsqd, topic, start_tool, endpoints):
    ep = endpoints(fail_first=4)
    bodies = [b"retry-%d" % i for i in range(10)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "-n", "2", "--max-in-flight=5",
                      "--consumer-opt=default_requeue_delay,50ms", "--consumer-opt=backoff_multiplier,50ms",
                      "--consumer-opt=max_attempts,0")
    wait_for(lambda: drained(nsqd, topic) and len(ep.delivered()) >= 10, timeout=60,
             message="every message delivered and FIN'd")
    assert tool.stop() == 0, tool.stderr()
    failed = [r[3] for r in ep.requests if r[4] != 200]
    assert len(failed) == 4
    # every message got exactly one 2xx: the failed ones came back (REQ), none was sent again after a 2xx
    assert collections.Counter(ep.delivered()) == collections.Counter(bodies)
    assert channel_stats(nsqd, topic, CHANNEL)["requeue_count"] >= 4
    assert "got status code 500" in tool.stderr()


def finished(node, topic, channel=CHANNEL) -> int:
    """FINs nsqd counted from the channel's connected clients."""
    return sum(c.get("finish_count", 0) for c in channel_stats(node, topic, channel).get("clients", []))


def in_channel(node, topic, channel=CHANNEL) -> int:
    """Messages not yet FIN'd: queued, in flight or deferred (requeued with a delay)."""
    c = channel_stats(node, topic, channel)
    return c["depth"] + c["in_flight_count"] + c["deferred_count"] if c else -1


def test_a_message_is_never_given_up_by_default(nsqd, topic, start_tool, endpoints):
    # go-nsq gives a message up (FINs it) after 5 attempts; here none is FIN'd before a 2xx
    ep = endpoints()
    ep.down = True
    bodies = [b"stubborn-%d" % i for i in range(3)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "-n", "3",
                      "--consumer-opt=default_requeue_delay,10ms", "--consumer-opt=backoff_multiplier,10ms",
                      "--consumer-opt=max_backoff_duration,100ms", "--consumer-opt=max_requeue_delay,100ms")
    wait_for(lambda: all(ep.failures()[b] >= 7 for b in bodies), timeout=90,
             message="each message failed 7 times (more than go-nsq's 5 attempts)")
    assert in_channel(nsqd, topic) == 3  # all still queued, in flight or deferred: none FIN'd
    assert ep.delivered() == []
    ep.down = False
    wait_for(lambda: drained(nsqd, topic) and len(ep.delivered()) >= 3, timeout=60,
             message="every message delivered and FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert collections.Counter(ep.delivered()) == collections.Counter(bodies)  # once each
    assert channel_stats(nsqd, topic, CHANNEL)["message_count"] == 3


def test_explicit_max_attempts_drops_a_poison_message(nsqd, topic, start_tool, endpoints):
    ep = endpoints()
    ep.down = True
    publish(nsqd, topic, [b"poison"])
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "--consumer-opt=max_attempts,2",
                      "--consumer-opt=default_requeue_delay,10ms", "--consumer-opt=backoff_multiplier,10ms")
    # (the failures first: the channel can look drained before nsqd moved the message into it)
    wait_for(lambda: ep.failures()[b"poison"] >= 2 and drained(nsqd, topic) and finished(nsqd, topic) == 1,
             timeout=60, message="given up after 2 attempts and FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert ep.failures() == {b"poison": 2} and ep.delivered() == []


def test_a_request_that_times_out_is_requeued(nsqd, topic, start_tool, endpoints):
    ep = endpoints(slow_first=1, slow_seconds=10.0)
    publish(nsqd, topic, [b"slow"])
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "--http-client-request-timeout=300ms",
                      "--consumer-opt=default_requeue_delay,10ms", "--consumer-opt=backoff_multiplier,10ms")
    wait_for(lambda: drained(nsqd, topic) and ep.delivered() == [b"slow"], timeout=60,
             message="delivered on the second attempt")
    assert tool.stop() == 0, tool.stderr()
    assert [r[4] for r in ep.requests] == [599, 200]  # the first never answered in time
    assert channel_stats(nsqd, topic, CHANNEL)["requeue_count"] == 1
    assert "timed out" in tool.stderr().lower()


def test_sample_zero_finishes_without_requests(nsqd, topic, start_tool, endpoints):
    ep = endpoints()
    publish(nsqd, topic, [b"s%d" % i for i in range(20)])
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "--sample=0")
    # the client's finish_count, not only an empty channel: a message can be on its way to the
    # client (out of the queue, not yet in flight) while the channel looks drained
    wait_for(lambda: drained(nsqd, topic) and finished(nsqd, topic) == 20, timeout=60, message="all FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert ep.requests == [] and drained(nsqd, topic), channel_stats(nsqd, topic, CHANNEL)  # all 20 FIN'd, none sent


def test_get_replaces_percent_s_with_the_escaped_body(nsqd, topic, start_tool, endpoints):
    ep = endpoints()
    bodies = ["a b&c=d/é?", "plain", "100%"]
    publish(nsqd, topic, [b.encode("utf-8") for b in bodies])
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--get=" + ep.url + "/hit?data=%s&src=nsq")
    wait_for(lambda: len(ep.requests) >= 3 and drained(nsqd, topic), timeout=60, message="3 GETs")
    assert tool.stop() == 0, tool.stderr()
    got = []
    for method, path, _, _, _ in ep.requests:
        assert method == "GET"
        parts = urlsplit(path)
        assert parts.path == "/hit"
        query = parse_qs(parts.query)
        assert query["src"] == ["nsq"]
        got.append(query["data"][0])
    assert sorted(got) == sorted(bodies)


def test_round_robin_over_two_endpoints(nsqd, topic, start_tool, endpoints):
    a, b = endpoints(), endpoints()
    bodies = [b"rr-%d" % i for i in range(20)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + a.url, "--post=" + b.url, "--mode=round-robin", "--status-every=5")
    wait_for(lambda: len(a.delivered()) + len(b.delivered()) >= 20 and drained(nsqd, topic), timeout=60,
             message="20 POSTs")
    assert tool.stop() == 0, tool.stderr()
    assert len(a.delivered()) == 10 and len(b.delivered()) == 10
    assert sorted(a.delivered() + b.delivered()) == sorted(bodies)
    # --status-every: timer_metrics' line per 5 requests, per endpoint and in aggregate
    assert "[aggregate]: finished 5 - 99th:" in tool.stderr()
    assert "[%s]: finished 5 - 99th:" % a.url in tool.stderr()


def test_epsilon_greedy_sends_most_requests_to_the_fast_endpoint(nsqd, topic, start_tool, endpoints):
    fast, slow = endpoints(), endpoints(delay=0.2)
    bodies = [b"eg-%d" % i for i in range(400)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + slow.url, "--post=" + fast.url, "--mode=epsilon-greedy", "-n", "2")
    wait_for(lambda: len(fast.delivered()) + len(slow.delivered()) >= 400 and drained(nsqd, topic),
             timeout=120, message="400 POSTs")
    assert tool.stop() == 0, tool.stderr()
    assert sorted(fast.delivered() + slow.delivered()) == sorted(bodies)
    # round-robin or hostpool would give each 200; weighting by 1/latency leaves the slow one
    # its share of exploration plus fast/(fast+200ms) of the rest
    assert len(slow.delivered()) < 100, (len(fast.delivered()), len(slow.delivered()))


def test_hostpool_skips_an_endpoint_that_is_down(nsqd, topic, start_tool, endpoints):
    up = endpoints()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = "http://127.0.0.1:%d/" % s.getsockname()[1]
    bodies = [b"hp-%d" % i for i in range(20)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + down, "--post=" + up.url, "-n", "1",
                      "--consumer-opt=default_requeue_delay,10ms", "--consumer-opt=backoff_multiplier,10ms",
                      "--consumer-opt=max_attempts,0")
    wait_for(lambda: drained(nsqd, topic) and len(up.delivered()) >= 20, timeout=60, message="all delivered")
    assert tool.stop() == 0, tool.stderr()
    assert sorted(up.delivered()) == sorted(bodies)
    # the dead endpoint was tried once, then left alone for go-hostpool's 30s
    assert tool.stderr().count(down) == 1, tool.stderr()
    assert "Traceback" not in tool.stderr()


def test_bad_flags_are_one_line_and_exit_2():
    base = ["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150"]
    for args, text in [
        (base, "--get or --post required"),
        (base + ["--get=http://x/", ], "invalid GET address - must be a printf string"),
        (base + ["--get=http://x/%s", "--post=http://y/"], "use --get or --post not both"),
        (base + ["--get=http://x/%s", "--content-type=text/plain"], "--content-type only used with --post"),
        (base + ["--post=http://x/", "--header=novalue"], "--header value format should be 'key=value'"),
        (base + ["--post=http://x/", "--sample=1.5"], "--sample must be between 0.0 and 1.0"),
        (base + ["--post=http://x/", "--mode=random"], "must be one of"),
        (["--post=http://x/", "--nsqd-tcp-address=127.0.0.1:4150"], "--topic and --channel are required"),
    ]:
        r = run_tool("nsq_to_http", *args, timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, r.returncode, err)


def test_kill_9_mid_stream_then_restart_loses_nothing(nsqd, topic, start_tool, endpoints):
    ep = endpoints(delay=0.01)
    bodies = [b"k9-%04d" % i for i in range(400)]
    publish(nsqd, topic, bodies)
    args = ("--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address, "--post=" + ep.url,
            "-n", "4", "--max-in-flight=20")
    first = start_tool("nsq_to_http", *args)
    wait_for(lambda: len(ep.delivered()) >= 60, timeout=60, message="a part delivered")
    first.stop(signal.SIGKILL)
    assert len(ep.delivered()) < 400, "killed too late to be mid-stream"
    # whatever was in flight when it died goes back to the queue
    wait_for(lambda: channel_stats(nsqd, topic, CHANNEL)["in_flight_count"] == 0, timeout=30,
             message="in-flight requeued")
    second = start_tool("nsq_to_http", *args)
    wait_for(lambda: set(ep.delivered()) >= set(bodies), timeout=120, message="every message delivered")
    wait_for(lambda: drained(nsqd, topic) and finished(nsqd, topic) > 0, timeout=60,
             message="all FIN'd after the restart")
    assert second.stop() == 0, second.stderr()
    # at-least-once: a message the kill caught between its 2xx and its FIN is sent again
    got = collections.Counter(ep.delivered())
    assert set(got) == set(bodies)
    assert sum(got.values()) - len(bodies) <= 20 + 4, "more duplicates than could be in flight"


def test_via_lookupd(start_node, topic, start_tool, endpoints):
    lookupd = start_node("nsqlookupd")
    node = start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address])
    ep = endpoints()
    bodies = [b"lk-%d" % i for i in range(50)]
    publish(node, topic, bodies)
    wait_for(lambda: topic in lookupd_topics(lookupd), timeout=30, message="topic registered")
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--lookupd-http-address=" + lookupd.http_address,
                      "--post=" + ep.url)
    wait_for(lambda: len(ep.delivered()) >= 50 and drained(node, topic), timeout=60,
             message="delivered from the nsqd lookupd named")
    assert tool.stop() == 0, tool.stderr()
    assert collections.Counter(ep.delivered()) == collections.Counter(bodies)


def lookupd_topics(lookupd) -> list:
    status, body, _ = http_request(lookupd.http_port, "/topics")
    return json.loads(body).get("topics") or [] if status == 200 else []


def test_sigint_mid_stream_exits_0_and_leaves_nothing_in_flight(nsqd, topic, start_tool, endpoints):
    ep = endpoints(delay=0.02)
    bodies = [b"int-%d" % i for i in range(300)]
    publish(nsqd, topic, bodies)
    tool = start_tool("nsq_to_http", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--post=" + ep.url, "-n", "4", "--max-in-flight=20")
    wait_for(lambda: len(ep.delivered()) >= 30, timeout=60, message="some delivered")
    assert tool.stop(signal.SIGINT) == 0, tool.stderr()
    assert "Traceback" not in tool.stderr()
    c = channel_stats(nsqd, topic, CHANNEL)
    assert c["in_flight_count"] == 0, c
    delivered = ep.delivered()
    assert len(delivered) < 300, "stopped too late to be mid-stream"
    # each message was either delivered and FIN'd or left for the next consumer: none lost, none twice
    assert len(set(delivered)) == len(delivered)
    assert c["depth"] + c["deferred_count"] + len(delivered) == 300, (c, len(delivered))
