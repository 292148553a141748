"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

import pytest


@pytest.fixture(autouse=True)
def environment_restored():
    """Every test gets the environment back as it was: scripts run in-process (notebook_times, build_site) set
    TLH_BUDGET or TLH_DATA for their kernels, and a budget left behind would change every later test's mode."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def offline(monkeypatch):
    """Make every download fail fast, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
