"""nsqadmin's pages in a real browser (headless Chromium driven by selenium).

One cluster per module: an nsqlookupd, two of our nsqd registered with it,
real messages on both nodes, a real consumer (our client) whose client_id,
hostname and user agent are HTML, and our nsqadmin over the lookupd.  Each
test loads pages the way a user does, reads what is shown (visible text,
table cells), compares it with what the nodes report in their own /stats,
and saves a PNG of every page under its tmp dir.  The action tests click
the page's buttons, answer the confirmation, and check the nodes changed.

Skipped (with the reason) only when no browser is installed here; CI
installs one and sets NSQ_SYNC_REQUIRE_BROWSER=1, turning a missing browser
into a failure.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import pytest

from nsqd_sync.client import Consumer
from tests.admin.browser import Browser, browser_missing, required
from tests.helpers import BodyCollector, NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(240)

TOPIC = "browser_t"  # on both nodes: channels "live" (consumed) and "held" (not)
OTHER = "browser_other"  # only on the first node, no channel
ACT = "browser_act"  # on both nodes, channels "held2" and "doomed": the action tests act here
XSS = "<script>alert(1)</script>"
HOST = "<i>host</i>"
AGENT = "browser-test/1.0 <b>agent</b>"
PUBLISHED = (7, 5)  # messages on TOPIC per node
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser_ok() -> None:
    reason = browser_missing()
    if reason is not None:
        if required():
            pytest.fail("a browser is required here (NSQ_SYNC_REQUIRE_BROWSER) but " + reason)
        pytest.skip("no browser to drive: " + reason)


@dataclass
class Cluster:
    lookupd: NodeProcess
    nodes: List[NodeProcess]
    admin: NodeProcess
    collector: BodyCollector

    def url(self, path: str) -> str:
        return "http://%s%s" % (self.admin.http_address, path)

    def stats(self, node: NodeProcess, topic: Optional[str] = None) -> dict:
        path = "/stats?format=json" + ("&topic=" + topic if topic else "")
        code, body, _ = http_request(node.http_port, path)
        assert code == 200, body
        return json.loads(body)

    def topic_stats(self, node: NodeProcess, topic: str) -> Optional[dict]:
        for t in self.stats(node, topic).get("topics") or []:
            if t["topic_name"] == topic:
                return t
        return None

    def channel_stats(self, node: NodeProcess, topic: str, channel: str) -> Optional[dict]:
        t = self.topic_stats(node, topic)
        for c in (t or {}).get("channels") or []:
            if c["channel_name"] == channel:
                return c
        return None


def _post(node: NodeProcess, path: str, body: bytes = b"") -> None:
    code, data, _ = http_request(node.http_port, path, method="POST", body=body)
    assert code == 200, (path, code, data)


@pytest.fixture(scope="module")
def cluster(browser_ok, tmp_path_factory) -> Iterator[Cluster]:
    started: List[NodeProcess] = []
    consumer: Optional[Consumer] = None
    try:
        lookupd = NodeProcess("nsqlookupd")
        started.append(lookupd)
        nodes = []
        for i in range(2):
            node = NodeProcess("nsqd", data_path=str(tmp_path_factory.mktemp("nsqd%d" % i)),
                               args=["--lookupd-tcp-address=" + lookupd.tcp_address,
                                     "--broadcast-address=127.0.0.1"])
            started.append(node)
            nodes.append(node)
        for node in nodes:
            _post(node, "/topic/create?topic=" + TOPIC)
            _post(node, "/topic/create?topic=" + ACT)
            for channel in ("live", "held"):
                _post(node, "/channel/create?topic=%s&channel=%s" % (TOPIC, channel))
            _post(node, "/channel/create?topic=%s&channel=held2" % ACT)
            _post(node, "/channel/create?topic=%s&channel=doomed" % ACT)
            _post(node, "/pub?topic=%s" % ACT, b"act")
        _post(nodes[0], "/topic/create?topic=" + OTHER)
        collector = BodyCollector()
        consumer = Consumer(TOPIC, "live", collector,
                            nsqd_tcp_addresses=[n.tcp_address for n in nodes],
                            max_in_flight=10, client_id=XSS, hostname=HOST, user_agent=AGENT)
        consumer.start()
        wait_for(lambda: len(consumer.connected_addresses()) == 2, 15, message="consumer connects")
        for node, count in zip(nodes, PUBLISHED):
            for i in range(count):
                _post(node, "/pub?topic=" + TOPIC, b"m%d" % i)
        wait_for(lambda: collector.count() == sum(PUBLISHED), 20, message="messages consumed")

        def registered() -> bool:
            code, body, _ = http_request(lookupd.http_port, "/nodes")
            producers = json.loads(body).get("producers") or []
            return code == 200 and len(producers) == 2 and all(
                {TOPIC, ACT} <= set(p["topics"]) for p in producers)

        wait_for(registered, 20, message="both nodes registered with lookupd")
        admin = NodeProcess("nsqadmin", tcp=None,
                            args=["--lookupd-http-address=" + lookupd.http_address])
        started.append(admin)
        yield Cluster(lookupd, nodes, admin, collector)
    finally:
        if consumer is not None:
            consumer.stop(timeout=5.0)
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="module")
def browser(cluster) -> Iterator[Browser]:
    b = Browser(javascript=True)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def plain_browser(cluster) -> Iterator[Browser]:
    """The same browser with JavaScript switched off."""
    b = Browser(javascript=False)
    try:
        yield b
    finally:
        b.close()


# ---------------------------------------------------------------- reading pages

def tables(b: Browser) -> List[dict]:
    """Every table on the page: its header texts and its body rows' cell texts."""
    from selenium.webdriver.common.by import By

    out = []
    for table in b.driver.find_elements(By.CSS_SELECTOR, "table"):
        heads = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        rows = [[c.text.strip() for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        out.append({"headers": heads, "rows": rows, "id": table.get_attribute("id") or ""})
    return out


def table(b: Browser, table_id: str) -> dict:
    """The table with this id."""
    found = tables(b)
    for t in found:
        if t["id"] == table_id:
            return t
    raise LookupError("no table #%s: %r" % (table_id, [t["id"] for t in found]))


def row_for(table: dict, first: str) -> Dict[str, str]:
    """{header: cell} of the row whose first cell starts with `first`."""
    for row in table["rows"]:
        if row and row[0].split("\n")[0].strip() == first:
            return dict(zip(table["headers"], row))
    raise LookupError("no row %r in %r" % (first, [r[:1] for r in table["rows"]]))


def cell(row: Dict[str, str], header: str) -> str:
    for key, value in row.items():
        if header.lower() in key.lower():
            return value
    raise LookupError("no column %r in %r" % (header, list(row)))


def number(text: str) -> int:
    """The first integer in a cell ("1,234", "12 msgs" -> 1234, 12)."""
    m = re.search(r"-?[0-9][0-9,]*", text)
    assert m, "no number in %r" % text
    return int(m.group(0).replace(",", ""))


def load(b: Browser, cluster: Cluster, path: str, *must_show: str) -> str:
    """Open a page and wait until its visible text shows every `must_show`."""
    b.get(cluster.url(path))
    return b.wait(lambda: (lambda t: t if all(m in t for m in must_show) else "")(b.text()),
                  what="%s to show %r" % (path, must_show))


def shot(b: Browser, tmp_path, name: str) -> None:
    """Save the page as a PNG; the page logged no error (no script error, no CSP violation)."""
    data = b.screenshot(str(tmp_path / (name + ".png")))
    assert data.startswith(PNG_MAGIC) and len(data) > 2000, (name, len(data))
    assert b.console_errors() == [], name


def no_alert(b: Browser) -> None:
    assert b.alert_text() is None, "an alert is open: %r" % b.alert_text()


def total(cluster: Cluster, topic: str, field: str, channel: Optional[str] = None) -> int:
    n = 0
    for node in cluster.nodes:
        s = (cluster.channel_stats(node, topic, channel) if channel
             else cluster.topic_stats(node, topic))
        n += (s or {}).get(field, 0)
    return n


def node_labels(node: NodeProcess) -> List[str]:
    """How a page may name a node: its broadcast address with the HTTP or TCP port."""
    return ["127.0.0.1:%d" % node.http_port, "127.0.0.1:%d" % node.tcp_port]


# ---------------------------------------------------------------- the pages

def test_topics_page_lists_every_topic_with_its_counts(cluster, browser, tmp_path):
    text = load(browser, cluster, "/", TOPIC, OTHER, ACT)
    assert XSS not in text  # no client data on this page
    topics = table(browser, "topics")
    row = row_for(topics, TOPIC)
    want = total(cluster, TOPIC, "message_count")
    assert want == sum(PUBLISHED)
    counts = [number(v) for k, v in row.items() if "message" in k.lower()]
    assert want in counts, row
    assert TOPIC in [r[0].split("\n")[0] for r in topics["rows"]]
    no_alert(browser)
    shot(browser, tmp_path, "index")


def test_topic_page_shows_each_node_and_the_channels(cluster, browser, tmp_path):
    load(browser, cluster, "/topics/" + TOPIC, TOPIC, "live", "held")
    text = browser.text()
    for node in cluster.nodes:
        assert any(label in text for label in node_labels(node)), (node_labels(node), text)
    channels = table(browser, "channels")
    held = row_for(channels, "held")
    assert number(cell(held, "depth")) == total(cluster, TOPIC, "depth", "held") == sum(PUBLISHED)
    live = row_for(channels, "live")
    assert number(cell(live, "depth")) == 0
    assert number(cell(live, "connections")) == 2  # the consumer, on both nodes
    assert number(cell(live, "messages")) == total(cluster, TOPIC, "message_count", "live")
    no_alert(browser)
    shot(browser, tmp_path, "topic")


def test_channel_page_shows_the_clients_with_their_names_as_text(cluster, browser, tmp_path):
    load(browser, cluster, "/topics/%s/live" % TOPIC, "live", XSS)
    no_alert(browser)  # the client_id is shown, not run
    clients = table(browser, "clients")
    rows = [dict(zip(clients["headers"], r)) for r in clients["rows"]]
    ours = [r for r in rows if any(v.split("\n")[0] == XSS for v in r.values())]
    assert len(ours) == 2, rows  # one connection per node
    for r in ours:
        text = " ".join(r.values())
        assert HOST in text and AGENT in text, r
    # finished per client, as the nodes count it
    finished = sorted(number(cell(r, "finished")) for r in ours)
    assert finished == sorted(PUBLISHED)
    assert sum(finished) == cluster.collector.count()
    # nothing the client sent became markup: no element, no script was made of it
    made = browser.driver.execute_script(
        "return [document.querySelectorAll('b, i').length,"
        " Array.from(document.scripts).filter(s => s.text.indexOf('alert(1)') >= 0).length]")
    assert made[1] == 0, made
    assert browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('b, i'))"
        ".filter(e => e.textContent === 'agent' || e.textContent === 'host').length") == 0
    shot(browser, tmp_path, "channel")


