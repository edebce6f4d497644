"""nsqadmin's actions: who may act, from where, and what each action does on the cluster.

`ActionRoutes` is mixed into the HTTP handler (http_api.py).  Every action
(create, pause/unpause/empty, delete, tombstone) is reachable two ways: the
JSON API of NSQ's nsqadmin (`POST`/`DELETE` with a JSON body, NSQ's
statuses and messages) and the pages' forms (`POST` to the page URL,
url-encoded, with a confirmation step for destructive actions, then a 303
back).  Both first pass `require_action_allowed()`: 403
`CROSS_SITE_REQUEST_FORBIDDEN` when a browser says the request comes from
another site (an `Origin`/`Referer` naming another host) and it does not
carry the page token, 403 `FORBIDDEN` for a user not in --admin-user.
Scripts that send neither header are not browsers and pass.  The page token
(`csrf_token()`: an HMAC of the acting user's name under a per-process
secret, in every page's `<meta name="nsqadmin-token">` and forms) lets the
pages act when a reverse proxy rewrites the Host header, without letting
another site (which cannot read our pages) or another user act.  Each
action is notified (notify.py) as NSQ does.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlencode, urlsplit

from nsqd_sync.gojson import go_kind
from nsqd_sync.http_base import HTTPError
from nsqd_sync.wire import is_valid_channel_name, is_valid_topic_name

from . import pages
from .clusterinfo import PartialError
from .notify import admin_action, basic_auth_user
from .state import AdminState

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


def maybe_warn(messages: List[str]) -> str:
    """NSQ's maybeWarnMsg."""
    return "WARNING: " + "; ".join(messages) if messages else ""


