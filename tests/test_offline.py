"""The suite runs with no network (``make test`` wraps it in scripts/offline.sh)."""

import os
import socket

import pytest


@pytest.mark.skipif(os.environ.get("TLCOURSE_NETWORK") != "disabled", reason="only under scripts/offline.sh")
def test_network_is_really_disabled():
    with pytest.raises(OSError):
        socket.create_connection(("pypi.org", 443), timeout=2)


def test_hub_requests_fail_without_touching_the_network(monkeypatch):
    """A model that is not on disk fails at once, without a connection attempt (HF offline mode)."""
    attempts = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    from transformers import AutoConfig

    with pytest.raises(OSError):
        AutoConfig.from_pretrained("tlcourse-tests/a-model-that-is-not-cached")
    assert attempts == []