def test_nodes_page_lists_every_producer(cluster, browser, tmp_path):
    text = load(browser, cluster, "/nodes", *[node_labels(n)[0].split(":")[0]
                                               for n in cluster.nodes])
    code, body, _ = http_request(cluster.lookupd.http_port, "/nodes")
    producers = json.loads(body)["producers"]
    assert len(producers) == 2
    for p in producers:
        assert str(p["tcp_port"]) in text or str(p["http_port"]) in text, (p, text)
        assert p["version"] in text
    nodes = table(browser, "nodes")
    assert len(nodes["rows"]) == 2, nodes
    no_alert(browser)
    shot(browser, tmp_path, "nodes")


def test_node_page_shows_its_topics_channels_and_clients(cluster, browser, tmp_path):
    node = cluster.nodes[0]
    load(browser, cluster, "/nodes/127.0.0.1:%d" % node.http_port, TOPIC, OTHER, ACT, "live",
         "held", XSS)
    no_alert(browser)
    assert "held2" in browser.text()
    topics = table(browser, "node-topics")
    assert number(cell(row_for(topics, TOPIC), "messages")) == \
        cluster.topic_stats(node, TOPIC)["message_count"] == PUBLISHED[0]
    assert OTHER in [r[0] for r in topics["rows"]]
    clients = table(browser, "clients")
    assert [r[0] for r in clients["rows"]] == [XSS]  # this node's one consumer connection
    shot(browser, tmp_path, "node")


