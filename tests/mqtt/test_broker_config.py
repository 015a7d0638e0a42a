"""The shipped Mosquitto setup (mosquitto/): passwords from secrets, no defaults, ACL prefixes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulators.kit.broker import SHIPPED, Broker
from simulators.kit.mqtt import wait_until


def run_init(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    d = tmp_path / "m"
    (d / "config").mkdir(parents=True, exist_ok=True)
    for f in SHIPPED.iterdir():
        (d / "config" / f.name).write_bytes(f.read_bytes())
    return subprocess.run(["sh", str(d / "config" / "init.sh")], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "MOSQUITTO_DIR": str(d), "INIT_ONLY": "1",
                               "MQTT_SECRETS_DIR": str(tmp_path / "secrets"), **env})


def test_passwords_come_from_secrets_env_or_are_generated_never_a_default(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt_edge_password").write_text("from-a-docker-secret\n")
    out = run_init(tmp_path, MQTT_PUBLISHERS="line-1 line2", MQTT_PASSWORD_LINE_1="from-the-environment")
    assert out.returncode == 0, out.stderr
    d = tmp_path / "m"
    passwd = (d / "data" / "auth" / "passwd").read_text()
    assert [ln.split(":")[0] for ln in passwd.splitlines()] == ["edge", "line-1", "line2"]
    assert "from-a-docker-secret" not in passwd and "from-the-environment" not in passwd  # hashed
    generated = sorted(p.name for p in (d / "data" / "auth" / "generated").iterdir())
    assert generated == ["line2"]  # only the user without a supplied password
    pw = (d / "data" / "auth" / "generated" / "line2").read_text()
    assert len(pw) >= 24
    assert oct((d / "data" / "auth" / "generated" / "line2").stat().st_mode & 0o777) == "0o600"
    assert oct((d / "data" / "auth" / "passwd").stat().st_mode & 0o777) == "0o600"
    assert "line2" in out.stderr and pw not in out.stderr  # says where, never what
    # A second start keeps the generated password (devices were configured with it).
    assert run_init(tmp_path, MQTT_PUBLISHERS="line2").returncode == 0
    assert (d / "data" / "auth" / "generated" / "line2").read_text() == pw
    # Two installs never share a generated password.
    other = tmp_path / "other"
    other.mkdir()
    assert run_init(other, MQTT_PUBLISHERS="line2").returncode == 0
    assert (other / "m" / "data" / "auth" / "generated" / "line2").read_text() != pw


def test_the_access_rules_are_the_dynamic_security_plugins_built_from_the_same_users(tmp_path):
    """init.sh turns mosquitto_passwd's entries into the plugin's clients as they are (PBKDF2-SHA512: the
    same hash), one reading role for edge and one publishing role per device; the rendered config loads it."""
    out = run_init(tmp_path, MQTT_PUBLISHERS="line-1", MQTT_PASSWORD_EDGE="edge-password-123",
                   MQTT_PASSWORD_LINE_1="device-password-1")
    assert out.returncode == 0, out.stderr
    d = tmp_path / "m"
    doc = json.loads((d / "data" / "auth" / "dynamic-security.json").read_text())
    assert oct((d / "data" / "auth" / "dynamic-security.json").stat().st_mode & 0o777) == "0o600"
    assert doc["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": True}
    clients = {c["username"]: c for c in doc["clients"]}
    for user, password in (("edge", "edge-password-123"), ("line-1", "device-password-1")):
        c = clients[user]
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(c["salt"]), c["iterations"], 64)
        assert base64.b64encode(digest).decode() == c["password"]
    roles = {r["rolename"]: {(a["acltype"], a["topic"]) for a in r["acls"] if a["allow"]} for r in doc["roles"]}
    assert clients["edge"]["roles"] == [{"rolename": "edge-reader"}]
    assert roles["edge-reader"] == {("subscribePattern", "plant/#"), ("subscribePattern", "spBv1.0/#"),
                                    ("publishClientReceive", "plant/#"), ("publishClientReceive", "spBv1.0/#")}
    assert roles["device-line-1"] == {("publishClientSend", "plant/line-1/#"), ("publishClientSend", "spBv1.0/+/+/line-1"),
                                      ("publishClientSend", "spBv1.0/+/+/line-1/#")}
    conf = (d / "data" / "run" / "mosquitto.conf").read_text()
    assert "\nplugin " in conf and f"plugin_opt_config_file {d}/data/auth/dynamic-security.json" in conf
    settings = [ln.split()[0] for ln in conf.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "password_file" not in settings and "acl_file" not in settings and settings.count("plugin") == 1


@pytest.mark.parametrize("env,message", [
    ({"MQTT_PASSWORD_EDGE": "short"}, "shorter than 12"),
    ({"MQTT_PUBLISHERS": "bad/user"}, "invalid MQTT user name"),
    ({"MQTT_PUBLISHERS": "sim1 edge"}, "'edge' is the collector's read-only user"),
    ({"MQTT_AUTOSAVE_CHANGES": "10k"}, "MQTT_AUTOSAVE_CHANGES must be a whole number"),
    ({"MQTT_AUTOSAVE_CHANGES": "5"}, "MQTT_AUTOSAVE_CHANGES must be at least 100"),
])
def test_init_refuses_weak_or_bad_input(tmp_path, env, message):
    out = run_init(tmp_path, **env)
    assert out.returncode == 2 and message in out.stderr


def test_autosave_interval_can_be_set_at_start(tmp_path):
    shipped = (SHIPPED / "mosquitto.conf").read_text()
    assert "\nautosave_on_changes true\n" in shipped and "\nautosave_interval 10000\n" in shipped
    out = run_init(tmp_path, MQTT_AUTOSAVE_CHANGES="2500")
    assert out.returncode == 0, out.stderr
    conf = (tmp_path / "m" / "data" / "run" / "mosquitto.conf").read_text()
    assert "\nautosave_interval 2500\n" in conf and "autosave_interval 10000" not in conf
    assert "\nautosave_on_changes true\n" in conf


def _client(broker: Broker, user: str | None, password: str | None = None, v5: bool = False) -> tuple[mqtt.Client, dict]:
    seen: dict = {"connack": None, "msgs": [], "pub_rc": {}, "subacked": threading.Event()}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{user}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, password if password is not None else broker.password(user))
    ev = threading.Event()

    def on_connect(cl, u, flags, rc, props):
        seen["connack"] = rc
        ev.set()

    c.on_connect = on_connect
    c.on_message = lambda cl, u, m: seen["msgs"].append(m.topic)
    c.on_publish = lambda cl, u, mid, rc, props: seen["pub_rc"].__setitem__(mid, rc)
    c.on_subscribe = lambda cl, u, mid, rcs, props: seen["subacked"].set()
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    ev.wait(10)
    return c, seen


def test_anonymous_and_wrong_passwords_are_refused(broker):
    c, seen = _client(broker, None)
    assert seen["connack"] is not None and seen["connack"].is_failure
    c.loop_stop()
    c, seen = _client(broker, "edge", "guess-guess-guess")
    assert seen["connack"].is_failure
    c.loop_stop()


def test_acl_publishers_only_under_their_prefix_edge_reads_only(broker):
    edge, eseen = _client(broker, "edge")
    edge.subscribe([("plant/#", 1), ("spBv1.0/#", 1)])
    assert eseen["subacked"].wait(10)
    sim1, sseen = _client(broker, "sim1", v5=True)  # MQTT 5 reports a denied publish
    ok = sim1.publish("plant/sim1/line1/x", b"1", qos=1)
    other = sim1.publish("plant/sim2/line1/x", b"1", qos=1)
    sp_ok = sim1.publish("spBv1.0/plant/NDATA/sim1", b"", qos=1)
    sp_other = sim1.publish("spBv1.0/plant/NDATA/sim2", b"", qos=1)
    for i in (ok, other, sp_ok, sp_other):
        i.wait_for_publish(5)
    # A last message from the same publisher: once it arrived, every earlier one that was let through has.
    sim1.publish("plant/sim1/line1/end", b"1", qos=1).wait_for_publish(5)
    wait_until(lambda: "plant/sim1/line1/end" in eseen["msgs"], 10, "the end marker")
    assert sorted(eseen["msgs"]) == ["plant/sim1/line1/end", "plant/sim1/line1/x", "spBv1.0/plant/NDATA/sim1"]
    assert sseen["pub_rc"][other.mid].value == 135 and sseen["pub_rc"][sp_other.mid].value == 135
    # The edge itself cannot publish into the plant namespace.
    e_pub = edge.publish("plant/sim1/line1/x", b"forged", qos=1)
    e_pub.wait_for_publish(5)
    sim1.publish("plant/sim1/line1/end2", b"1", qos=1).wait_for_publish(5)
    wait_until(lambda: "plant/sim1/line1/end2" in eseen["msgs"], 10, "the second end marker")
    assert eseen["msgs"].count("plant/sim1/line1/x") == 1
    edge.loop_stop()
    sim1.loop_stop()


@pytest.mark.parametrize("topic", ["plant/edge/line1/x", "spBv1.0/plant/NDATA/edge", "spBv1.0/plant/DDATA/edge/dev1"])
def test_acl_the_edge_user_publishes_nothing_not_even_under_its_own_prefix(broker, topic):
    """The device patterns (plant/%u/#, spBv1.0/+/+/%u) apply to every user: they must not
    give the collector's login a namespace of its own to forge readings in."""
    edge, eseen = _client(broker, "edge", v5=True)
    granted = edge.subscribe([("plant/#", 1), ("spBv1.0/#", 1)])
    assert granted[0] == mqtt.MQTT_ERR_SUCCESS
    forged = edge.publish(topic, b"forged", qos=1)
    forged.wait_for_publish(5)
    assert eseen["pub_rc"][forged.mid].value == 135  # MQTT 5: Not authorized
    # A marker published after the refusal: once it arrived, the forged message would have too.
    sim1, _ = _client(broker, "sim1")
    sim1.publish("plant/sim1/marker", b"1", qos=1).wait_for_publish(5)
    wait_until(lambda: "plant/sim1/marker" in eseen["msgs"], 10, "the marker")
    assert topic not in eseen["msgs"]
    edge.loop_stop()
    sim1.loop_stop()
