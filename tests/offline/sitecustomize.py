"""Blocks outbound network for every Python process of the test suite (kernels included).

``make test`` puts this folder on ``PYTHONPATH`` with ``ADLIB_BLOCK_NETWORK=1``; Python imports
``sitecustomize`` at start-up, in pytest and in every notebook kernel nbmake starts. Connections
to loopback addresses (the kernel's own ZeroMQ sockets, the tests' local file servers) and Unix
sockets still work; anything else raises ``OSError``, so a hidden download fails the suite.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple) or not address:  # AF_UNIX paths and the like
        return True
    host = str(address[0]).strip("[]")
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:  # a host name that would need DNS: not local
        return False


def _install() -> None:
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if not _is_local(address):
            raise OSError(f"adlib test suite: network blocked (connect to {address!r}); "
                          "the course must run offline by default")
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _is_local(address):
            raise OSError(f"adlib test suite: network blocked (connect to {address!r})")
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.adlib_network_blocked = True  # type: ignore[attr-defined]


if os.environ.get("ADLIB_BLOCK_NETWORK") == "1":
    _install()