def test_counter_page_shows_messages_processed(cluster, browser, tmp_path):
    want = 0
    for node in cluster.nodes:
        for t in cluster.stats(node).get("topics") or []:
            want += sum(c["message_count"] for c in t.get("channels") or [])
    assert want > 0
    shown = "{:,}".format(want)
    load(browser, cluster, "/counter", shown)
    no_alert(browser)
    shot(browser, tmp_path, "counter")


def test_lookup_page_shows_what_lookupd_knows_and_creates_a_topic(cluster, browser, tmp_path):
    from selenium.webdriver.common.by import By

    load(browser, cluster, "/lookup", TOPIC, OTHER, ACT)
    no_alert(browser)
    shot(browser, tmp_path, "lookup")
    forms = browser.driver.find_elements(By.CSS_SELECTOR, "form")
    form = next((f for f in forms if f.find_elements(By.CSS_SELECTOR, "input[name=topic]")),
                None)
    assert form is not None, "no create form with a topic field on /lookup"
    form.find_element(By.CSS_SELECTOR, "input[name=topic]").send_keys("browser_created")
    channel = form.find_elements(By.CSS_SELECTOR, "input[name=channel]")
    if channel:
        channel[0].send_keys("made_here")
    form.find_element(By.CSS_SELECTOR, "button, input[type=submit]").click()

    def known() -> bool:
        code, body, _ = http_request(cluster.lookupd.http_port, "/topics")
        return code == 200 and "browser_created" in json.loads(body)["topics"]

    wait_for(known, 20, message="lookupd to know the topic created from /lookup")
    if channel:
        def channel_known() -> bool:
            code, body, _ = http_request(cluster.lookupd.http_port,
                                         "/channels?topic=browser_created")
            return code == 200 and "made_here" in json.loads(body)["channels"]

        wait_for(channel_known, 20, message="lookupd to know the channel created from /lookup")
    load(browser, cluster, "/lookup", "browser_created")
    shot(browser, tmp_path, "lookup-created")


