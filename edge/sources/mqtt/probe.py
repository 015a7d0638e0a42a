"""``edge doctor --sources`` for an MQTT source: reach, TLS, login (CONNACK), SUBACK, one message.

The probe connects as a client of its own (``<client_id>-doctor-<random>``, clean session):
the appliance's persistent session, under the fixed client id, is never taken over (a broker
disconnects the older of two clients with one id) and nothing is acknowledged on its behalf.
It subscribes to the configured filters with their QoS, reads the SUBACK, and waits briefly
for one message (a WARN, not a FAIL, when none comes: nothing may be publishing right now).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time

import paho.mqtt.client as mqtt

from edge.control.probing import Check, Checks, off_loop, reach
from edge.sources.mqtt.config import Config, parse_url
from edge.sources.mqtt.session import AUTH_CODES

SAMPLE_WAIT_MAX = 5.0  # seconds to wait for a first message, at most


def tls_context(cfg: Config) -> ssl.SSLContext:
    """The collector's TLS settings: the configured CA (or the system's), hostname checked, optional client cert."""
    ctx = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else ssl.create_default_context()
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file, password=str(cfg.key_password) or None)
    return ctx


def tls_hint(exc: ssl.SSLError, cfg: Config, host: str) -> str:
    why = (getattr(exc, "verify_message", None) or exc.reason or str(exc)).lower()
    if "mismatch" in why:
        return f"the broker's certificate is not issued for {host}: put the name on its certificate in {cfg.name}.url"
    if "expired" in why or "not yet valid" in why:
        return "the broker's certificate is outside its validity (renew it, or check this host's clock)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the broker's certificate is not signed by {cfg.ca_file or 'a system CA'}: set {cfg.name}.ca_file "
                "to the CA that issued it")
    if "wrong version" in why or "record layer" in why or "unexpected eof" in why or "packet length" in why:
        return f"{host} does not speak TLS on this port: use mqtt://, or the broker's TLS port (usually 8883)"
    if "certificate required" in why or "alert" in why:
        return f"the broker wants a client certificate it accepts: check {cfg.name}.cert_file / key_file"
    return "see the TLS error above; check the broker's TLS listener and the certificate files"


async def check_tls(checks: Checks, cfg: Config, host: str, port: int, timeout: float) -> ssl.SSLContext | None | bool:
    """The ``tls`` check; returns the context to connect with (None for plain MQTT) or False when it failed."""
    if not parse_url(cfg.url)[0]:
        if cfg.username:
            checks.warn("tls", "plain MQTT (mqtt://): the password travels in clear text",
                        f"use mqtts:// with {cfg.name}.ca_file if the network between here and the broker is shared")
        else:
            checks.passed("tls", "plain MQTT (mqtt://), no credentials sent")
        return None
    try:
        ctx = tls_context(cfg)
    except (OSError, ssl.SSLError) as exc:
        checks.fail("tls", f"cannot load the TLS files: {getattr(exc, 'strerror', None) or exc}",
                    f"check {cfg.name}.ca_file / cert_file / key_file (path, permissions, PEM format, key password)")
        return False
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host, ssl_handshake_timeout=timeout), timeout)
    except ssl.SSLError as exc:
        why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        checks.fail("tls", f"TLS handshake with {host}:{port} failed: {why}", tls_hint(exc, cfg, host))
        return False
    except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
        what = (f"no TLS handshake with {host}:{port} within {timeout:g}s" if isinstance(exc, TimeoutError)
                else f"{host}:{port} dropped the TLS handshake ({getattr(exc, 'strerror', None) or type(exc).__name__})")
        checks.fail("tls", what, f"{host} probably does not speak TLS on this port: use mqtt://, or the broker's "
                    "TLS port (usually 8883)")
        return False
    peer = writer.get_extra_info("peercert") or {}
    subject = dict(x[0] for x in peer.get("subject", ())).get("commonName", "?")
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):  # closing after a good handshake: the check already has its answer
        pass
    checks.passed("tls", f"TLS to {host}:{port} verified against {cfg.ca_file or 'the system CAs'} (certificate CN={subject})")
    return ctx


class _Probe:
    """One throwaway paho client; its callbacks (paho's thread) hand results to the loop."""

    def __init__(self, cfg: Config, appliance_id: str, loop: asyncio.AbstractEventLoop):
        self.cfg, self.loop = cfg, loop
        v5 = cfg.protocol == "5"
        base = cfg.client_id or f"zerobus-edge-{appliance_id}-{cfg.name}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{base}-doctor-{secrets.token_hex(3)}",
                                  clean_session=None if v5 else True, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  reconnect_on_failure=False)
        if cfg.username:
            self.client.username_pw_set(cfg.username, str(cfg.password) or None)
        self.connack: asyncio.Future = loop.create_future()
        self.suback: asyncio.Future = loop.create_future()
        self.message: asyncio.Future = loop.create_future()
        self.client.on_connect = lambda c, u, flags, rc, props: self._settle(self.connack, rc)
        self.client.on_disconnect = lambda c, u, flags, rc, props: self._settle(self.connack, None)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self._settle(self.suback, list(rcs))
        self.client.on_message = lambda c, u, msg: self._settle(self.message, (msg.topic, len(msg.payload), time.monotonic()))

    def _settle(self, fut: asyncio.Future, value) -> None:
        def done() -> None:
            if not fut.done():
                fut.set_result(value)

        try:
            self.loop.call_soon_threadsafe(done)
        except RuntimeError:  # the loop closed: the probe finished before paho's thread reported
            return


