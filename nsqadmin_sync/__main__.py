"""`python -m nsqadmin_sync`: the nsqadmin command."""
from .cli import main

main()
