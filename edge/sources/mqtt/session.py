"""One broker connection at a time: the supervisor's session for an MQTT source.

``connect`` builds the paho client once (TLS files are read here: a bad file is
``tls_error``, fixed without restarting the appliance), connects with a
persistent session (3.1.1 ``clean_session=False``, MQTT 5 ``clean_start=False``
with a session expiry), and returns when the broker's CONNACK accepted us.
Every refusal becomes a ``Failure`` with its reason: ``auth_failed`` (wrong
credentials: the next try waits ``auth_backoff``), ``tls_error``,
``connect_failed``. ``serve`` returns when paho reports the connection gone;
``close`` joins paho's thread. The reconnect loop, the backoff and the states
between attempts are ``edge.sources.supervisor``'s.

Subscriptions: made again only when the broker lost our session or the
configured filters changed (re-subscribing makes the broker resend every
retained message). A filter the broker refuses in its SUBACK (MQTT 5 reason
code >= 0x80, 3.1.1 0x80, e.g. an ACL that denies it) shows as
``subscribe_failed`` with the filters named; the others keep delivering.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.sources.mqtt.client import Client as BurstClient
from edge.sources.mqtt.config import parse_url
from edge.sources.mqtt.convert import load_json, save_json
from edge.sources.mqtt.pipeline import Msg
from edge.sources.states import State
from edge.sources.status import now_us
from edge.sources.supervisor import Failure, describe_oserror

if TYPE_CHECKING:
    from edge.sources.mqtt.collector import Source

# CONNACK reason codes that mean "your credentials or identity": retrying fast will not help.
AUTH_CODES = {134, 135, 133, 138, 140}  # bad user/password, not authorized, client id rejected, banned, bad auth method


class TlsFilesError(Exception):
    """ca_file / cert_file / key_file cannot be read or do not fit together."""


class Session:
    def __init__(self, src: "Source"):
        self.src = src
        self.cfg = src.cfg
        self.ctx = src.ctx
        self.tls, self.host, self.port = parse_url(self.cfg.url)
        self.client: mqtt.Client | None = None
        self.gen = 0  # connection generation: acks are only valid on the connection that delivered
        self.up = False
        self.refused: list[str] = []  # filters the broker refused on this connection
        self._subs_path = Path(self.ctx.data_dir) / "mqtt-subscriptions.json"
        self._pending_subs: list[tuple[str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._connack: tuple[int, str] | None = None
        self._gone = False
        self._last_disconnect = ""
        self._looping = False

    # ---- the supervisor's session

    async def connect(self) -> None:
        cfg = self.cfg
        if self._changed is None:
            self._loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
        if self.client is None:
            try:
                self.client = self._new_client()
            except TlsFilesError as exc:  # fix the files: retried without restarting the appliance
                raise Failure(State.TLS_ERROR, str(exc), wait=float(cfg.auth_backoff)) from None
        client = self.client
        self._connack, self._gone, self.refused = None, False, []
        self._changed.clear()
        try:
            if cfg.protocol == "5":
                await asyncio.to_thread(client.connect, self.host, self.port, int(cfg.keepalive),
                                        clean_start=False, properties=self._connect_props())
            else:  # 3.1.1: the persistent session comes from clean_session=False
                await asyncio.to_thread(client.connect, self.host, self.port, int(cfg.keepalive))
        except ssl.SSLError as exc:
            why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            hint = f" (ca_file: {cfg.ca_file or 'system CAs'})" if isinstance(exc, ssl.SSLCertVerificationError) else ""
            raise Failure(State.TLS_ERROR, f"TLS handshake with {self.host}:{self.port} failed: {why}{hint}") from None
        except (OSError, ValueError) as exc:
            raise Failure(State.CONNECT_FAILED, f"cannot reach {self.host}:{self.port}: {describe_oserror(exc)}") from None
        client.loop_start()
        self._looping = True
        try:
            # Bounded: a peer that accepts TCP but never answers (not a broker, or a stuck one).
            async with asyncio.timeout(float(cfg.connect_timeout) * 2):
                while self._connack is None and not self._gone:
                    await self._changed.wait()
                    self._changed.clear()
        except TimeoutError:
            raise Failure(State.CONNECT_FAILED, f"{self.host}:{self.port} accepted the connection but sent no "
                          f"CONNACK within {float(cfg.connect_timeout) * 2:g}s (is it an MQTT broker?)") from None
        connack = self._connack
        if connack is not None and connack[0] < 128:
            return
        if connack is None:
            raise Failure(State.CONNECT_FAILED, f"connection closed before CONNACK: {self._last_disconnect}")
        if connack[0] in AUTH_CODES:
            raise Failure(State.AUTH_FAILED, f"broker refused the credentials of user {cfg.username!r}: {connack[1]}",
                          wait=float(cfg.auth_backoff))
        raise Failure(State.CONNECT_FAILED, f"broker refused the connection: {connack[1]}")

    async def serve(self) -> None:
        # Cancellation propagates from here with paho's thread still running, so that the
        # source's shutdown can let the last commits' PUBACKs out before disconnecting.
        while not self._gone:
            await self._changed.wait()
            self._changed.clear()
        raise Failure(State.RECONNECTING, f"disconnected: {self._last_disconnect}; reconnecting", error=False)

    async def close(self) -> None:
        if self._looping:
            # Joins paho's thread; from here on no callback runs until the next connect.
            await asyncio.to_thread(self.client.loop_stop)
            self._looping = False
        self.up = False

    def shutdown(self) -> None:
        """Last stop (a thread, not the loop): disconnect cleanly, then join paho's thread."""
        self.up = False  # late commits no longer ack: those messages are redelivered (a duplicate, not a loss)
        client = self.client
        if client is not None:
            try:
                client.disconnect()
                client.loop_stop()
            except Exception:  # noqa: BLE001 - the process is stopping; the broker keeps the session either way
                self.ctx.log.debug("mqtt disconnect on shutdown failed", exc_info=True)

    # ---- paho callbacks (paho's thread: keep them short)

    def _wake(self) -> None:
        loop, ev = self._loop, self._changed
        if loop is not None and ev is not None and not loop.is_closed():
            loop.call_soon_threadsafe(ev.set)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        code = int(reason_code.value) if hasattr(reason_code, "value") else int(reason_code)
        self._connack = (code, str(reason_code))
        if not reason_code.is_failure:
            self.gen += 1
            self.up = True
            self.src.show_flow()
            self._subscribe(client, bool(flags.session_present))
        self._wake()

    def _subscribe(self, client: mqtt.Client, session_present: bool) -> None:
        wanted = sorted({(s.topic, s.qos) for s in self.cfg.subscriptions})
        # The broker still has our subscriptions when the session survived; subscribing again
        # would make it resend every retained message (duplicates on every reconnect).
        saved = load_json(self._subs_path)
        if session_present and saved == {"subs": [list(w) for w in wanted]}:
            return
        # Filters dropped from the config would otherwise keep delivering into the old session.
        old = {t for t, _ in (saved or {}).get("subs", [])} if isinstance(saved, dict) else set()
        dropped = sorted(old - {t for t, _ in wanted})
        if session_present and dropped:
            client.unsubscribe(dropped)
        if self.cfg.protocol == "5":
            topics = [(t, SubscribeOptions(qos=q, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)) for t, q in wanted]
        else:
            topics = [(t, q) for t, q in wanted]
        self._pending_subs = wanted
        result, _mid = client.subscribe(topics)
        if result != mqtt.MQTT_ERR_SUCCESS:
            self.ctx.status.error(f"subscribe failed: {mqtt.error_string(result)}")

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        wanted = self._pending_subs
        refused = [f"{w[0]} ({rc})" for w, rc in zip(wanted, reason_code_list) if rc.is_failure]
        if refused:
            self.refused = refused
            msg = f"broker refused subscription(s) {', '.join(refused)} (check the broker ACL for user {self.cfg.username!r})"
            self.ctx.log.warning("mqtt source %s: %s", self.cfg.name, msg)
            self.ctx.status.error(msg)
            self.ctx.status.set_state(State.SUBSCRIBE_FAILED, msg)
            return  # not saved: the next connection subscribes again (and shows the refusal again)
        # Written only after the SUBACK: a crash before leaves the file old, so we subscribe again.
        save_json(self._subs_path, {"subs": [list(w) for w in wanted]})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.up = False
        # paho reports a dropped TCP connection as "Unspecified error".
        self._last_disconnect = "connection lost" if getattr(reason_code, "value", 0) == 128 else str(reason_code)
        self._gone = True
        self._wake()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # msg._topic is the raw bytes: msg.topic would raise on a non-UTF-8 topic inside paho's thread.
        self.src.pipeline.put(Msg(self.gen, msg.mid, msg.qos, msg._topic, msg.payload, msg.dup, now_us()))

    # ---- the paho client

    def _new_client(self) -> mqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = BurstClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.src.client_id,
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.connect_timeout = float(cfg.connect_timeout)
        if cfg.username:
            client.username_pw_set(cfg.username, str(cfg.password) or None)
        if self.tls:
            client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(f"cannot load ca_file {cfg.ca_file}: {describe_oserror(exc)}") from None
        ctx.check_hostname = True  # never off: a broker must prove its name
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cfg.cert_file:
            try:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file, password=str(cfg.key_password) or None)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFilesError(
                    f"cannot load cert_file {cfg.cert_file} / key_file {cfg.key_file}: {describe_oserror(exc)}") from None
        return ctx

    def _connect_props(self) -> Properties | None:
        if self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.cfg.session_expiry)
        props.ReceiveMaximum = int(self.cfg.max_inflight)
        return props
