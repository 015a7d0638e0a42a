"""Interop: our MQTT collector against rumqttd (Rust, tokio + rustls), a third broker we did not write.

``ops/images/rumqttd.sh`` builds it once per machine from crates.io (``ops/test.sh`` runs it; this
test runs it too, which only prints the path once built). The broker runs as its own process with
a plain and a TLS v4 (MQTT 3.1.1) listener and users from its config's ``auth`` table; the checks
are the matrix's (``tests/interop/mqtt_matrix.py``). Results: mqtt/README.md, "Interoperability".
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.interop.mqtt_matrix import (
    ForeignBroker, check_broker_restart, check_mqtt5_refused, check_queue_while_away,
    check_unacknowledged_redelivery, check_tls_and_credentials,
    check_typed_values_qos0_qos1_and_a_retained_value,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rumqttd_binary() -> str:
    out = subprocess.run(["bash", str(ROOT / "ops" / "images" / "rumqttd.sh")], capture_output=True, text=True)
    assert out.returncode == 0, f"ops/images/rumqttd.sh failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip().splitlines()[-1]


class Rumqttd(ForeignBroker):
    name = "rumqttd"
    binary = ""

    def configure(self) -> None:
        def server(n: int, port: int, tls: str = "") -> str:
            return (f'[v4.{n}]\nname = "v4-{n}"\nlisten = "127.0.0.1:{port}"\nnext_connection_delay_ms = 1\n{tls}'
                    f"[v4.{n}.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 262144\n"
                    f"max_inflight_count = 500\ndynamic_filters = true\n"
                    f"[v4.{n}.connections.auth]\n" + "".join(f'{u} = "{p}"\n' for u, p in self.passwords.items()))

        tls = f'[v4.2.tls]\ncertpath = "{self.tmp / "server.crt"}"\nkeypath = "{self.tmp / "server.key"}"\n'
        self.conf = self.tmp / "rumqttd.toml"
        self.conf.write_text(
            "id = 0\n[router]\nid = 0\nmax_connections = 100\nmax_outgoing_packet_count = 200\n"
            "max_segment_size = 104857600\nmax_segment_count = 10\n"
            + server(1, self.port) + server(2, self.tls_port, tls))
        os.chmod(self.conf, 0o600)  # it holds the passwords

    def argv(self) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-q"]


@pytest.fixture
def rumqttd(rumqttd_binary, tmp_path):
    Rumqttd.binary = rumqttd_binary
    b = Rumqttd(tmp_path)
    yield b
    b.kill()


def test_typed_values_qos0_qos1_and_a_retained_value(rumqttd, tmp_path):
    assert check_typed_values_qos0_qos1_and_a_retained_value(rumqttd, tmp_path) == 1


def test_broker_restart(rumqttd, tmp_path):
    _, kept = check_broker_restart(rumqttd, tmp_path)
    # rumqttd keeps sessions in memory only: the 50 queued for the away collector go with the restart.
    assert kept == [], "rumqttd now keeps a persistent session's queue across a restart: update the README"


def test_queue_while_away(rumqttd, tmp_path):
    assert check_queue_while_away(rumqttd, tmp_path) == list(range(10, 60))


def test_unacknowledged_messages_are_sent_again(rumqttd, tmp_path):
    assert check_unacknowledged_redelivery(rumqttd, tmp_path) == list(range(100, 150))


def test_tls_and_credentials(rumqttd, tmp_path):
    # rumqttd closes the connection on a wrong password without the CONNACK refusal code MQTT 3.1.1
    # says it should send (3.2.2.3), so the collector cannot tell it from any other drop: connect_failed,
    # retried at reconnect_max, not auth_failed with its longer auth_backoff. A change shows up here.
    st = check_tls_and_credentials(rumqttd, tmp_path, refused="connect_failed")
    assert "before CONNACK" in st["detail"], st["detail"]


def test_mqtt5_is_refused_without_a_connack(rumqttd, tmp_path):
    # No CONNACK 0x01 (unacceptable protocol level, MQTT 3.1.1 3.1.2.2): the connection just closes, so
    # the collector can only say so, not name the protocol. A change shows up here.
    assert "closed before CONNACK" in check_mqtt5_refused(rumqttd, tmp_path)
