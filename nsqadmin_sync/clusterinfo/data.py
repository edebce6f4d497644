"""What nsqadmin asks the cluster, in parallel (Go: internal/clusterinfo/data.go).

Every query fans out over the lookupds or nsqd nodes concerned through one
bounded pool of named threads (`nsqadmin-ci-N`), with the HTTP client's
connect and request timeouts and an overall deadline per fan-out, so one
hung node never holds a page longer than those timeouts.  Results merge as
NSQ's do; when some nodes fail the result comes with a `PartialError`
(NSQ's `PartialErr`, whose text becomes the `WARNING: ...` message), when
all fail a `ClusterError` (502 `UPSTREAM_ERROR: ...`).

A fan-out is only ever started from a request or sampler thread, never
from inside a pool task, so tasks never wait on the pool they run in.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar
from urllib.parse import quote

from nsqd_sync.addresses import join_host_port, split_host_port
from nsqd_sync.http_client import NSQ_ACCEPT, HTTPClient, HTTPClientError, unwrap

from .types import ChannelStats, Producer, ProducerTopic, TopicStats, parse_version

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

POOL_SIZE = 32  # at most this many requests to nodes in flight at once


class ClusterError(Exception):
    """No node answered (or the request itself failed): NSQ's plain error."""


class PartialError(Exception):
    """Some nodes failed; `errors` says which (NSQ's ErrList: one line per error)."""

    def __init__(self, errors: Sequence[Exception]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)


def go_quote(data: bytes) -> str:
    """Go's %q of a byte string (strconv.Quote)."""
    text = data.decode("utf-8", "replace")
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append("\\x%02x" % ord(ch))
        elif ord(ch) <= 0xFFFF:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append("\\U%08x" % ord(ch))
    out.append('"')
    return "".join(out)


class UpstreamError(Exception):
    """One request to a node failed (text as NSQ's HTTP client words it)."""


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


