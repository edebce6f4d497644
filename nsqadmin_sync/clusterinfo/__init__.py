"""nsqadmin's view of the cluster: queries to lookupd/nsqd (data.py) and the records they fill (types.py)."""
from .data import ClusterError, ClusterInfo, PartialError, UpstreamError
from .types import ChannelStats, ClientStats, Producer, TopicStats, search_producers

__all__ = ["ClusterError", "ClusterInfo", "PartialError", "UpstreamError", "ChannelStats",
           "ClientStats", "Producer", "TopicStats", "search_producers"]
