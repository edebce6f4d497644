"""The nsq_* utilities: nsq_tail, to_nsq, nsq_stat, nsq_to_file, nsq_to_http, nsq_to_nsq.

Each is a module with a `main()` console-script entry point (also
`python -m nsqd_sync.apps.NAME`), built on common.py (flags, go-nsq client
options, the signal-safe run skeleton) and on the client library
`nsqd_sync.client`.
"""

#: every utility: command name -> module (the man-page and flag tests walk this)
TOOLS = {
    "nsq_tail": "nsqd_sync.apps.nsq_tail",
    "to_nsq": "nsqd_sync.apps.to_nsq",
    "nsq_stat": "nsqd_sync.apps.nsq_stat",
    "nsq_to_file": "nsqd_sync.apps.nsq_to_file",
    "nsq_to_http": "nsqd_sync.apps.nsq_to_http",
    "nsq_to_nsq": "nsqd_sync.apps.nsq_to_nsq",
}
