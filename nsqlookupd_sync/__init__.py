"""nsqlookupd_sync: NSQ's nsqlookupd (topology directory), threaded and wire-compatible.

nsqd nodes connect over TCP and tell lookupd which topics and channels they
have; consumers ask over HTTP which nodes have a topic.  Module by module:

  cli.py                 click command -> Options -> NSQLookupd, signal handling
  options.py             every flag: default, parsing, validation, config file
  nsqlookupd.py          NSQLookupd: the registration DB and both listeners
  registration_db.py     (category, key, subkey) -> producers, tombstones, activity
  tcp.py                 ThreadingTCPServer, one handler thread per nsqd
  lookup_protocol_v1.py  the `  V1` commands: IDENTIFY, REGISTER, UNREGISTER, PING
  http_api.py            the HTTP API (http.server): /lookup, /nodes, /topic/create, ...
  (Go-style JSON, addresses, durations, flags, HTTP plumbing: from nsqd_sync)
"""
