"""A real NSQ for tests and laptops: nodes as child processes, with helpers.

    from nsqd_sync.testing import NSQDNode
    node = NSQDNode()                       # nsqd on 127.0.0.1 port 0, data in the cwd
    node.pub("orders", b"hello"); node.wait_for_depth("orders", 1); node.stop()

* `process.py`  -- `NodeProcess`: one server command as a child process
  (addresses read from its log, stderr drained, bounded waits, stop/kill).
* `nodes.py`    -- `NSQDNode`, `LookupdNode`, `Cluster`, `start_cluster`,
  `TopicScope`: the helpers tests call (pub, mpub, stats, depth, ...).
* `pytest_plugin.py` -- the pytest fixtures (`nsqd`, `nsqd_factory`,
  `nsqlookupd`, `nsq_cluster`, ...), loaded by pytest through `pytest11`.
* `nsq_cluster.py` -- the `nsq_cluster` command.

Nothing here imports pytest except `pytest_plugin.py`.
"""
from .nodes import (WAIT_TIMEOUT, Cluster, LookupdNode, NSQDNode, TopicScope, flag_args,
                    start_cluster, unique_name, wait_until)
from .process import NodeProcess, NodeStartError, command_for, stop_all

__all__ = ["NodeProcess", "NodeStartError", "NSQDNode", "LookupdNode", "Cluster", "TopicScope",
           "start_cluster", "flag_args", "unique_name", "wait_until", "command_for", "stop_all",
           "WAIT_TIMEOUT"]
