"""A TCP stand-in for PostgreSQL that refuses logins, optionally in front of the real server.

The test server trusts every local connection, so it never rejects a wrong password. This proxy
forwards to it until told to refuse; from then on it kills the forwarded connections and answers
every new one the way a server with password authentication would: it asks for the password in
clear text and fails the login with SQLSTATE 28P01. Its error message quotes the password it
received, the worst a server or driver could do, so a test proves that the service redacts
whatever an exception says rather than relying on drivers to be discreet.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
AUTH_CLEARTEXT_PASSWORD = 3


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class FakePostgres:
    """Listens on 127.0.0.1:`port`. `upstream=None` refuses from the start."""

    def __init__(self, upstream: tuple[str, int] | None = None) -> None:
        self.upstream = upstream
        self.refusing = upstream is None
        self.passwords_seen: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._forwarded: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> FakePostgres:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(5)
        self._drop_forwarded()

    def refuse_logins(self) -> None:
        """From now on every login fails; connections already open are cut."""
        self.refusing = True
        self._drop_forwarded()

    def _drop_forwarded(self) -> None:
        with self._lock:
            conns, self._forwarded = self._forwarded, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self._refuse if self.refusing else self._forward
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _refuse(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError, ConnectionError):
            length, code = struct.unpack("!ii", _read_exact(client, 8))
            while code in (SSL_REQUEST, GSSENC_REQUEST):
                client.sendall(b"N")  # no TLS, no GSS encryption: carry on in plain text
                length, code = struct.unpack("!ii", _read_exact(client, 8))
            _read_exact(client, length - 8)  # the startup parameters (user, database, ...)
            client.sendall(b"R" + struct.pack("!ii", 8, AUTH_CLEARTEXT_PASSWORD))
            _read_exact(client, 1)  # 'p', PasswordMessage
            (length,) = struct.unpack("!i", _read_exact(client, 4))
            password = _read_exact(client, length - 4).rstrip(b"\0").decode()
            self.passwords_seen.append(password)
            message = f'password authentication failed for user "postgres" (got "{password}")'
            fields = b"SFATAL\0VFATAL\0C28P01\0M" + message.encode() + b"\0\0"
            client.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)

    def _forward(self, client: socket.socket) -> None:
        assert self.upstream is not None
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self._lock:
            self._forwarded.update((client, server))

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump, args=(server, client), daemon=True).start()
        pump(client, server)