async def check_session(checks: Checks, cfg: Config, host: str, port: int, ctx: ssl.SSLContext | None,
                        timeout: float, appliance_id: str) -> None:
    """``login``, ``subscribe`` and ``message``, on one connection."""
    later = ("subscribe", "message")
    p = _Probe(cfg, appliance_id, asyncio.get_running_loop())
    client = p.client
    client.connect_timeout = timeout
    if ctx is not None:
        client.tls_set_context(ctx)
    try:
        await off_loop(lambda: client.connect(host, port, int(cfg.keepalive)), timeout)
    except (OSError, ValueError, TimeoutError, asyncio.TimeoutError) as exc:
        checks.fail("login", f"cannot connect to {host}:{port}: {exc or type(exc).__name__}",
                    "the reach/tls checks passed: the broker dropped the connection; see its log")
        checks.skip(later, "not logged in")
        return
    client.loop_start()
    try:
        await _session(checks, cfg, p, timeout, host, port)
    finally:
        client.disconnect()
        try:
            await off_loop(client.loop_stop, timeout)
        except (TimeoutError, asyncio.TimeoutError):  # paho's thread is a daemon; the doctor does not wait for it
            pass


async def _session(checks: Checks, cfg: Config, p: _Probe, timeout: float, host: str, port: int) -> None:
    later = ("subscribe", "message")
    user = f"user {cfg.username!r}" if cfg.username else "anonymous"
    try:
        rc = await asyncio.wait_for(p.connack, timeout)
    except (TimeoutError, asyncio.TimeoutError):
        checks.fail("login", f"{host}:{port} accepted TCP but sent no CONNACK within {timeout:g}s",
                    "is it an MQTT broker? A TLS listener needs mqtts:// (and ca_file)")
        checks.skip(later, "not logged in")
        return
    if rc is None:
        checks.fail("login", f"the broker closed the connection before its CONNACK ({user})",
                    "see the broker's log (a protocol version it refuses, or a client id it bans)")
        checks.skip(later, "not logged in")
        return
    code = int(getattr(rc, "value", rc))
    if rc.is_failure:
        if code in (134, 135, 140):  # under 3.1.1 a wrong password is often "not authorized" (5 -> 135)
            hint = f"check {cfg.name}.username / password (the secret behind ${{VAR}}) against the broker's password file"
        elif code in AUTH_CODES:
            hint = f"the broker refuses {user} or this client id: see its log and its auth settings"
        else:
            hint = "the broker refused the connection: see its log"
        checks.fail("login", f"CONNACK {code} ({rc}) for {user}", hint)
        checks.skip(later, "not logged in")
        return
    checks.passed("login", f"CONNACK {code} ({rc}) for {user}, MQTT {cfg.protocol}")
    wanted = sorted({(s.topic, s.qos) for s in cfg.subscriptions})
    p.client.subscribe(list(wanted))
    try:
        codes = await asyncio.wait_for(p.suback, timeout)
    except (TimeoutError, asyncio.TimeoutError):
        checks.fail("subscribe", f"no SUBACK within {timeout:g}s for {len(wanted)} filter(s)",
                    "the broker did not answer the SUBSCRIBE: see its log")
        checks.skip(("message",), "no SUBACK")
        return
    refused = [f"{t} ({rc})" for (t, _), rc in zip(wanted, codes) if rc.is_failure]
    lowered = [f"{t} (asked qos {q}, granted {int(rc.value)})" for (t, q), rc in zip(wanted, codes)
               if not rc.is_failure and int(rc.value) < q]
    granted = ", ".join(f"{t} qos {int(rc.value)}" for (t, _), rc in zip(wanted, codes) if not rc.is_failure)
    if refused:
        checks.fail("subscribe", f"the broker refused {', '.join(refused)}" + (f"; granted {granted}" if granted else ""),
                    f"grant {user} read access to these filters in the broker's ACL, or fix {cfg.name}.subscriptions")
    elif lowered:
        checks.warn("subscribe", f"SUBACK downgraded {', '.join(lowered)}",
                    "the broker caps QoS (max_qos?): messages it drops before our commit are lost; allow qos 1")
    else:
        checks.passed("subscribe", f"SUBACK granted {granted}")
    if not granted:
        checks.skip(("message",), "no filter granted")
        return
    wait = min(timeout, SAMPLE_WAIT_MAX)
    t0 = time.monotonic()
    try:
        topic, size, at = await asyncio.wait_for(p.message, wait)
    except (TimeoutError, asyncio.TimeoutError):
        checks.warn("message", f"no message within {wait:g}s on the granted filters",
                    "nothing publishes there right now, or the broker's ACL hides the topics from "
                    f"{user} (MQTT 3.1.1 grants the SUBACK anyway): check the devices' topics")
        return
    checks.passed("message", f"first message on {topic} after {at - t0:.2f}s ({size} bytes)")


async def probe(cfg: Config, timeout: float, *, appliance_id: str = "edge", data_dir: str = ".") -> list[Check]:
    checks = Checks(cfg.name)
    _, host, port = parse_url(cfg.url)
    rest = ("tls", "login", "subscribe", "message")
    if not await reach(checks, host, port, timeout, f"{cfg.name}.url"):
        checks.skip(rest, "the broker is not reachable")
        return checks.rows
    ctx = await check_tls(checks, cfg, host, port, timeout)
    if ctx is False:
        checks.skip(rest[1:], "no TLS session")
        return checks.rows
    await check_session(checks, cfg, host, port, ctx, timeout, appliance_id)
    return checks.rows


__all__ = ["probe", "tls_context", "tls_hint"]
