"""`python -m nsqlookupd_sync`: the nsqlookupd command."""
from .cli import main

main()