def test_counter_ticks_and_auto_refresh_updates_without_reloading(cluster, browser, tmp_path):
    """The progressive JavaScript: the counter follows /api/counter, auto-refresh the page."""
    from selenium.webdriver.common.by import By

    node = cluster.nodes[0]
    _post(node, "/topic/create?topic=browser_tick")
    _post(node, "/channel/create?topic=browser_tick&channel=c")
    load(browser, cluster, "/counter", "Messages processed")
    before = number(browser.text("#counter-total"))
    browser.driver.execute_script("window.__same_document = true")
    for i in range(3):
        _post(node, "/pub?topic=browser_tick", b"tick%d" % i)
    browser.wait(lambda: number(browser.text("#counter-total")) == before + 3, timeout=30,
                 what="the counter to count 3 more messages")
    assert browser.driver.execute_script("return window.__same_document") is True  # no reload

    load(browser, cluster, "/topics/browser_tick", "browser_tick")
    depth = lambda: number(browser.text("#channels tr[data-channel=c] td.depth"))  # noqa: E731
    assert depth() == 3
    browser.driver.find_element(By.ID, "auto-refresh").click()
    browser.driver.execute_script("window.__same_document = true")
    _post(node, "/pub?topic=browser_tick", b"tick3")
    browser.wait(lambda: depth() == 4, timeout=30, what="auto-refresh to show depth 4")
    assert browser.driver.execute_script("return window.__same_document") is True
    browser.driver.find_element(By.ID, "auto-refresh").click()  # off again for the next tests
    assert not browser.driver.find_element(By.ID, "auto-refresh").is_selected()
    shot(browser, tmp_path, "topic-refreshed")


