"""What the HTTP side needs of the running nsqadmin, as a `Protocol`.

`nsqadmin.NSQAdmin` starts the HTTP server (http_api.py), so the HTTP
modules (http_api, actions, pages) cannot import it without a cycle: they
type against `AdminState` instead, which NSQAdmin satisfies.  Imports run
one way: nsqadmin -> http_api -> actions -> pages -> state.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

from nsqd_sync.http_client import HTTPClient

from .clusterinfo import ClusterInfo
from .notify import Notifier
from .options import Options
from .trends import Trends


class AdminState(Protocol):
    """The nsqadmin object as its HTTP handlers see it."""

    hostname: str
    csrf_secret: bytes  # keys the pages' action token (actions.py)
    client: HTTPClient
    ci: ClusterInfo
    notifier: Optional[Notifier]
    trends: Optional[Trends]

    @property
    def opts(self) -> Options: ...

    def set_options(self, **changes: Any) -> Options:
        """Swap in a copy of the options with `changes` (PUT /config/:opt)."""
        ...
