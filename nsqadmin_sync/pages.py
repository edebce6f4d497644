"""The server-rendered pages: gather what each page shows, then fill its template.

Each `*_page(handler, ...)` returns (status, template name, context).  The
data comes from the same ClusterInfo queries as the JSON API; the
templates (see templates/README) escape every value.  An unreachable node
gives the page with NSQ's warning; no reachable node gives the page with
the error and status 502.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Protocol, Tuple
from urllib.parse import quote

from nsqd_sync import __version__
from nsqd_sync.http_base import HTTPError

from .clusterinfo import ChannelStats, ClusterError, Producer, TopicStats, search_producers
from .clusterinfo.types import EXTRA_CHANNEL_COUNTERS
from .render import Markup, default_renderer
from .state import AdminState
from .trends import sparkline

Page = Tuple[int, str, Dict[str, Any]]


class PageHandler(Protocol):
    """What the pages need of the request being answered (http_api.NSQAdminHandler)."""

    @property
    def admin(self) -> AdminState: ...

    def is_admin(self) -> bool: ...

    def csrf_token(self) -> str: ...

    def counter_stats(self) -> Dict[str, Any]: ...


#: actions a page asks to confirm before doing
CONFIRM_ACTIONS = ("pause", "empty", "delete", "tombstone")

NAV = (("topics", "Topics", ""), ("nodes", "Nodes", "nodes"), ("counter", "Counter", "counter"),
       ("lookup", "Lookup", "lookup"))


def link(h: PageHandler, *segments: str) -> str:
    """A URL under --base-path, each segment escaped."""
    base = h.admin.opts.base_path.rstrip("/")
    if not segments or segments == ("",):
        return base or "/"
    return base + "/" + "/".join(quote(s, safe=":") for s in segments)


def api_link(h: PageHandler, *segments: str) -> str:
    return link(h, "api", *segments)


def render(h: PageHandler, name: str, context: Dict[str, Any], flash: str = "") -> str:
    renderer = default_renderer()
    ctx = dict(context)
    ctx.setdefault("title", "nsqadmin")
    ctx.setdefault("messages", [])
    ctx.setdefault("error", "")
    ctx.update(base=link(h), static=link(h, "static"), is_admin=h.is_admin(), version=__version__,
               csrf_token=h.csrf_token(),
               flash=flash, graphite=bool(h.admin.opts.graphite_url))
    ctx["nav"] = [{"id": key, "label": label, "href": link(h, path) if path else link(h),
                   "active": ctx.get("section") == key} for key, label, path in NAV]
    ctx["content"] = Markup(renderer.render(name, ctx))
    return renderer.render("base.html", ctx)


def _warn(messages: List[str], partial: Any) -> None:
    if partial is not None:
        messages.append(str(partial))


def _failed(section: str, title: str, e: Exception, status: int = 502) -> Page:
    return status, "error.html", {"section": section, "title": title, "error": str(e)}


def action(h: PageHandler, act: str, label: str, *, topic: str, channel: str = "",
           node: str = "", next_url: str = "") -> Dict[str, Any]:
    """One action button (a form that works without JavaScript; admin.js uses the API)."""
    if act == "tombstone":
        form_url, api_method, api_url = link(h, "nodes", node), "DELETE", api_link(h, "nodes", node)
    elif channel:
        form_url = link(h, "topics", topic, channel)
        api_url = api_link(h, "topics", topic, channel)
        api_method = "DELETE" if act == "delete" else "POST"
    else:
        form_url, api_url = link(h, "topics", topic), api_link(h, "topics", topic)
        api_method = "DELETE" if act == "delete" else "POST"
    what = ("channel %s:%s" % (topic, channel)) if channel else ("topic %s" % topic)
    if act == "tombstone":
        what = "topic %s on node %s" % (topic, node)
    confirm = ("Are you sure you want to %s %s?" % (act, what)) if act in CONFIRM_ACTIONS else ""
    return {"action": act, "label": label, "topic": topic, "channel": channel, "node": node,
            "form_url": form_url, "api_url": api_url, "api_method": api_method, "confirm": confirm,
            "next": next_url, "topic_field": act == "tombstone"}


def topic_actions(h: PageHandler, topic: str, paused: bool, channel: str = "") -> List[Dict[str, Any]]:
    if not h.is_admin():
        return []
    after_delete = link(h, "topics", topic) if channel else link(h)
    return [
        action(h, "unpause", "Unpause", topic=topic, channel=channel) if paused
        else action(h, "pause", "Pause", topic=topic, channel=channel),
        action(h, "empty", "Empty", topic=topic, channel=channel),
        action(h, "delete", "Delete", topic=topic, channel=channel, next_url=after_delete),
    ]


def confirm_context(h: PageHandler, act: str, topic: str, channel: str, node: str,
                    back: str) -> Dict[str, Any]:
    a = action(h, act, act.capitalize(), topic=topic, channel=channel, node=node)
    return {"title": "Confirm %s" % act, "question": a["confirm"], "form_url": back, "action": act,
            "topic": topic, "channel": channel, "node": node, "back": back}


# ---------------------------------------------------------------- trends

def _trend(h: PageHandler, key: str, svg: bool = True) -> Dict[str, Any]:
    """The current rate of a topic or topic:channel, and (svg) its sparklines."""
    trends = h.admin.trends
    if trends is None:
        return {"rate": "", "depth_svg": "", "rate_svg": ""}
    rate = trends.current_rate(key)
    out = {"rate": ("%.2f/s" % rate) if rate is not None else ""}
    if svg:
        out.update(depth_svg=sparkline(trends.depths(key), "depth", "depth"),
                   rate_svg=sparkline(trends.rates(key), "messages/s", "rate"))
    return out


def _graphite_links(h: PageHandler, topic: str, channel: str = "") -> List[Dict[str, str]]:
    """Render links to graphite for a topic/channel, keyed as nsqd's statsd names them."""
    opts = h.admin.opts
    if not opts.graphite_url:
        return []
    prefix = opts.statsd_prefix.replace("%s", "*") if "%s" in opts.statsd_prefix else opts.statsd_prefix
    stem = "%s.topic.%s" % (prefix, topic) + (".channel.%s" % channel if channel else "")

    def fmt(f: str, key: str) -> str:
        return f % key if "%s" in f else key

    base = opts.graphite_url.rstrip("/") + "/render?from=-2h&width=800&height=300&target="
    return [
        {"label": "message rate", "href": base + quote("sumSeries(%s)" % fmt(opts.statsd_counter_format,
                                                                              stem + ".message_count"))},
        {"label": "depth", "href": base + quote("sumSeries(%s)" % fmt(opts.statsd_gauge_format, stem + ".depth"))},
    ]