# ---------------------------------------------------------------- actions

def action_button(b: Browser, scope: str, action: str):
    """The `action` button inside the element `scope` (e.g. #channel-actions)."""
    from selenium.webdriver.common.by import By

    css = '%s button[data-action="%s"]' % (scope, action)
    return b.wait(lambda: (lambda els: els[0] if els and els[0].is_displayed() else None)(
        b.driver.find_elements(By.CSS_SELECTOR, css)), what="a button " + css)


def click_action(b: Browser, scope: str, action: str, confirm: bool = True,
                 accept: bool = True) -> None:
    """Click a page's action button; answer its confirmation dialog (or see there is none)."""
    action_button(b, scope, action).click()
    if not confirm:
        no_alert(b)
        return
    question = b.wait(b.alert_text, what="the confirmation of %r" % action)
    assert action in question.lower(), question
    alert = b.driver.switch_to.alert
    if accept:
        alert.accept()
    else:
        alert.dismiss()


def held2(cluster: Cluster, field: str) -> List[object]:
    return [cluster.channel_stats(n, ACT, "held2")[field] for n in cluster.nodes]


def test_pause_and_empty_a_channel_through_the_confirmation(cluster, browser, tmp_path):
    page = "/topics/%s/held2" % ACT
    assert held2(cluster, "depth") == [1, 1]
    load(browser, cluster, page, "held2")
    shot(browser, tmp_path, "channel-before")

    click_action(browser, "#channel-actions", "pause")
    wait_for(lambda: all(held2(cluster, "paused")), 20,
             message="the channel paused on every node")
    load(browser, cluster, page, "held2")
    browser.wait(lambda: "paused" in browser.text("#page-title"), what="the paused badge")

    click_action(browser, "#channel-actions", "empty", accept=False)  # "no": nothing is sent
    assert action_button(browser, "#channel-actions", "empty").is_enabled()
    assert browser.driver.current_url == cluster.url(page)
    assert held2(cluster, "depth") == [1, 1]

    click_action(browser, "#channel-actions", "empty")
    wait_for(lambda: held2(cluster, "depth") == [0, 0], 20,
             message="the channel emptied on every node")
    assert all(held2(cluster, "paused"))

    load(browser, cluster, page, "held2")
    click_action(browser, "#channel-actions", "unpause", confirm=False)
    wait_for(lambda: not any(held2(cluster, "paused")), 20,
             message="the channel unpaused on every node")
    load(browser, cluster, page, "held2")
    assert "paused" not in browser.text("#page-title")
    shot(browser, tmp_path, "channel-after")


def test_pause_a_topic_through_the_confirmation(cluster, browser, tmp_path):
    nodes = cluster.nodes
    load(browser, cluster, "/topics/" + ACT, ACT, "held2")
    click_action(browser, "#topic-actions", "pause")
    wait_for(lambda: all(cluster.topic_stats(n, ACT)["paused"] for n in nodes), 20,
             message="the topic paused on every node")
    load(browser, cluster, "/topics/" + ACT, ACT)
    browser.wait(lambda: "paused" in browser.text("#page-title"), what="the paused badge")
    shot(browser, tmp_path, "topic-paused")
    click_action(browser, "#topic-actions", "unpause", confirm=False)
    wait_for(lambda: not any(cluster.topic_stats(n, ACT)["paused"] for n in nodes), 20,
             message="the topic unpaused on every node")


