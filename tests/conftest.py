"""Fixtures shared by the test modules."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest


@pytest.fixture
def offline(monkeypatch):
    """Make every download fail fast, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
