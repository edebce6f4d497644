"""nsqadmin's pages over a real cluster: data without JavaScript, escaping, forms, safety, trends.

Plain HTTP with `requests` (no browser): what a client with JavaScript off
gets.  Cross-site requests, --admin-user, the confirmation step of the
forms and the sparklines are checked here too.
"""
from __future__ import annotations

import html
import os
import re
import subprocess
import sys

import pytest
import requests

from nsqd_sync.client import Consumer
from tests.helpers import NodeProcess, wait_for
from tests.server.nsqadmin_cluster import Cluster, admin_url

pytestmark = pytest.mark.timeout(180)

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory)
    try:
        c.admin_proc = c.admin("--trend-interval=300ms")
        yield c
    finally:
        c.stop()


def get(admin, path, **kw):
    return requests.get(admin_url(admin, path), timeout=15, **kw)


def page_token(text):
    return re.search(r'<meta name="nsqadmin-token" content="([0-9a-f]+)">', text).group(1)


def test_pages_carry_their_data_without_javascript(cluster):
    cluster.make_topic("pg_data", ["pgch1", "pgch2"], messages=2)
    a = cluster.admin_proc

    def index_row():  # `/` shows the last sampling pass (<= 2 trend intervals old): poll
        index = get(a, "/")
        assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
        m = re.search(r'<tr class="topic[^"]*" data-topic="pg_data">.*?</tr>', index.text, re.S)
        return m.group(0) if m and 'class="num messages">4<' in m.group(0) else None

    row = wait_for(index_row, 15, interval=0.1, message="pg_data's counts on /")
    assert 'class="num depth">0<' in row and 'class="num messages">4<' in row  # all in the channels
    assert 'data-channel="pgch1"' in row and 'data-channel="pgch2"' in row

    topic = get(a, "/topics/pg_data").text
    assert 'id="channels"' in topic and 'id="topic-nodes"' in topic
    for node in cluster.nodes:
        assert 'data-node="%s"' % node.http_address in topic
    ch_row = re.search(r'<tr class="channel[^"]*" data-topic="pg_data" data-channel="pgch1">.*?</tr>',
                       topic, re.S).group(0)
    assert 'class="num depth">4<' in ch_row and 'data-action="pause"' in ch_row

    channel = get(a, "/topics/pg_data/pgch1")
    assert channel.status_code == 200 and 'id="channel-summary"' in channel.text
    assert 'id="no-clients"' in channel.text

    nodes = get(a, "/nodes").text
    for node in cluster.nodes:
        assert 'data-node="%s"' % node.http_address in nodes
        assert '<td class="num tcp-port">%d</td>' % node.tcp_port in nodes

    node_page = get(a, "/nodes/" + cluster.nodes[0].http_address)
    assert node_page.status_code == 200 and 'data-topic="pg_data"' in node_page.text
    assert get(a, "/nodes/127.0.0.1:1").status_code == 404
    assert get(a, "/topics/pg_no_such_topic").status_code == 404
    assert get(a, "/topics/pg_data/nochannel").status_code == 404

    counter = get(a, "/counter").text
    assert 'id="counter-total"' in counter and 'data-channel="pgch1"' in counter
    lookup = get(a, "/lookup").text
    assert 'id="create-topic-channel"' in lookup and 'data-topic="pg_data"' in lookup

    for asset, ctype in (("admin.js", "javascript"), ("admin.css", "text/css")):
        r = get(a, "/static/" + asset)
        assert r.status_code == 200 and ctype in r.headers["Content-Type"]
    assert get(a, "/static/nope.js").status_code == 404


def test_client_supplied_names_are_escaped(cluster):
    cluster.make_topic("pg_xss", ["c1"])
    node = cluster.nodes[0]
    consumer = Consumer("pg_xss", "c1", lambda m: None, nsqd_tcp_addresses=[node.tcp_address],
                        client_id=XSS, hostname='host"><img src=x onerror=alert(2)>',
                        user_agent="<b>agent</b>")
    consumer.start()
    try:
        wait_for(lambda: (cluster.node_channel(node, "pg_xss", "c1") or {}).get("client_count") == 1, 15,
                 message="consumer connected")
        for path in ("/topics/pg_xss/c1", "/nodes/" + node.http_address):
            text = get(cluster.admin_proc, path).text
            assert '<td class="client-id">%s</td>' % html.escape(XSS) in text
            assert XSS not in text and "<img src=x" not in text and "<b>agent</b>" not in text
            assert html.escape("<b>agent</b>") in text
        flash = get(cluster.admin_proc, "/?message=" + requests.utils.quote(XSS)).text
        assert XSS not in flash and html.escape(XSS) in flash
    finally:
        consumer.stop(timeout=2.0)


