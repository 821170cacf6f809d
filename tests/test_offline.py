"""The suite runs with no network (``make test`` wraps it in scripts/offline.sh)."""

import os
import socket

import pytest


@pytest.mark.skipif(os.environ.get("TLCOURSE_NETWORK") != "disabled", reason="only under scripts/offline.sh")
def test_network_is_really_disabled():
    with pytest.raises(OSError):
        socket.create_connection(("pypi.org", 443), timeout=2)


def test_hub_offline_flag_is_set():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
