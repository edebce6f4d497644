"""nsqadmin: the web UI (placeholder until its issue is built)."""
