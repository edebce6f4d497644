"""`python -m nsqd_sync` runs nsqd."""
from .cli import main

main()
