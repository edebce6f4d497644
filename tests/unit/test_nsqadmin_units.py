"""nsqadmin's pure logic: the escaping renderer, Go-style body decoding, NSQ's merge rules, trends, options."""
from __future__ import annotations

import configparser
import fnmatch
import os

import pytest

from nsqadmin_sync.clusterinfo.data import go_quote
from nsqadmin_sync.clusterinfo.types import (ChannelStats, E2eProcessingLatencyAggregate, TopicStats,
                                             parse_version)
from nsqadmin_sync.actions import decode_struct
from nsqadmin_sync.http_api import build_routes, join_base
from nsqadmin_sync.notify import admin_action, basic_auth_user
from nsqadmin_sync.options import FLAGS, Options, normalize_base_path
from nsqadmin_sync.render import Markup, Renderer, TemplateError
from nsqadmin_sync.trends import MAX_SERIES, Trends, sparkline
from nsqd_sync.flags import FlagError, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return Renderer(str(tmp_path))


def test_renderer_escapes_everything_but_markup(tmp_path):
    r = write(tmp_path, "t.html", '<td title="{{ x }}">{{ x }}</td>{{ m }}{{ x | raw }}')
    out = r.render("t.html", {"x": '<script>"a"&\'b\'</script>', "m": Markup("<b>ok</b>")})
    assert out.startswith('<td title="&lt;script&gt;&quot;a&quot;&amp;&#x27;b&#x27;&lt;/script&gt;">')
    assert "<b>ok</b>" in out and out.endswith('<script>"a"&\'b\'</script>')


def test_renderer_control_flow_filters_and_include(tmp_path):
    write(tmp_path, "row.html", "[{{ i.name | url }}={{ i.n | num }}]")
    r = write(tmp_path, "t.html", "{% for i in items %}{% include \"row.html\" %}{% else %}none{% endfor %}"
                                  "{% if not flag %}-off{% elif other %}-other{% else %}-on{% endif %}")
    assert r.render("t.html", {"items": [{"name": "a b/#c", "n": 1234567}], "flag": False}) == "[a%20b%2F%23c=1,234,567]-off"
    assert r.render("t.html", {"items": [], "flag": True, "other": True}) == "none-other"
    assert r.render("t.html", {"items": None, "flag": True}) == "none-on"
    with pytest.raises(TemplateError):
        write(tmp_path, "bad.html", "{% if x %}").render("bad.html", {})
    with pytest.raises(TemplateError):
        write(tmp_path, "bad2.html", "{{ x | exec }}").render("bad2.html", {})


def test_every_shipped_template_compiles():
    r = Renderer()
    names = [n for n in os.listdir(r.directory) if n.endswith(".html")]
    assert len(names) >= 10
    for name in names:
        r._compiled(name)


@pytest.mark.parametrize("body,result", [
    (b"", "EOF"), (b"  \n", "EOF"), (b"xx", "invalid character 'x' looking for beginning of value"),
    (b'{"action":', "unexpected EOF"), (b"[1]", "json: cannot unmarshal array into Go value of type struct"),
    (b'{"action": 5}', "json: cannot unmarshal number into Go struct field .action of type string"),
    (b'{"action": true}', "json: cannot unmarshal bool into Go struct field .action of type string"),
])
def test_decode_struct_errors_in_gos_words(body, result):
    with pytest.raises(ValueError) as e:
        decode_struct(body, ("action",))
    assert str(e.value) == result


def test_decode_struct_values():
    assert decode_struct(b'{"ACTION": "pause", "x": 1} trailing', ("action",)) == {"action": "pause"}
    assert decode_struct(b'{"action": "a", "Action": "b"}', ("action",)) == {"action": "a"}
    assert decode_struct(b"null", ("topic", "channel")) == {"topic": "", "channel": ""}


def test_go_quote():
    assert go_quote(b'{"message":"TOPIC_NOT_FOUND"}') == '"{\\"message\\":\\"TOPIC_NOT_FOUND\\"}"'
    assert go_quote(b"a\nb\x00\\") == '"a\\nb\\x00\\\\"'
    assert go_quote(b"") == '""'


def channel(node, name, hostname, depth=0, clients=None, e2e=None):
    c = ChannelStats.from_json({"channel_name": name, "depth": depth, "message_count": depth,
                                "clients": clients, "e2e_processing_latency": e2e}, 0)
    c.node, c.hostname, c.topic_name = node, hostname, "t"
    return c