class ClusterInfo:
    """Queries lookupds and nsqd nodes over HTTP; one instance per nsqadmin."""

    def __init__(self, client: HTTPClient, pool_size: int = POOL_SIZE) -> None:
        self.client = client
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=pool_size,
                                                           thread_name_prefix="nsqadmin-ci")
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ HTTP, as NSQ's client

    def _request(self, method: str, endpoint: str) -> bytes:
        """One request with NSQ's 403 -> https retry; non-200 raises UpstreamError."""
        for _ in range(2):
            try:
                if method == "GET":
                    status, reason, body = self.client.get_plain(endpoint, {"Accept": NSQ_ACCEPT})
                else:
                    resp = self.client.request(method, endpoint, headers={"Accept": NSQ_ACCEPT},
                                               allow_redirects=False)
                    status, reason, body = resp.status_code, resp.reason or "", resp.content
            except HTTPClientError as e:
                raise UpstreamError(str(e)) from None
            if status == 200:
                return body
            if status == 403 and not endpoint.startswith("https"):
                https = _https_endpoint(endpoint, body)
                if https:
                    endpoint = https
                    continue
            reason = reason or _REASONS.get(status, "")
            raise UpstreamError("got response %d %s %s" % (status, reason, go_quote(body)))
        raise UpstreamError("too many https redirects for %s" % endpoint)

    def get_v1(self, endpoint: str) -> Any:
        body = self._request("GET", endpoint)
        try:
            return unwrap(json.loads(body))
        except ValueError as e:
            raise UpstreamError("invalid JSON from %s - %s" % (endpoint, e)) from None

    def post_v1(self, endpoint: str) -> None:
        self._request("POST", endpoint)

    # ------------------------------------------------------------ fan-out

    def fan_out(self, fn: Callable[[T], R], items: Iterable[T]) -> Tuple[List[Tuple[T, R]], List[Exception]]:
        """Run fn over items in the pool; ([(item, result)...] in item order, [errors]).

        Bounded by the client's connect + request timeouts (plus a margin):
        a task still running then counts as failed.
        """
        items = list(items)
        if not items:
            return [], []
        if self._closed.is_set():
            return [], [UpstreamError("nsqadmin is exiting")]
        futures = [(item, self._pool.submit(fn, item)) for item in items]
        deadline = time.monotonic() + self.client.connect_timeout + self.client.request_timeout + 1.0
        results: List[Tuple[T, R]] = []
        errors: List[Exception] = []
        for item, fut in futures:
            try:
                results.append((item, fut.result(timeout=max(0.0, deadline - time.monotonic()))))
            except concurrent.futures.TimeoutError:
                fut.cancel()
                errors.append(UpstreamError("%s: timed out" % (item,)))
            except (UpstreamError, ValueError, TypeError, KeyError) as e:
                errors.append(e)
        return results, errors

    @staticmethod
    def _settle(errors: List[Exception], total: int, what: str) -> Optional[PartialError]:
        """NSQ's rule: every source failed -> error; some -> partial."""
        if total and len(errors) == total:
            raise ClusterError("failed to query any %s: %s" % (what, "\n".join(str(e) for e in errors)))
        if not total:
            raise ClusterError("failed to query any %s: " % what)
        return PartialError(errors) if errors else None

    # ------------------------------------------------------------ lookupd queries

    def get_lookupd_topics(self, lookupds: Sequence[str]) -> Tuple[Optional[List[str]], Optional[PartialError]]:
        results, errors = self.fan_out(lambda a: self.get_v1(_url(a, "/topics")), lookupds)
        partial = self._settle(errors, len(lookupds), "nsqlookupd")
        names = sorted({t for _, r in results for t in _get(r, "topics")})
        return (names or None), partial

    def get_lookupd_topic_channels(self, topic: str, lookupds: Sequence[str]
                                   ) -> Tuple[Optional[List[str]], Optional[PartialError]]:
        path = "/channels?topic=" + _q(topic)
        results, errors = self.fan_out(lambda a: self.get_v1(_url(a, path)), lookupds)
        partial = self._settle(errors, len(lookupds), "nsqlookupd")
        names = sorted({c for _, r in results for c in _get(r, "channels")})
        return (names or None), partial

    def get_lookupd_producers(self, lookupds: Sequence[str]
                              ) -> Tuple[List[Producer], Optional[PartialError]]:
        results, errors = self.fan_out(lambda a: self.get_v1(_url(a, "/nodes")), lookupds)
        partial = self._settle(errors, len(lookupds), "nsqlookupd")
        by_addr: Dict[str, Producer] = {}
        producers: List[Producer] = []
        max_version = parse_version("0.0.0")
        for addr, resp in results:
            for raw in _get(resp, "producers"):
                if not isinstance(raw, dict):
                    continue
                producer = Producer.from_lookupd(raw)
                key = producer.tcp_address()
                p = by_addr.get(key)
                if p is None:
                    by_addr[key] = p = producer
                    producers.append(producer)
                    if max_version < producer.version_obj:
                        max_version = producer.version_obj
                    if producer.topics:
                        producer.topics.sort(key=lambda t: t.topic)
                p.remote_addresses = (p.remote_addresses or []) + ["%s/%s" % (addr, producer.address())]
        for p in producers:
            if p.version_obj < max_version:
                p.out_of_date = True
        producers.sort(key=lambda p: p.hostname)
        return producers, partial

    def get_lookupd_topic_producers(self, topic: str, lookupds: Sequence[str]
                                    ) -> Tuple[List[Producer], Optional[PartialError]]:
        path = "/lookup?topic=" + _q(topic)
        results, errors = self.fan_out(lambda a: self.get_v1(_url(a, path)), lookupds)
        partial = self._settle(errors, len(lookupds), "nsqlookupd")
        producers: List[Producer] = []
        seen = set()
        for _, resp in results:
            for raw in _get(resp, "producers"):
                if not isinstance(raw, dict):
                    continue
                p = Producer.from_lookupd(raw)
                if p.http_address() not in seen:
                    seen.add(p.http_address())
                    producers.append(p)
        return producers, partial

    def _per_topic(self, topics: Sequence[str], lookupds: Sequence[str], endpoint: str) -> Dict[str, List[Any]]:
        """One flat fan-out of `endpoint?topic=T` over every (topic, lookupd); answers per topic."""
        pairs = [(t, a) for t in topics for a in lookupds]
        results, _ = self.fan_out(lambda pair: self.get_v1(_url(pair[1], "%s?topic=%s" % (endpoint, _q(pair[0])))),
                                  pairs)
        out: Dict[str, List[Any]] = {t: [] for t in topics}
        for (topic, _), resp in results:
            out[topic].append(resp)
        return out

    def get_lookupd_inactive_topics(self, topics: Sequence[str], lookupds: Sequence[str]
                                    ) -> Dict[str, Optional[List[str]]]:
        """Topics no lookupd lists a producer for, with their channels (NSQ's ?inactive=true).

        NSQ asks /lookup once per topic; one /nodes per lookupd says the same
        (a producer lists a topic it has and is not tombstoned for).
        """
        results, _ = self.fan_out(lambda a: self.get_v1(_url(a, "/nodes")), lookupds)
        active = set()
        for _, resp in results:
            for raw in _get(resp, "producers"):
                if isinstance(raw, dict):
                    producer = Producer.from_lookupd(raw)
                    active.update(t.topic for t in producer.topics or [] if not t.tombstoned)
        inactive = [t for t in topics if t not in active]
        return self.get_lookupd_channels_of(inactive, lookupds)

    def get_lookupd_channels_of(self, topics: Sequence[str], lookupds: Sequence[str]
                                ) -> Dict[str, Optional[List[str]]]:
        """{topic: sorted channels (None if none)} from every lookupd, in one fan-out."""
        answers = self._per_topic(topics, lookupds, "/channels")
        return {t: sorted({c for r in answers[t] for c in _get(r, "channels")}) or None for t in topics}

    # ------------------------------------------------------------ nsqd queries

    def get_nsqd_topics(self, nsqds: Sequence[str]) -> Tuple[Optional[List[str]], Optional[PartialError]]:
        results, errors = self.fan_out(lambda a: self.get_v1(_url(a, "/stats?format=json")), nsqds)
        partial = self._settle(errors, len(nsqds), "nsqd")
        names = sorted({t.get("topic_name", "") for _, r in results for t in _get(r, "topics")
                        if isinstance(t, dict)})
        return (names or None), partial

    def _nsqd_producer(self, addr: str, topic: Optional[str]) -> Optional[Producer]:
        """A Producer for one nsqd from /stats and /info (None: it lacks `topic`)."""
        if topic is None:
            info = self.get_v1(_url(addr, "/info"))
            stats = self.get_v1(_url(addr, "/stats?format=json&include_clients=false"))
        else:
            stats = self.get_v1(_url(addr, "/stats?format=json&topic=%s&include_clients=false" % _q(topic)))
            if not any(isinstance(t, dict) and t.get("topic_name") == topic for t in _get(stats, "topics")):
                return None
            info = self.get_v1(_url(addr, "/info"))
        info = info if isinstance(info, dict) else {}
        topics = None
        for t in _get(stats, "topics"):
            if isinstance(t, dict):
                topics = (topics or []) + [ProducerTopic(t.get("topic_name", ""))]
        broadcast = info.get("broadcast_address") or ""
        http_port = int(info.get("http_port") or 0)
        hostname = info.get("hostname") or ""
        if topic is not None:
            host, port = split_host_port(addr)
            if not broadcast:
                broadcast, http_port = host, port
            if not hostname:
                hostname = host
        return Producer("", hostname, broadcast, int(info.get("tcp_port") or 0), http_port,
                        info.get("version") or "", topics)

    def get_nsqd_producers(self, nsqds: Sequence[str]) -> Tuple[List[Producer], Optional[PartialError]]:
        results, errors = self.fan_out(lambda a: self._nsqd_producer(a, None), nsqds)
        partial = self._settle(errors, len(nsqds), "nsqd")
        return [p for _, p in results if p is not None], partial

    def get_nsqd_topic_producers(self, topic: str, nsqds: Sequence[str]
                                 ) -> Tuple[List[Producer], Optional[PartialError]]:
        results, errors = self.fan_out(lambda a: self._nsqd_producer(a, topic), nsqds)
        partial = self._settle(errors, len(nsqds), "nsqd")
        return [p for _, p in results if p is not None], partial

    def get_nsqd_stats(self, producers: Sequence[Producer], selected_topic: str = "",
                       selected_channel: str = "", include_clients: bool = False
                       ) -> Tuple[List[TopicStats], Dict[str, ChannelStats], Optional[PartialError]]:
        """Per-node topic stats and channels merged over nodes (Go: GetNSQDStats).

        The channel map is keyed by channel name when a topic is selected,
        else by `topic:channel`.
        """
        query = "/stats?format=json"
        if selected_topic:
            query += "&topic=" + _q(selected_topic)
            if selected_channel:
                query += "&channel=" + _q(selected_channel)
        if not include_clients:
            query += "&include_clients=false"

        def fetch(p: Producer) -> Any:
            return self.get_v1(_url(p.http_address(), query))

        results, errors = self.fan_out(fetch, producers)
        partial = self._settle(errors, len(producers), "nsqd")
        now = time.time()
        topic_list: List[TopicStats] = []
        channel_map: Dict[str, ChannelStats] = {}
        for p, resp in results:
            addr = p.http_address()
            for raw in _get(resp, "topics"):
                if not isinstance(raw, dict):
                    continue
                topic = TopicStats.from_json(raw, now)
                topic.node = addr
                topic.hostname = p.hostname
                topic.memory_depth = topic.depth - topic.backend_depth
                if selected_topic and topic.topic_name != selected_topic:
                    continue
                topic_list.append(topic)
                for channel in topic.channels or []:
                    channel.node = addr
                    channel.hostname = p.hostname
                    channel.topic_name = topic.topic_name
                    channel.memory_depth = channel.depth - channel.backend_depth
                    key = channel.channel_name
                    if not selected_topic:
                        key = "%s:%s" % (topic.topic_name, channel.channel_name)
                    merged = channel_map.get(key)
                    if merged is None:
                        merged = channel_map[key] = ChannelStats(addr, topic.topic_name, channel.channel_name)
                    for c in channel.clients or []:
                        c.node = addr
                    merged.add(channel)
        topic_list.sort(key=lambda t: t.hostname)
        return topic_list, channel_map, partial

    def get_nsqd_stats_raw(self, producers: Sequence[Producer]
                           ) -> Tuple[List[Tuple[Producer, Dict[str, Any]]], Optional[PartialError]]:
        """Every node's /stats (without clients) as decoded JSON, for callers that only sum.

        Cheaper than get_nsqd_stats on big clusters: no record per topic and
        channel, no merge.
        """
        query = "/stats?format=json&include_clients=false"
        results, errors = self.fan_out(lambda p: self.get_v1(_url(p.http_address(), query)), producers)
        partial = self._settle(errors, len(producers), "nsqd")
        return [(p, r) for p, r in results if isinstance(r, dict)], partial

    # ------------------------------------------------------------ either source

    def get_topics(self, lookupds: Sequence[str], nsqds: Sequence[str]
                   ) -> Tuple[Optional[List[str]], Optional[PartialError]]:
        if lookupds:
            return self.get_lookupd_topics(lookupds)
        return self.get_nsqd_topics(nsqds)

    def get_producers(self, lookupds: Sequence[str], nsqds: Sequence[str]
                      ) -> Tuple[List[Producer], Optional[PartialError]]:
        if lookupds:
            return self.get_lookupd_producers(lookupds)
        return self.get_nsqd_producers(nsqds)

    def get_topic_producers(self, topic: str, lookupds: Sequence[str], nsqds: Sequence[str]
                            ) -> Tuple[List[Producer], Optional[PartialError]]:
        if lookupds:
            return self.get_lookupd_topic_producers(topic, lookupds)
        return self.get_nsqd_topic_producers(topic, nsqds)

    # ------------------------------------------------------------ actions

    def _post_all(self, addrs: Sequence[str], path: str) -> List[Exception]:
        _, errors = self.fan_out(lambda a: self.post_v1(_url(a, path)), addrs)
        return errors

    def tombstone_node_for_topic(self, topic: str, node: str, lookupds: Sequence[str]) -> List[Exception]:
        """Tombstone `node` for `topic` on every lookupd, then delete the topic on the node."""
        errors = self._post_all(lookupds, "/topic/tombstone?topic=%s&node=%s" % (_q(topic), _q(node)))
        producers, partial = self.get_nsqd_producers([node])
        errors += partial.errors if partial else []
        errors += self._post_all([p.http_address() for p in producers], "/topic/delete?topic=" + _q(topic))
        return errors

    def create_topic_channel(self, topic: str, channel: str, lookupds: Sequence[str],
                             nsqds: Sequence[str]) -> List[Exception]:
        """Create on every lookupd (and the channel on the topic's nodes).

        With --nsqd-http-address (no lookupd) NSQ creates nothing; nsq-sync
        creates the topic (and channel) on every given nsqd instead.
        """
        if not lookupds:
            errors = self._post_all(nsqds, "/topic/create?topic=" + _q(topic))
            if channel:
                errors += self._post_all(nsqds, "/channel/create?topic=%s&channel=%s" % (_q(topic), _q(channel)))
            return errors
        errors = self._post_all(lookupds, "/topic/create?topic=" + _q(topic))
        if channel:
            qs = "topic=%s&channel=%s" % (_q(topic), _q(channel))
            errors += self._post_all(lookupds, "/channel/create?" + qs)
            producers, partial = self.get_lookupd_topic_producers(topic, lookupds)
            errors += partial.errors if partial else []
            errors += self._post_all([p.http_address() for p in producers], "/channel/create?" + qs)
        return errors

    def delete_topic(self, topic: str, lookupds: Sequence[str], nsqds: Sequence[str]) -> List[Exception]:
        producers, partial = self.get_topic_producers(topic, lookupds, nsqds)
        errors: List[Exception] = list(partial.errors) if partial else []
        qs = "topic=" + _q(topic)
        errors += self._post_all(lookupds, "/topic/delete?" + qs)
        errors += self._post_all([p.http_address() for p in producers], "/topic/delete?" + qs)
        return errors

    def delete_channel(self, topic: str, channel: str, lookupds: Sequence[str],
                       nsqds: Sequence[str]) -> List[Exception]:
        producers, partial = self.get_topic_producers(topic, lookupds, nsqds)
        errors: List[Exception] = list(partial.errors) if partial else []
        qs = "topic=%s&channel=%s" % (_q(topic), _q(channel))
        errors += self._post_all(lookupds, "/channel/delete?" + qs)
        errors += self._post_all([p.http_address() for p in producers], "/channel/delete?" + qs)
        return errors

    def topic_channel_action(self, action: str, topic: str, channel: str,
                             lookupds: Sequence[str], nsqds: Sequence[str]) -> List[Exception]:
        """pause / unpause / empty a topic or channel on every node that has the topic."""
        kind = "channel" if channel else "topic"
        qs = "topic=" + _q(topic) + ("&channel=" + _q(channel) if channel else "")
        producers, partial = self.get_topic_producers(topic, lookupds, nsqds)
        errors: List[Exception] = list(partial.errors) if partial else []
        errors += self._post_all([p.http_address() for p in producers], "/%s/%s?%s" % (kind, action, qs))
        return errors


def _get(doc: Any, key: str) -> list:
    """A list field of a JSON answer ([] when absent or of another type)."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, list) else []


def _q(text: str) -> str:
    """Go's url.QueryEscape."""
    return quote(text, safe="").replace("%20", "+")


def _url(addr: str, path: str) -> str:
    if "://" in addr:
        return addr.rstrip("/") + path
    return "http://%s%s" % (addr, path)


def _https_endpoint(endpoint: str, body: bytes) -> Optional[str]:
    """nsqd's 403 with `https_port`: the same request over https (NSQ's httpsEndpoint)."""
    try:
        port = int(json.loads(body).get("https_port"))
    except (ValueError, TypeError, AttributeError):
        return None
    rest = endpoint.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    try:
        host, _ = split_host_port(hostport)
    except ValueError:
        return None
    return "https://%s/%s" % (join_host_port(host, port), path)
