"""HTTPS to a host over a connection to one address of it that was checked, within one deadline.

Used by the resolver (``chalicelib.resolver``): the address was judged public once, and no second
DNS lookup may lead the request elsewhere; every wait on the way (connect, TLS, the status line,
headers and body) gets only what is left of one deadline, so a server that answers a byte at a
time cannot hold the caller.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# (address, port), timeout -> a connected TCP socket: socket.create_connection's shape.
Connect: TypeAlias = Callable[[tuple[str, int], float], socket.socket]


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline``; TimeoutError once there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class _ReadsWithin(io.RawIOBase):
    """A socket's bytes, every wait for them given only what is left until ``deadline``."""

    def __init__(self, sock: socket.socket, raw: io.RawIOBase, deadline: float) -> None:
        super().__init__()
        self._sock, self._raw, self._deadline = sock, raw, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        self._sock.settimeout(remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ResponseWithin(http.client.HTTPResponse):
    """An HTTPResponse whose reads together (status line, headers, body) last no longer than the
    socket's timeout when it began. HTTPResponse alone applies the timeout to each read, so a
    server sending a byte at a time could hold the resolver for ever."""

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        deadline = time.monotonic() + (sock.gettimeout() or 0.0)
        # The socket's own reader stays underneath: it keeps the socket open until the response closes.
        self.fp = io.BufferedReader(_ReadsWithin(sock, self.fp.detach(), deadline))


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` over a TCP connection to ``address``, one of the host's addresses that was
    checked, so no second DNS lookup can lead elsewhere. TLS still verifies the certificate for
    ``host`` (SNI and the name check) and the Host header names it. Every wait (connect, handshake,
    the answer) gets only what is left until ``deadline``."""

    response_class = _ResponseWithin

    def __init__(self, host: str, port: int, address: str, deadline: float, tls: ssl.SSLContext,
                 connect: Connect) -> None:
        super().__init__(host, port, context=tls)
        self.address, self.deadline = address, deadline
        self._tls, self._connect_tcp = tls, connect

    def connect(self) -> None:
        sock = self._connect_tcp((self.address, self.port), remaining(self.deadline))
        try:
            sock.settimeout(remaining(self.deadline))  # the TLS handshake's share
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def getresponse(self) -> http.client.HTTPResponse:
        self.sock.settimeout(remaining(self.deadline))  # what _ResponseWithin may take in all
        return super().getresponse()


@cache
def default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # the system's CAs, certificate and host name verified