# ---------------------------------------------------------------- rows

def _channel_row(h: PageHandler, c: ChannelStats, topic: str, with_actions: bool) -> Dict[str, Any]:
    row = {
        "name": c.channel_name, "topic": topic, "href": link(h, "topics", topic, c.channel_name),
        "depth": c.depth, "memory_depth": c.memory_depth, "backend_depth": c.backend_depth,
        "in_flight": c.in_flight_count, "deferred": c.deferred_count, "requeued": c.requeue_count,
        "timed_out": c.timeout_count, "connections": c.client_count, "messages": c.message_count,
        "paused": c.paused, "node": c.node, "hostname": c.hostname,
        "node_href": link(h, "nodes", c.node) if c.node and c.node != "*" else "",
        "extra": [{"name": k, "value": c.extra[k]} for k in EXTRA_CHANNEL_COUNTERS if k in c.extra],
        "actions": topic_actions(h, topic, c.paused, c.channel_name) if with_actions else [],
    }
    row.update(_trend(h, "%s:%s" % (topic, c.channel_name), svg=False))
    return row


def _client_row(h: PageHandler, c: Any) -> Dict[str, Any]:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(c.connect_ts)) if c.connect_ts else ""
    secs = max(0, c.connected_ns // 1_000_000_000)
    return {
        "client_id": c.client_id, "hostname": c.hostname, "remote_address": c.remote_address,
        "user_agent": c.user_agent, "version": c.version, "node": c.node,
        "node_href": link(h, "nodes", c.node) if c.node else "",
        "tls": c.tls, "tls_version": c.tls_version, "snappy": c.snappy, "deflate": c.deflate,
        "authed": c.authed, "auth_identity": c.auth_identity, "sample_rate": c.sample_rate,
        "ready": c.ready_count, "in_flight": c.in_flight_count, "finished": c.finish_count,
        "requeued": c.requeue_count, "messages": c.message_count, "connected_since": since,
        "connected_for": "%dh%02dm%02ds" % (secs // 3600, secs % 3600 // 60, secs % 60),
    }


def _node_topic_row(h: PageHandler, t: TopicStats) -> Dict[str, Any]:
    return {"node": t.node, "hostname": t.hostname, "node_href": link(h, "nodes", t.node),
            "topic": t.topic_name, "href": link(h, "topics", t.topic_name), "depth": t.depth,
            "memory_depth": t.memory_depth, "backend_depth": t.backend_depth,
            "messages": t.message_count, "channels": len(t.channels or []), "paused": t.paused}


# ---------------------------------------------------------------- pages

def _n(value: Any) -> int:
    return value if type(value) is int else 0


def _topic_sum(name: str) -> Dict[str, Any]:
    return {"name": name, "depth": 0, "memory_depth": 0, "backend_depth": 0, "in_flight": 0,
            "messages": 0, "paused": False, "nodes": 0, "channel_names": set()}


def _index_rows(h: PageHandler, names: List[str],
                node_stats: List[Tuple[Any, Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """Plain sums per topic straight from the nodes' JSON (a list needs no merge records)."""
    sums: Dict[str, Dict[str, Any]] = {}
    for name in names:
        sums[name] = _topic_sum(name)
    for _, stats in node_stats:
        for t in stats.get("topics") or []:
            if not isinstance(t, dict):
                continue
            name = str(t.get("topic_name", ""))
            s = sums.get(name)
            if s is None:
                s = sums[name] = _topic_sum(name)
            depth, backend = _n(t.get("depth")), _n(t.get("backend_depth"))
            s["depth"] += depth
            s["memory_depth"] += depth - backend
            s["backend_depth"] += backend
            s["messages"] += _n(t.get("message_count"))
            s["paused"] = s["paused"] or t.get("paused") is True
            s["nodes"] += 1
            for c in t.get("channels") or []:
                if isinstance(c, dict):
                    s["in_flight"] += _n(c.get("in_flight_count"))
                    s["channel_names"].add(str(c.get("channel_name", "")))
    rows = []
    for name in sorted(sums):
        row = sums[name]
        channel_names = sorted(row.pop("channel_names"))
        row.update(href=link(h, "topics", name), channel_count=len(channel_names),
                   channels=[{"name": c, "href": link(h, "topics", name, c)} for c in channel_names])
        row.update(_trend(h, name, svg=False))
        rows.append(row)
    return rows


def _index_table(h: PageHandler, names: List[str],
                 node_stats: List[Tuple[Any, Dict[str, Any]]]) -> Markup:
    return Markup(default_renderer().render("index_table.html", {"topics": _index_rows(h, names, node_stats)}))


def index_page(h: PageHandler) -> Page:
    """`/`: every topic with depth, in-flight, messages, rate and channels.

    From the trends sampler's latest pass when it is at most two trend
    intervals old (the page says when it was taken; the table is rendered
    once per pass), else from the nodes now.
    """
    admin, opts = h.admin, h.admin.opts
    snap = admin.index_snapshot
    now = time.time()
    if snap is not None and 0 <= now - snap.taken <= admin.snapshot_max_age():
        trends = admin.trends
        key = (link(h), trends.passes if trends is not None else 0)
        table = snap.fragments.get(key)
        if table is None:
            table = snap.fragments[key] = _index_table(h, snap.names, snap.node_stats)
        return 200, "index.html", {
            "section": "topics", "title": "Topics", "table": table, "messages": list(snap.messages),
            "lookupd_mode": bool(opts.lookupd_http_address),
            "as_of": time.strftime("%H:%M:%S UTC", time.gmtime(snap.taken)),
            "age": "%.1fs" % (now - snap.taken)}
    ci = admin.ci
    messages: List[str] = []
    try:
        names, partial = ci.get_topics(opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
        producers, partial = ci.get_producers(opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
    except ClusterError as e:
        return _failed("topics", "Topics", e)
    node_stats: List[Tuple[Any, Dict[str, Any]]] = []
    if producers:
        try:
            node_stats, partial = ci.get_nsqd_stats_raw(producers)
            _warn(messages, partial)
        except ClusterError as e:
            messages.append(str(e))
    return 200, "index.html", {"section": "topics", "title": "Topics",
                               "table": _index_table(h, names or [], node_stats),
                               "messages": messages, "lookupd_mode": bool(opts.lookupd_http_address),
                               "as_of": "", "age": ""}


def topic_page(h: PageHandler, topic: str) -> Page:
    """`/topics/:topic`: per-node rows and the channels table."""
    ci, opts = h.admin.ci, h.admin.opts
    messages: List[str] = []
    try:
        producers, partial = ci.get_topic_producers(topic, opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
        topic_list: List[TopicStats] = []
        if producers:
            topic_list, _, partial = ci.get_nsqd_stats(producers, topic, "", False)
            _warn(messages, partial)
    except ClusterError as e:
        status = 404 if "TOPIC_NOT_FOUND" in str(e) else 502
        return _failed("topics", "Topic %s" % topic, e, status)
    node_rows = [_node_topic_row(h, t) for t in topic_list]  # before merging (it shares channels)
    merged = TopicStats("", topic)
    for t in topic_list:
        merged.add(t)
    channels = [_channel_row(h, c, topic, True) for c in sorted(merged.channels or [],
                                                                key=lambda c: c.channel_name)]
    tombstone = []
    if h.is_admin() and opts.lookupd_http_address:
        tombstone = [p.http_address() for p in producers]
    for row in node_rows:
        row["actions"] = ([action(h, "tombstone", "Tombstone", topic=topic, node=row["node"])]
                          if row["node"] in tombstone else [])
    ctx = {"section": "topics", "title": "Topic %s" % topic, "topic": topic, "messages": messages,
           "depth": merged.depth, "memory_depth": merged.memory_depth,
           "backend_depth": merged.backend_depth, "message_count": merged.message_count,
           "paused": merged.paused, "in_flight": sum(c["in_flight"] for c in channels),
           "nodes": node_rows, "channels": channels, "actions": topic_actions(h, topic, merged.paused),
           "graphite_links": _graphite_links(h, topic), "no_producers": not producers}
    ctx.update(_trend(h, topic))
    return 200, "topic.html", ctx


def channel_page(h: PageHandler, topic: str, channel: str) -> Page:
    """`/topics/:topic/:channel`: per-node rows and the clients table."""
    ci, opts = h.admin.ci, h.admin.opts
    messages: List[str] = []
    stats: Optional[ChannelStats] = None
    try:
        producers, partial = ci.get_topic_producers(topic, opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
        if producers:
            _, channel_map, partial = ci.get_nsqd_stats(producers, topic, channel, True)
            _warn(messages, partial)
            stats = channel_map.get(channel)
    except ClusterError as e:
        status = 404 if "TOPIC_NOT_FOUND" in str(e) else 502
        return _failed("topics", "Channel %s:%s" % (topic, channel), e, status)
    if stats is None:
        return 404, "error.html", {"section": "topics", "title": "Channel %s:%s" % (topic, channel),
                                   "messages": messages,
                                   "error": "channel %s not found on any node of topic %s" % (channel, topic)}
    ctx = {"section": "topics", "title": "Channel %s:%s" % (topic, channel), "topic": topic,
           "channel": channel, "topic_href": link(h, "topics", topic), "messages": messages,
           "summary": _channel_row(h, stats, topic, False),
           "nodes": [_channel_row(h, n, topic, False) for n in stats.node_stats or []],
           "clients": [_client_row(h, c) for c in stats.clients or []],
           "actions": topic_actions(h, topic, stats.paused, channel),
           "graphite_links": _graphite_links(h, topic, channel)}
    ctx.update(_trend(h, "%s:%s" % (topic, channel)))
    return 200, "channel.html", ctx


def _producer_row(h: PageHandler, p: Producer, num_lookupd: int) -> Dict[str, Any]:
    return {"node": p.http_address(), "href": link(h, "nodes", p.http_address()),
            "hostname": p.hostname, "broadcast_address": p.broadcast_address,
            "tcp_port": p.tcp_port, "http_port": p.http_port, "version": p.version,
            "out_of_date": p.out_of_date, "remote_addresses": p.remote_addresses or [],
            "lookupd_conns": len(p.remote_addresses or []),
            "inconsistent": bool(num_lookupd) and p.is_inconsistent(num_lookupd),
            "topics": [{"name": t.topic, "href": link(h, "topics", t.topic), "tombstoned": t.tombstoned}
                       for t in p.topics or []],
            "topic_count": len(p.topics or []),
            "tombstones": sum(1 for t in p.topics or [] if t.tombstoned)}


def nodes_page(h: PageHandler) -> Page:
    """`/nodes`: every producer lookupd knows (or every --nsqd-http-address)."""
    ci, opts = h.admin.ci, h.admin.opts
    messages: List[str] = []
    try:
        producers, partial = ci.get_producers(opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
    except ClusterError as e:
        return _failed("nodes", "Nodes", e)
    n = len(opts.lookupd_http_address)
    return 200, "nodes.html", {"section": "nodes", "title": "Nodes", "messages": messages,
                               "nodes": [_producer_row(h, p, n) for p in producers],
                               "lookupds": list(opts.lookupd_http_address)}


def node_page(h: PageHandler, node: str) -> Page:
    """`/nodes/:node`: one node's topics, channels and clients."""
    ci, opts = h.admin.ci, h.admin.opts
    messages: List[str] = []
    try:
        producers, partial = ci.get_producers(opts.lookupd_http_address, opts.nsqd_http_address)
        _warn(messages, partial)
    except ClusterError as e:
        return _failed("nodes", "Node %s" % node, e)
    producer = search_producers(producers, node)
    if producer is None:
        return 404, "error.html", {"section": "nodes", "title": "Node %s" % node, "messages": messages,
                                   "error": "node %s not found" % node}
    try:
        topic_list, _, partial = ci.get_nsqd_stats([producer], "", "", True)
    except ClusterError as e:
        return _failed("nodes", "Node %s" % node, e)
    topics, channels, clients = [], [], []
    for t in topic_list:
        topics.append(_node_topic_row(h, t))
        for c in t.channels or []:
            channels.append(_channel_row(h, c, t.topic_name, False))
            clients.extend(dict(_client_row(h, cl), topic=t.topic_name, channel=c.channel_name)
                           for cl in c.clients or [])
    return 200, "node.html", {
        "section": "nodes", "title": "Node %s" % node, "node": node, "messages": messages,
        "producer": _producer_row(h, producer, len(opts.lookupd_http_address)),
        "topics": topics, "channels": channels, "clients": clients,
        "total_messages": sum(t.message_count for t in topic_list), "total_clients": len(clients)}


def counter_page(h: PageHandler) -> Page:
    """`/counter`: messages processed over the cluster (admin.js keeps it ticking)."""
    try:
        doc = h.counter_stats()
    except HTTPError as e:
        return _failed("counter", "Counter", Exception(e.message), e.status)
    stats = list(doc["stats"].values())
    total = sum(s["message_count"] for s in stats)
    messages = [doc["message"][len("WARNING: "):]] if doc["message"] else []
    return 200, "counter.html", {"section": "counter", "title": "Counter", "total": total,
                                 "stats": stats, "messages": messages,
                                 "api_url": link(h, "api", "counter")}


def lookup_page(h: PageHandler) -> Page:
    """`/lookup`: the topics and channels lookupd knows, and the create form."""
    ci, opts = h.admin.ci, h.admin.opts
    messages: List[str] = []
    rows = []
    if opts.lookupd_http_address:
        try:
            names, partial = ci.get_lookupd_topics(opts.lookupd_http_address)
            _warn(messages, partial)
        except ClusterError as e:
            return _failed("lookup", "Lookup", e)
        channels_of = ci.get_lookupd_channels_of(names or [], opts.lookupd_http_address)
        for name in names or []:
            rows.append({"name": name, "href": link(h, "topics", name),
                         "channels": [{"name": c, "href": link(h, "topics", name, c)}
                                      for c in channels_of[name] or []]})
    return 200, "lookup.html", {"section": "lookup", "title": "Lookup", "messages": messages,
                                "topics": rows, "lookupds": list(opts.lookupd_http_address),
                                "nsqds": list(opts.nsqd_http_address),
                                "create_url": link(h, "lookup"), "api_url": link(h, "api", "topics")}
