"""Admin action notifications POSTed to --notification-http-endpoint (Go: nsqadmin/notify.go).

Each action is queued (bounded; the request never waits) and one thread,
`nsqadmin-notify`, POSTs it as NSQ's AdminAction JSON.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import threading
import time
from typing import Any, Dict, Optional

from nsqd_sync.http_client import HTTPClient, HTTPClientError

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


def basic_auth_user(authorization: Optional[str]) -> str:
    """The user name of an `Authorization: Basic ...` header ("" if none)."""
    parts = (authorization or "").split(" ", 1)
    if len(parts) != 2 or parts[0] != "Basic":
        return ""
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""
    user, sep, _ = decoded.partition(":")
    return user if sep else ""


def admin_action(action: str, topic: str, channel: str, node: str, *, user: str, remote_ip: str,
                 user_agent: str, url: str, via: str, timestamp: Optional[int] = None) -> Dict[str, Any]:
    """NSQ's AdminAction document (channel, node and user omitted when empty)."""
    doc: Dict[str, Any] = {"action": action, "topic": topic}
    if channel:
        doc["channel"] = channel
    if node:
        doc["node"] = node
    doc["timestamp"] = int(time.time()) if timestamp is None else timestamp
    if user:
        doc["user"] = user
    doc.update(remote_ip=remote_ip, user_agent=user_agent, url=url, via=via)
    return doc


class Notifier:
    """Sends queued admin actions to the endpoint, one at a time, in order."""

    def __init__(self, endpoint: str, client: HTTPClient) -> None:
        self.endpoint = endpoint
        self.client = client
        self._queue: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue(QUEUE_SIZE)
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nsqadmin-notify", daemon=True)
        self._thread.start()

    def notify(self, doc: Dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(doc)
        except queue.Full:
            log.error("notification queue full, dropping %s notification", doc.get("action"))

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            doc = self._queue.get()
            if doc is None:
                return
            body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
            log.info("POSTing notification to %s", self.endpoint)
            try:
                resp = self.client.request("POST", self.endpoint, data=body,
                                           headers={"Content-Type": "application/json"})
                if resp.status_code >= 300:
                    log.error("notification to %s got response %d", self.endpoint, resp.status_code)
            except HTTPClientError as e:
                log.error("failed to POST notification - %s", e)