class ActionRoutes:
    """The action endpoints and their checks (a mixin of NSQAdminHandler)."""

    admin: AdminState
    headers: Any
    command: str
    path: str
    params: Dict[str, str]
    client_address: Any
    lookupds: List[str]
    nsqds: List[str]

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    def is_admin(self) -> bool:
        """NSQ's isAuthorizedAdminRequest."""
        opts = self.admin.opts
        if not opts.admin_user:
            return True
        return self.header(opts.acl_http_header) in opts.admin_user

    def csrf_token(self) -> str:
        """The page token of the user making this request (see the module docstring)."""
        user = self.header(self.admin.opts.acl_http_header).encode("utf-8", "replace")
        return hmac.new(self.admin.csrf_secret, b"nsqadmin-action:" + user, hashlib.sha256).hexdigest()[:40]

    def is_cross_site(self, token: str = "") -> bool:
        """A browser request from another site (Origin/Referer host is not ours) without our token."""
        token = token or self.header("X-NSQAdmin-Token")
        if token and hmac.compare_digest(token.encode("utf-8", "replace"), self.csrf_token().encode()):
            return False
        host = _netloc((self.header("X-Forwarded-Host") or self.header("Host")).split(",")[0].strip())
        if self.header("Sec-Fetch-Site").lower() == "cross-site":
            return True
        origin = self.header("Origin")
        if origin:
            if origin == "null":
                return True
            return _netloc(urlsplit(origin).netloc, urlsplit(origin).scheme) != host
        referer = self.header("Referer")
        if referer:
            return _netloc(urlsplit(referer).netloc, urlsplit(referer).scheme) != host
        return False

    def require_action_allowed(self, token: str = "") -> None:
        """403 for cross-site requests and (with --admin-user) non-admins."""
        if self.is_cross_site(token):
            log.warning("refused cross-site %s %s (Origin %r, Referer %r)", self.command, self.path,
                        self.header("Origin"), self.header("Referer"))
            raise HTTPError(403, "CROSS_SITE_REQUEST_FORBIDDEN")
        if not self.is_admin():
            raise HTTPError(403, "FORBIDDEN")

    def json_body(self, fields: Tuple[str, ...], error: Optional[str] = None) -> Dict[str, str]:
        """The body as Go's json.Decoder would fill a struct of string fields.

        A decode error is 400 with Go's error text (or `error` if given).
        """
        data = self.read_body(MAX_BODY)
        try:
            return decode_struct(data, fields)
        except ValueError as e:
            raise HTTPError(400, error or str(e)) from None

    def notify(self, action: str, topic: str, channel: str = "", node: str = "") -> None:
        notifier = self.admin.notifier
        if notifier is None:
            return
        scheme = "https" if self.header("X-Scheme") == "https" else "http"
        url = "%s://%s%s" % (scheme, self.header("Host"), self.path)
        notifier.notify(admin_action(
            action, topic, channel, node, user=basic_auth_user(self.headers.get("Authorization")),
            remote_ip="%s:%s" % tuple(self.client_address[:2]), user_agent=self.header("User-Agent"),
            url=url, via=self.admin.hostname))

    # ------------------------------------------------------------ JSON API: actions

    def action_create(self) -> None:
        self.require_action_allowed()
        body = self.json_body(("topic", "channel"))
        messages = self.do_create(body["topic"], body["channel"])
        self.send_json(200, {"message": maybe_warn(messages)})

    def do_create(self, topic: str, channel: str) -> List[str]:
        if not is_valid_topic_name(topic):
            raise HTTPError(400, "INVALID_TOPIC")
        if channel and not is_valid_channel_name(channel):
            raise HTTPError(400, "INVALID_CHANNEL")
        errors = self.call_upstream("create topic/channel", self.admin.ci.create_topic_channel,
                                    topic, channel, self.lookupds, self.nsqds)
        self.notify("create_topic", topic)
        if channel:
            self.notify("create_channel", topic, channel)
        self.admin.drop_snapshot()  # `/` must show the change at once
        return self.partial_messages(errors)

    def partial_messages(self, errors: List[Exception]) -> List[str]:
        if not errors:
            return []
        partial = PartialError(errors)
        log.warning("%s", partial)
        return [str(partial)]

    def action_topic_channel(self, topic: str, channel: str) -> None:
        self.require_action_allowed()
        action = self.json_body(("action",))["action"]
        messages = self.do_action(action, topic, channel)
        self.send_json(200, {"message": maybe_warn(messages)})

    def do_action(self, action: str, topic: str, channel: str) -> List[str]:
        """pause / unpause / empty on every node with the topic (NSQ's topicChannelAction)."""
        if action not in ("pause", "unpause", "empty"):
            raise HTTPError(400, "INVALID_ACTION")
        self.notify("%s_%s" % (action, "channel" if channel else "topic"), topic, channel)
        errors = self.call_upstream("%s topic/channel" % action, self.admin.ci.topic_channel_action,
                                    action, topic, channel, self.lookupds, self.nsqds)
        self.admin.drop_snapshot()  # `/` must show the change at once
        return self.partial_messages(errors)

    def action_delete_topic(self, topic: str) -> None:
        self.require_action_allowed()
        self.send_json(200, {"message": maybe_warn(self.do_delete(topic, ""))})

    def action_delete_channel(self, topic: str, channel: str) -> None:
        self.require_action_allowed()
        self.send_json(200, {"message": maybe_warn(self.do_delete(topic, channel))})

    def do_delete(self, topic: str, channel: str) -> List[str]:
        ci = self.admin.ci
        if channel:
            errors = self.call_upstream("delete channel", ci.delete_channel, topic, channel,
                                        self.lookupds, self.nsqds)
            self.notify("delete_channel", topic, channel)
        else:
            errors = self.call_upstream("delete topic", ci.delete_topic, topic, self.lookupds, self.nsqds)
            self.notify("delete_topic", topic)
        self.admin.drop_snapshot()  # `/` must show the change at once
        return self.partial_messages(errors)

    def action_tombstone(self, node: str) -> None:
        self.require_action_allowed()
        topic = self.json_body(("topic",), error="INVALID_BODY")["topic"]
        self.send_json(200, {"message": maybe_warn(self.do_tombstone(topic, node))})

    def do_tombstone(self, topic: str, node: str) -> List[str]:
        if not is_valid_topic_name(topic):
            raise HTTPError(400, "INVALID_TOPIC")
        errors = self.call_upstream("tombstone node for topic", self.admin.ci.tombstone_node_for_topic,
                                    topic, node, self.lookupds)
        self.notify("tombstone_topic_producer", topic, "", node)
        self.admin.drop_snapshot()  # `/` must show the change at once
        return self.partial_messages(errors)

    def form_action(self) -> None:
        """An action posted by a page's form (JavaScript off): confirm, act, redirect back."""
        form = parse_qs(self.read_body(MAX_BODY).decode("utf-8", "replace"), keep_blank_values=True)
        field = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        try:
            self.require_action_allowed(field("csrf_token"))
        except HTTPError as e:
            self.send_html(403, "error.html", {"title": "Forbidden", "error": e.message})
            return
        action = field("action")
        topic = self.params.get("topic") or field("topic")
        channel = self.params.get("channel") or field("channel")
        node = self.params.get("node", "")
        back = self.path.partition("?")[0]
        if action in pages.CONFIRM_ACTIONS and field("confirm") != "1":
            self.send_html(200, "confirm.html", pages.confirm_context(self, action, topic, channel, node, back))
            return
        try:
            if action in ("pause", "unpause", "empty"):
                messages = self.do_action(action, topic, channel)
            elif action == "delete":
                messages = self.do_delete(topic, channel)
                back = pages.link(self, "topics", topic) if channel else pages.link(self)
            elif action == "tombstone":
                messages = self.do_tombstone(topic, node)
            elif action == "create":
                messages = self.do_create(topic.strip(), channel.strip())
            else:
                raise HTTPError(400, "INVALID_ACTION")
        except HTTPError as e:
            self.send_html(e.status, "error.html", {"title": "Action failed", "error": e.message})
            return
        target = back + ("?" + urlencode({"message": maybe_warn(messages)}) if messages else "")
        self._send(303, b"", None, nsq_header=False, location=target)


def _netloc(netloc: str, scheme: str = "") -> str:
    """host[:port] lower-cased, without the scheme's default port."""
    netloc = netloc.lower()
    for default, port in (("http", ":80"), ("https", ":443")):
        if netloc.endswith(port) and scheme in ("", default):
            return netloc[: -len(port)]
    return netloc


def decode_struct(data: bytes, fields: Tuple[str, ...]) -> Dict[str, str]:
    """Decode a JSON object into string fields as Go's json.Decoder does (errors in Go's words)."""
    text = data.decode("utf-8", "replace").lstrip(" \t\r\n")
    if not text:
        raise ValueError("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            raise ValueError("unexpected EOF") from None
        ch = text[e.pos]
        raise ValueError("invalid character %s looking for beginning of value" % _go_char(ch)) from None
    out = {f: "" for f in fields}
    if value is None:
        return out
    if not isinstance(value, dict):
        raise ValueError("json: cannot unmarshal %s into Go value of type struct" % go_kind(value))
    for f in fields:
        key = f if f in value else next((k for k in value if k.lower() == f), None)
        if key is None or value[key] is None:
            continue
        if not isinstance(value[key], str):
            raise ValueError("json: cannot unmarshal %s into Go struct field .%s of type string"
                             % (go_kind(value[key]), f))
        out[f] = value[key]
    return out


def _go_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch.isprintable():
        return "'%s'" % ch
    return "'\\x%02x'" % ord(ch) if ord(ch) < 0x80 else "'\\u%04x'" % ord(ch)