def test_delete_a_channel_from_the_topic_page(cluster, browser, tmp_path):
    from selenium.webdriver.common.by import By

    assert all(cluster.channel_stats(n, ACT, "doomed") for n in cluster.nodes)
    load(browser, cluster, "/topics/" + ACT, "doomed")
    row = '#channels tr[data-channel="doomed"]'
    click_action(browser, row, "delete")
    wait_for(lambda: not any(cluster.channel_stats(n, ACT, "doomed") for n in cluster.nodes), 20,
             message="the channel deleted on every node")
    load(browser, cluster, "/topics/" + ACT, "held2")
    assert not browser.driver.find_elements(By.CSS_SELECTOR, row)
    assert cluster.channel_stats(cluster.nodes[0], ACT, "held2") is not None
    shot(browser, tmp_path, "topic-after-delete")


def test_actions_without_javascript_confirm_on_a_page(cluster, plain_browser, tmp_path):
    """JavaScript off: the button posts a form, a page asks, "Yes" acts on every node."""
    from selenium.webdriver.common.by import By

    b = plain_browser
    nodes = cluster.nodes
    b.get(cluster.url("/topics/" + ACT))
    action_button(b, "#topic-actions", "pause").click()
    question = b.wait(lambda: b.text("#confirm-form"), what="the confirmation page")
    assert "pause" in question and ACT in question, question
    shot(b, tmp_path, "confirm-nojs")
    b.driver.find_element(By.ID, "confirm-cancel").click()  # "Cancel": back, nothing done
    b.wait(lambda: b.driver.find_elements(By.ID, "topic-actions"), what="the topic page")
    assert not any(cluster.topic_stats(n, ACT)["paused"] for n in nodes)

    action_button(b, "#topic-actions", "pause").click()
    b.wait(lambda: b.driver.find_elements(By.CSS_SELECTOR, "#confirm-form button"),
           what="the confirmation page")[0].click()
    wait_for(lambda: all(cluster.topic_stats(n, ACT)["paused"] for n in nodes), 20,
             message="the topic paused on every node")
    b.wait(lambda: "paused" in b.text("#page-title"), what="the topic page, paused")
    shot(b, tmp_path, "topic-paused-nojs")
    action_button(b, "#topic-actions", "unpause").click()  # not destructive: no question
    wait_for(lambda: not any(cluster.topic_stats(n, ACT)["paused"] for n in nodes), 20,
             message="the topic unpaused on every node")


# ---------------------------------------------------------------- without JavaScript

PAGES = [
    ("index", "/", [TOPIC, OTHER, ACT]),
    ("topic", "/topics/" + TOPIC, [TOPIC, "live", "held"]),
    ("channel", "/topics/%s/live" % TOPIC, ["live", XSS, AGENT]),
    ("nodes", "/nodes", ["127.0.0.1"]),
    ("node", None, [TOPIC, "live", XSS]),
    ("counter", "/counter", []),
    ("lookup", "/lookup", [TOPIC, ACT]),
]


@pytest.mark.parametrize("name,path,must", PAGES, ids=[p[0] for p in PAGES])
def test_pages_show_their_data_with_javascript_off(cluster, plain_browser, tmp_path, name, path,
                                                  must):
    b = plain_browser
    if path is None:
        path = "/nodes/127.0.0.1:%d" % cluster.nodes[0].http_port
    if name == "counter":
        want = 0
        for node in cluster.nodes:
            for t in cluster.stats(node).get("topics") or []:
                want += sum(c["message_count"] for c in t.get("channels") or [])
        must = ["{:,}".format(want)]
    b.get(cluster.url(path))
    text = b.text()
    for m in must:
        assert m in text, (path, m, text[:2000])
    if name == "topic":
        held = row_for(table(b, "channels"), "held")
        assert number(cell(held, "depth")) == sum(PUBLISHED)
    no_alert(b)
    shot(b, tmp_path, name + "-nojs")


def test_javascript_is_really_off_in_the_plain_browser(cluster, plain_browser):
    """The no-JavaScript tests mean something: this browser runs no page script."""
    b = plain_browser
    b.get("data:text/html,<title>before</title><script>document.title='ran'</script>")
    assert b.driver.title == "before"