def test_topic_merge_follows_nsq_including_shared_channel_records():
    a = TopicStats("a:1", "t")
    a.hostname, a.message_count, a.channels = "h1", 3, [channel("a:1", "c", "h1", 2)]
    b = TopicStats("b:1", "t")
    b.hostname, b.message_count, b.channels = "h2", 4, [channel("b:1", "c", "h2", 5), channel("b:1", "d", "h2", 1)]
    merged = TopicStats("", "t")
    merged.add(a)
    merged.add(b)
    doc = merged.to_json()
    assert doc["node"] == "*" and doc["message_count"] == 7 and [n["node"] for n in doc["nodes"]] == ["a:1", "b:1"]
    c, d = doc["channels"]
    assert (c["channel_name"], c["node"], c["depth"]) == ("c", "*", 7)
    # as in NSQ: the first node's record became the aggregate, listing only the nodes added to it
    assert [n["node"] for n in c["nodes"]] == ["b:1"]
    assert doc["nodes"][0]["channels"][0] is not None and doc["nodes"][0]["channels"][0]["depth"] == 7
    assert (d["node"], d["nodes"]) == ("b:1", None)
    assert doc["e2e_processing_latency"] == {"count": 0, "percentiles": None, "topic": "t", "channel": "",
                                             "host": "*"}


def test_channel_merge_keeps_nil_slices_and_sorts_clients_by_host():
    merged = ChannelStats("x", "t", "c")
    merged.add(channel("a:1", "c", "h2", clients=None))
    assert merged.to_json()["clients"] is None
    merged.add(channel("b:1", "c", "h1", clients=[{"hostname": "zz", "client_id": "1"},
                                                  {"hostname": "aa", "client_id": "2"}]))
    doc = merged.to_json()
    assert [c["client_id"] for c in doc["clients"]] == ["2", "1"]
    assert [n["node"] for n in doc["nodes"]] == ["b:1", "a:1"]  # by hostname
    empty = ChannelStats("x", "t", "c")
    empty.add(channel("a:1", "c", "h", clients=[]))
    assert empty.to_json()["clients"] is None  # Go: append(nil, nothing...) stays nil


def test_e2e_aggregate_merges_percentiles_as_nsq():
    one = E2eProcessingLatencyAggregate.from_json(
        {"count": 2, "percentiles": [{"quantile": 0.99, "value": 100}, {"quantile": 0.5, "value": 10}]})
    two = E2eProcessingLatencyAggregate.from_json({"count": 6, "percentiles": [{"quantile": 0.99, "value": 300}]})
    agg = E2eProcessingLatencyAggregate(topic="t", addr="*")
    agg.add(one)
    agg.add(two)
    doc = agg.to_json()
    assert doc["count"] == 8 and doc["host"] == "*"
    p99 = doc["percentiles"][0]
    assert list(p99) == ["average", "count", "max", "min", "quantile"]
    assert p99 == {"average": 250, "count": 8, "max": 300, "min": 300, "quantile": 0.99}
    assert doc["percentiles"][1] == {"average": 10, "count": 2, "max": 10, "min": 10, "quantile": 0.5}
    assert one.to_json()["percentiles"][0]["value"] == 100


def test_versions_compare_like_semver():
    assert parse_version("1.3.0") > parse_version("1.2.1") > parse_version("1.2.1-rc1") > parse_version("junk")
    assert parse_version("v1.0.0") == parse_version("1.0.0")


def test_trends_rates_sparklines_and_bounds():
    t = Trends(lambda: {}, interval=10.0)
    assert t.maxlen == 361
    for i in range(400):
        t.record({"top": (i, i * 50), "top:ch": (0, 0)}, 1000.0 + i * 10)
    samples = t.samples("top")
    assert len(samples) == 361  # one hour at 10 s
    assert samples[0] == (1000.0 + 39 * 10, 39, 39 * 50) and samples[-1] == (1000.0 + 399 * 10, 399, 399 * 50)
    assert t.current_rate("top") == 5.0 and t.current_rate("top:ch") == 0.0
    assert t.rates("top")[-1] == (1000.0 + 399 * 10, 5.0) and len(t.rates("top")) == 360
    assert t.current_rate("nothing") is None and t.samples("nothing") == []
    t.record({"top": (0, 0)}, 1000.0 + 400 * 10)  # counter reset: rate 0, never negative
    assert t.current_rate("top") == 0.0
    assert t.current_rate("top:ch") is None  # not seen in the last pass
    assert t.samples("top:ch")[-1][0] == 1000.0 + 399 * 10  # the gap is skipped, not zero
    for i in range(361):
        t.record({"other": (1, 1)}, 1000.0 + (401 + i) * 10)
    assert t.samples("top") == [] and "top" not in t._series  # unseen for an hour: dropped
    assert len(t.samples("other")) == 361
    svg = sparkline(t.depths("other") or [(0, 1), (1, 2)], "depth <x>", 'd"')
    assert svg.startswith('<svg class="sparkline" data-series="d&quot;"') and "<x>" not in svg
    assert "collecting" in sparkline([(0, 1)], "depth", "depth")


