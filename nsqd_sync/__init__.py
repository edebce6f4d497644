"""nsq-sync: a threaded, wire-compatible Python implementation of NSQ's nsqd.

One message's way through the node, module by module:

  tcp.py          ThreadingTCPServer accepts a connection, one handler per client
  protocol_v2.py  reads commands (via wire.py) and runs one method per command
  topic.py        Topic.put_many() copies each message to every channel
  channel.py      Channel keeps a bounded memory queue (+ backend), in-flight
                  and deferred messages
  client_v2.py    per-connection state: RDY, in-flight table, the message pump
  timerwheel.py   the per-channel thread for in-flight timeouts and deferral
"""

NSQ_VERSION = "1.3.0"
__version__ = NSQ_VERSION + "-sync"