def test_cross_site_requests_are_refused(cluster):
    cluster.make_topic("pg_csrf", ["c1"])
    a = cluster.admin_proc
    url = admin_url(a, "/api/topics/pg_csrf")
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"},
                    {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = requests.post(url, json={"action": "pause"}, headers=headers, timeout=15)
        assert (r.status_code, r.json()) == (403, {"message": "CROSS_SITE_REQUEST_FORBIDDEN"}), headers
        r = requests.delete(url, headers=headers, timeout=15)
        assert r.status_code == 403
        r = requests.post(admin_url(a, "/topics/pg_csrf"), data={"action": "pause", "confirm": "1"},
                          headers=headers, timeout=15, allow_redirects=False)
        assert r.status_code == 403
    assert not any(cluster.node_topic(n, "pg_csrf")["paused"] for n in cluster.nodes)
    assert all(cluster.node_topic(n, "pg_csrf") is not None for n in cluster.nodes)

    same = "http://" + a.http_address
    r = requests.post(url, json={"action": "pause"}, timeout=15,
                      headers={"Origin": same, "Referer": same + "/topics/pg_csrf",
                               "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200
    assert all(cluster.node_topic(n, "pg_csrf")["paused"] for n in cluster.nodes)

    # behind a proxy that rewrites Host, the page's token vouches for the request
    token = page_token(get(a, "/topics/pg_csrf").text)
    proxied = {"Origin": "http://nsqadmin.example.com"}
    r = requests.post(url, json={"action": "unpause"}, headers=dict(proxied, **{"X-NSQAdmin-Token": "0" * 40}),
                      timeout=15)
    assert r.status_code == 403
    r = requests.post(url, json={"action": "unpause"}, headers=dict(proxied, **{"X-NSQAdmin-Token": token}),
                      timeout=15)
    assert r.status_code == 200
    form = {"action": "pause", "confirm": "1", "csrf_token": token}
    r = requests.post(admin_url(a, "/topics/pg_csrf"), data=form,
                      headers=proxied, timeout=15, allow_redirects=False)
    assert r.status_code == 303
    assert all(cluster.node_topic(n, "pg_csrf")["paused"] for n in cluster.nodes)


def test_forms_confirm_then_act_without_javascript(cluster):
    cluster.make_topic("pg_form", ["c1"], messages=1)
    a = cluster.admin_proc
    origin = {"Origin": "http://" + a.http_address}
    page_url = admin_url(a, "/topics/pg_form/c1")
    r = requests.post(page_url, data={"action": "empty"}, headers=origin, timeout=15, allow_redirects=False)
    assert r.status_code == 200 and 'id="confirm-form"' in r.text
    assert all(cluster.node_channel(n, "pg_form", "c1")["depth"] == 1 for n in cluster.nodes)
    r = requests.post(page_url, data={"action": "empty", "confirm": "1"}, headers=origin, timeout=15,
                      allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/topics/pg_form/c1"
    assert all(cluster.node_channel(n, "pg_form", "c1")["depth"] == 0 for n in cluster.nodes)

    r = requests.post(page_url, data={"action": "unpause"}, headers=origin, timeout=15, allow_redirects=False)
    assert r.status_code == 303  # not destructive: no confirmation step

    r = requests.post(admin_url(a, "/lookup"), data={"action": "create", "topic": "pg_form", "channel": "made"},
                      headers=origin, timeout=15, allow_redirects=False)
    assert r.status_code == 303
    assert all(cluster.node_channel(n, "pg_form", "made") is not None for n in cluster.nodes)

    r = requests.post(page_url, data={"action": "delete", "confirm": "1"}, headers=origin, timeout=15,
                      allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/topics/pg_form"
    assert all(cluster.node_channel(n, "pg_form", "c1") is None for n in cluster.nodes)

    r = requests.post(page_url, data={"action": "explode", "confirm": "1"}, headers=origin, timeout=15)
    assert r.status_code == 400

    n1, n2 = cluster.nodes
    topic_page = get(a, "/topics/pg_form").text
    assert 'data-action="tombstone" data-topic="pg_form" data-channel="" data-node="%s"' % n1.http_address in topic_page
    node_url = admin_url(a, "/nodes/" + n1.http_address)
    r = requests.post(node_url, data={"action": "tombstone", "topic": "pg_form"}, headers=origin, timeout=15,
                      allow_redirects=False)
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and 'value="pg_form"' in r.text
    r = requests.post(node_url, data={"action": "tombstone", "topic": "pg_form", "confirm": "1"}, headers=origin,
                      timeout=15, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/nodes/" + n1.http_address
    assert cluster.node_topic(n1, "pg_form") is None and cluster.node_topic(n2, "pg_form") is not None


def test_admin_users_only_may_act(cluster):
    cluster.make_topic("pg_acl", ["c1"])
    admin = cluster.admin("--admin-user=alice", "--admin-user=carol", "--acl-http-header=X-Remote-User")
    try:
        url = admin_url(admin, "/api/topics/pg_acl")
        for headers in ({}, {"X-Remote-User": "mallory"}, {"X-Forwarded-User": "alice"}):
            r = requests.post(url, json={"action": "pause"}, headers=headers, timeout=15)
            assert (r.status_code, r.json()) == (403, {"message": "FORBIDDEN"})
            assert requests.delete(url, headers=headers, timeout=15).status_code == 403
            assert requests.post(admin_url(admin, "/api/topics"), json={"topic": "pg_acl2"},
                                 headers=headers, timeout=15).status_code == 403
            assert requests.delete(admin_url(admin, "/api/nodes/" + cluster.nodes[0].http_address),
                                   json={"topic": "pg_acl"}, headers=headers, timeout=15).status_code == 403
        assert not any(cluster.node_topic(n, "pg_acl")["paused"] for n in cluster.nodes)

        page = requests.get(admin_url(admin, "/topics/pg_acl"), timeout=15).text
        assert 'id="read-only"' in page and "action-form" not in page and 'data-channel="c1"' in page
        assert requests.get(url, timeout=15).status_code == 200  # reading stays open

        alice = {"X-Remote-User": "alice"}
        page = requests.get(admin_url(admin, "/topics/pg_acl"), headers=alice, timeout=15).text
        assert 'id="read-only"' not in page and 'data-action="pause"' in page
        # a token is bound to its user: mallory's cannot vouch for a cross-site request as alice
        mallory_token = page_token(requests.get(admin_url(admin, "/topics/pg_acl"),
                                                headers={"X-Remote-User": "mallory"}, timeout=15).text)
        assert mallory_token != page_token(page)
        r = requests.post(url, json={"action": "pause"}, timeout=15,
                          headers=dict(alice, Origin="http://evil.example", **{"X-NSQAdmin-Token": mallory_token}))
        assert r.status_code == 403
        assert not any(cluster.node_topic(n, "pg_acl")["paused"] for n in cluster.nodes)
        r = requests.post(url, json={"action": "pause"}, headers=alice, timeout=15)
        assert r.status_code == 200
        assert all(cluster.node_topic(n, "pg_acl")["paused"] for n in cluster.nodes)
    finally:
        admin.kill()


def test_sparklines_and_rate_from_sampled_stats(cluster):
    cluster.make_topic("pg_trend", ["c1"], messages=1)
    a = cluster.admin_proc
    node = cluster.nodes[0]

    def publish_and_look():
        requests.post("http://%s/mpub" % node.http_address, params={"topic": "pg_trend"},
                      data=b"a\nb\nc\nd", timeout=5)
        text = get(a, "/topics/pg_trend").text
        return text if text.count('<svg class="sparkline"') >= 2 else None

    text = wait_for(publish_and_look, 30, interval=0.3, message="two sparklines on the topic page")
    assert 'data-series="depth"' in text and 'data-series="rate"' in text
    summary_rate = re.search(r'<dd class="rate">([^<]*)</dd>', text).group(1)
    assert summary_rate.endswith("/s")
    index_row = re.search(r'data-topic="pg_trend">.*?</tr>', get(a, "/").text, re.S).group(0)
    assert re.search(r'class="num rate">\d+\.\d\d/s<', index_row)
    channel = get(a, "/topics/pg_trend/c1").text
    assert '<svg class="sparkline" data-series="depth"' in channel


def test_graphite_links_when_configured(cluster):
    cluster.make_topic("pg_graphite", ["c1"])
    admin = cluster.admin("--graphite-url=http://graphite.invalid:8080")
    try:
        text = requests.get(admin_url(admin, "/topics/pg_graphite"), timeout=15).text
        assert 'id="graphite"' in text and "http://graphite.invalid:8080/render?" in text
        assert "pg_graphite" in html.unescape(text.split('id="graphite"')[1].split("</p>")[0])
        assert 'id="graphite"' not in get(cluster.admin_proc, "/topics/pg_graphite").text
    finally:
        admin.kill()


def test_base_path(cluster):
    cluster.make_topic("pg_base", ["c1"])
    admin = cluster.admin("--base-path=admin/")
    try:
        assert requests.get(admin_url(admin, "/admin/ping"), timeout=15).text == "OK"
        assert "pg_base" in requests.get(admin_url(admin, "/admin/api/topics"), timeout=15).json()["topics"]
        assert requests.get(admin_url(admin, "/api/topics"), timeout=15).status_code == 404
        text = requests.get(admin_url(admin, "/admin"), timeout=15).text
        assert 'href="/admin/topics/pg_base"' in text and 'src="/admin/static/admin.js"' in text
        assert requests.get(admin_url(admin, "/admin/static/admin.css"), timeout=15).status_code == 200
        assert requests.get(admin_url(admin, "/admin/config/base_path"), timeout=15).text == "/admin"
    finally:
        admin.kill()


def test_no_cdn_or_external_assets():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "nsqadmin_sync")
    for sub in ("templates", "static"):
        for name in [n for n in os.listdir(os.path.join(root, sub)) if n != "README"]:
            with open(os.path.join(root, sub, name), encoding="utf-8") as f:
                text = f.read()
            assert not re.search(r'(src|href)="(https?:)?//', text), name
            assert "<script>" not in text, name  # no inline scripts: the CSP forbids them


def test_cli_version_errors_listening_line_and_sigterm(tmp_path, cluster):
    out = subprocess.run([sys.executable, "-m", "nsqadmin_sync", "--version"], capture_output=True,
                         text=True, timeout=30)
    v = sys.version_info
    assert out.returncode == 0
    assert out.stdout == "nsqadmin v1.3.0-sync (built w/python%d.%d.%d)\n" % (v.major, v.minor, v.micro)
    for args, message in (([], "--nsqd-http-address or --lookupd-http-address required"),
                          (["--lookupd-http-address=a:1", "--nsqd-http-address=b:2"],
                           "use --nsqd-http-address or --lookupd-http-address not both"),
                          (["-lookupd-http-address", "a:1", "--http-client-tls-cert=x"],
                           "--http-client-tls-key must be specified with --http-client-tls-cert"),
                          (["--lookupd-http-address=a:1", "--no-such-flag"], "flag provided but not defined")):
        out = subprocess.run([sys.executable, "-m", "nsqadmin_sync"] + args, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    config = tmp_path / "nsqadmin.toml"
    config.write_text('nsqlookupd_http_addresses = ["%s"]\nadmin_users = ["zed"]\n' % cluster.lookupd.http_address)
    admin = NodeProcess("nsqadmin", ["-config", str(config), "-log-level", "debug"], tcp=None)
    try:
        assert "HTTP: listening on 127.0.0.1:%d" % admin.http_port in admin.log_text()
        assert requests.get(admin_url(admin, "/config/admin_users"), timeout=15).json() == ["zed"]
        assert admin.stop() == 0
    finally:
        admin.kill()


def test_index_shows_the_sampled_counts_with_their_time_and_an_action_at_once(cluster):
    """`/` serves the trend sampler's latest pass (time shown); an action makes it ask the nodes."""
    cluster.make_topic("pg_snap", ["c1"])
    a = cluster.admin_proc

    def sampled():
        text = get(a, "/").text
        return text if 'id="as-of"' in text and 'data-topic="pg_snap"' in text else None

    text = wait_for(sampled, 15, interval=0.1, message="/ from a sampling pass with pg_snap")
    assert re.search(r'<p id="as-of" class="note">Counts as of \d\d:\d\d:\d\d UTC \(\d+\.\ds ago\)', text)
    r = requests.post(admin_url(a, "/api/topics/pg_snap"), json={"action": "pause"}, timeout=15)
    assert r.status_code == 200
    row = re.search(r'<tr class="topic[^"]*" data-topic="pg_snap">', get(a, "/").text).group(0)
    assert "paused" in row  # not the pass from before the action
    assert requests.post(admin_url(a, "/api/topics/pg_snap"), json={"action": "unpause"},
                         timeout=15).status_code == 200
