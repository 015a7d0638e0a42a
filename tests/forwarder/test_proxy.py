"""gRPC through an HTTP CONNECT proxy named by grpc_proxy, as the SDK honours it; the forwarder leaves it alone."""

from __future__ import annotations

import logging
import select
import socket
import threading

import pytest

from tests.forwarder.conftest import Rig


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that counts tunnels and forwards bytes."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.tunnels: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._main = threading.Thread(target=self._accept, daemon=True)
        self._main.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, client: socket.socket):
        client.settimeout(10)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            method, target, _ = line.split(" ", 2)
            host, port = target.rsplit(":", 1)
            if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.tunnels.append(target)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            pair = [client, upstream]
            while not self._stop.is_set():
                ready, _, _ = select.select(pair, [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()

    def close(self):
        self._stop.set()
        self.sock.close()
        self._main.join(2)
        for t in self._threads:
            t.join(2)


@pytest.fixture
def proxy():
    p = ConnectProxy()
    try:
        yield p
    finally:
        p.close()


def test_grpc_goes_through_the_proxy_named_by_grpc_proxy(tmp_path, emulator, proxy, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="edge.forwarder")
    monkeypatch.setenv("grpc_proxy", f"http://user:pa55word@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("no_grpc_proxy", raising=False)
    rig = Rig(tmp_path, emulator)
    try:
        res = rig.append(300)
        rig.start()
        rig.wait_delivered(res.last_seq)
        assert f"127.0.0.1:{emulator.grpc_port}" in proxy.tunnels  # the stream went through the tunnel
        assert "grpc_proxy=http://***@127.0.0.1" in caplog.text  # logged, without the credentials
        assert "pa55word" not in caplog.text
    finally:
        rig.close()
