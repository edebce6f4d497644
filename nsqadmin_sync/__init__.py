"""nsqadmin: NSQ's web UI and admin API, server-rendered (see templates/README for the page map).

  cli.py / options.py   the `nsqadmin` command and its flags
  nsqadmin.py           NSQAdmin: the listener, the HTTP client, notifier and trend sampler
  clusterinfo/          queries to nsqlookupd and nsqd, in parallel (data.py), and their records (types.py)
  http_api.py           routes: NSQ's JSON API (reads) and the pages
  actions.py            the actions (API and page forms), cross-site and --admin-user checks
  pages.py, render.py   what each page shows, and the escaping template renderer
  notify.py, trends.py  action notifications; in-memory depth/rate history and sparklines
  state.py              AdminState: what the HTTP modules need of NSQAdmin (a Protocol)

Imports run one way: cli -> nsqadmin -> http_api -> actions -> pages -> state -> the rest.
"""