def test_trends_first_samples_and_a_new_series():
    t = Trends(lambda: {}, interval=5.0)
    t.record({"a": (3, 10)}, 100.0)
    assert t.samples("a") == [(100.0, 3, 10)] and t.current_rate("a") is None
    t.record({"a": (4, 30), "b": (1, 1)}, 105.0)
    assert t.current_rate("a") == 4.0 and t.current_rate("b") is None
    assert t.samples("b") == [(105.0, 1, 1)]


def test_trends_cap_the_number_of_series():
    t = Trends(lambda: {}, interval=5.0)
    t.record({"t%d" % i: (1, 1) for i in range(MAX_SERIES + 10)}, 1.0)
    assert len(t._series) == MAX_SERIES


def values(**cli):
    raw = {f.dest: None for f in FLAGS}
    raw.update({k: v for k, v in cli.items()})
    for f in FLAGS:
        if f.multiple and raw[f.dest] is None:
            raw[f.dest] = ()
    return resolve(FLAGS, raw, {}, lambda m: None)


def test_options_validation_and_config_values():
    with pytest.raises(FlagError, match="--nsqd-http-address or --lookupd-http-address required"):
        Options.from_values(values())
    with pytest.raises(FlagError, match="not both"):
        Options.from_values(values(lookupd_http_address=("a:1",), nsqd_http_address=("b:2",)))
    with pytest.raises(FlagError, match="allow-config-from-cidr"):
        Options.from_values(values(lookupd_http_address=("a:1",), allow_config_from_cidr="nope"))
    with pytest.raises(FlagError, match="lookupd-http-address"):
        Options.from_values(values(lookupd_http_address=("nocolon",)))
    opts = Options.from_values(values(nsqd_http_address=("a:1", "b:2"), base_path="x//y/",
                                      http_client_connect_timeout="250ms", log_level="WARN"))
    assert opts.base_path == "/x/y"
    assert opts.config_value("nsqd_http_addresses") == (True, ["a:1", "b:2"])
    assert opts.config_value("nsqlookupd_http_addresses") == (True, [])
    assert opts.config_value("http_client_connect_timeout") == (True, 250_000_000)
    assert opts.config_value("log_level") == (True, 3)
    assert opts.config_value("proxy_graphite") == (True, False)
    assert opts.config_value("base_path") == (True, "/x/y")
    assert opts.config_value("version") == (False, None)


def test_base_path_routes():
    assert normalize_base_path("") == "/" and normalize_base_path("admin/") == "/admin"
    assert join_base("/", "/") == "/" and join_base("/admin", "/") == "/admin"
    routes = build_routes("/admin")
    assert "/admin/api/topics/:topic" in routes and "/admin" in routes and "/api/topics" not in routes


def test_notification_document():
    doc = admin_action("delete_channel", "t", "c", "", user="", remote_ip="1.2.3.4:5", user_agent="ua",
                       url="http://h/x", via="me", timestamp=7)
    assert doc == {"action": "delete_channel", "topic": "t", "channel": "c", "timestamp": 7,
                   "remote_ip": "1.2.3.4:5", "user_agent": "ua", "url": "http://h/x", "via": "me"}
    assert basic_auth_user("Basic Ym9iOnNlY3JldA==") == "bob"
    assert basic_auth_user("Basic !!!") == "" and basic_auth_user("Bearer x") == ""
    assert basic_auth_user("Basic " + "Ym9i") == ""  # no colon


def test_templates_and_static_files_are_package_data():
    """A non-editable install ships every template and asset (setup.cfg package_data)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = [p.strip() for p in cfg["options.package_data"]["nsqadmin_sync"].split("\n") if p.strip()]
    pkg = os.path.join(ROOT, "nsqadmin_sync")
    for sub in ("templates", "static"):
        for name in os.listdir(os.path.join(pkg, sub)):
            rel = "%s/%s" % (sub, name)
            assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
    with open(os.path.join(ROOT, "MANIFEST.in")) as f:
        manifest = f.read()
    assert "nsqadmin_sync/templates" in manifest and "nsqadmin_sync/static" in manifest
