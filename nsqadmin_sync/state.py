"""What the HTTP side needs of the running nsqadmin, as a `Protocol`.

`nsqadmin.NSQAdmin` starts the HTTP server (http_api.py), so the HTTP
modules (http_api, actions, pages) cannot import it without a cycle: they
type against `AdminState` instead, which NSQAdmin satisfies.  Imports run
one way: nsqadmin -> http_api -> actions -> pages -> state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Protocol, Tuple

from nsqd_sync.http_client import HTTPClient

from .clusterinfo import ClusterInfo
from .notify import Notifier
from .options import Options
from .trends import Trends


@dataclasses.dataclass
class IndexSnapshot:
    """One trends pass's view of the cluster, kept for `/` (pages.index_page).

    `node_stats` is every node's /stats (no clients) as decoded JSON;
    `fragments` caches the topics table rendered from it (pages.py fills
    it, keyed by what the rendering depends on).
    """

    taken: float  # unix time the pass started
    names: List[str]
    node_stats: List[Tuple[Any, Dict[str, Any]]]
    messages: List[str]
    fragments: Dict[Any, Any] = dataclasses.field(default_factory=dict)


class AdminState(Protocol):
    """The nsqadmin object as its HTTP handlers see it."""

    hostname: str
    csrf_secret: bytes  # keys the pages' action token (actions.py)
    client: HTTPClient
    ci: ClusterInfo
    notifier: Optional[Notifier]
    trends: Optional[Trends]
    index_snapshot: Optional[IndexSnapshot]

    @property
    def opts(self) -> Options: ...

    def set_options(self, **changes: Any) -> Options:
        """Swap in a copy of the options with `changes` (PUT /config/:opt)."""
        ...

    def drop_snapshot(self) -> None:
        """Forget the sampled stats (an action changed the cluster)."""
        ...

    def snapshot_max_age(self) -> float:
        """How old sampled stats may be for `/` to show them."""
        ...
