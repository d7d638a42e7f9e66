"""Canary: CI must run the suite in the fast smoke profile (GUIDE section 5)."""

import os

import pytest

from adlib import config


def test_ci_runs_in_smoke_profile() -> None:
    """Fails when CI runs the suite without ``ADLIB_PROFILE=smoke`` (notebooks would train for real)."""
    if not os.environ.get("CI"):
        pytest.skip("not running under CI")
    assert os.environ.get("ADLIB_PROFILE") == "smoke", "CI must set ADLIB_PROFILE=smoke (use `make test`)"
    assert config.resolve_profile() == "smoke"


def test_resolve_profile_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLIB_PROFILE", "paper")
    assert config.resolve_profile() == "paper"
    monkeypatch.delenv("ADLIB_PROFILE")
    assert config.resolve_profile() == "cpu"
    with pytest.raises(ValueError, match="Unknown profile"):
        config.resolve_profile("fast")


def test_ci_runs_with_the_network_blocked() -> None:
    """``make test`` blocks outbound connections for pytest and every notebook kernel."""
    if not os.environ.get("CI") and os.environ.get("ADLIB_BLOCK_NETWORK") != "1":
        pytest.skip("not running under CI or make test")
    import socket
    import subprocess
    import sys

    assert getattr(socket, "adlib_network_blocked", False), "tests/offline/sitecustomize.py is not active"
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never routed
    # a child Python process (as a notebook kernel is) is blocked too
    child = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), 1)"],
                           capture_output=True, text=True)
    assert child.returncode != 0 and "network blocked" in child.stderr
    # loopback stays open (kernels talk to the client over it)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    socket.create_connection(server.getsockname(), timeout=1).close()
    server.close()
