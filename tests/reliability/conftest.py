"""Fixtures for the reliability suite (tests/reliability).

The suite runs in a CI-sized form by default (the whole of it well under
90 s on two cores).  `--reliability-long` (or NSQ_RELIABILITY_LONG=1) runs
the longer versions: more rounds, more frames, more clients.
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def long_run(request) -> bool:
    """True when the long versions were asked for (`--reliability-long`)."""
    return bool(request.config.getoption("--reliability-long", default=False)
                or os.environ.get("NSQ_RELIABILITY_LONG"))


@pytest.fixture(scope="session")
def scale(long_run):
    """scale(ci, long): the CI-sized figure, or the long one with --reliability-long."""
    return lambda ci, long: long if long_run else ci
