"""Discovery: ask nsqlookupd's HTTP API which nsqd nodes carry a topic."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional
from urllib.parse import urlencode, urlsplit

from ..addresses import join_host_port
from ..http_client import HTTPClient, HTTPClientError

logger = logging.getLogger(__name__)


def lookup_url(lookupd_http_address: str, topic: str) -> str:
    """The /lookup URL for an address given as `host:port` or `http://host:port[/path]`."""
    addr = lookupd_http_address.strip()
    if "://" not in addr:
        addr = "http://" + addr
    parts = urlsplit(addr)
    path = parts.path.rstrip("/")
    if not path.endswith("/lookup"):
        path += "/lookup"
    return "%s://%s%s?%s" % (parts.scheme, parts.netloc, path, urlencode({"topic": topic}))


def producer_address(producer: Dict[str, Any]) -> str:
    """`host:tcp_port` to connect to for one producer record of /lookup."""
    host = producer.get("broadcast_address") or producer.get("address") or producer.get("hostname")
    return join_host_port(str(host), int(producer["tcp_port"]))


def parse_lookup(data: Any) -> List[str]:
    """nsqd TCP addresses in a /lookup answer (v1 shape, or the pre-1.0 one wrapped in `data`)."""
    if isinstance(data, dict) and "producers" not in data and isinstance(data.get("data"), dict):
        data = data["data"]
    producers = data.get("producers") or [] if isinstance(data, dict) else []
    out = []
    for p in producers:
        try:
            out.append(producer_address(p))
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring malformed producer in lookupd answer: %r", p)
    return out


def lookup_nsqd_addresses(lookupd_http_address: str, topic: str, timeout: float = 2.0,
                          client: Optional[HTTPClient] = None) -> List[str]:
    """The nsqd TCP addresses lookupd knows for `topic` ([] if it knows no such topic).

    Raises HTTPClientError when lookupd cannot be asked or its answer is not JSON.
    """
    http = client if client is not None else HTTPClient(timeout, timeout)
    try:
        return parse_lookup(http.nsq_request("GET", lookup_url(lookupd_http_address, topic)))
    except HTTPClientError as e:
        if e.status == 404:
            return []
        raise
    finally:
        if client is None:
            http.close()
