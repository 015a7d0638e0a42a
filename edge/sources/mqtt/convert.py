"""MQTT messages -> readings and quarantines (the pipeline's worker thread runs this).

One message gives all of its readings or, if any part of it cannot be parsed
or encoded, one quarantine entry that keeps the payload whole (bounded by
``quarantine_max_bytes``) with the reason. Sparkplug alias tables are saved
before the BIRTH that defined them can be acknowledged.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

from edge.encode import encode_reading
from edge.fsutil import write_atomic
from edge.sources.context import SourceContext
from edge.sources.mqtt.config import Config
from edge.sources.mqtt.parse import Mapper, ParseError, Router
from edge.sources.mqtt.pointmeta import MetadataStore
from edge.sources.mqtt.pipeline import Msg
from edge.sources.mqtt.sparkplug import Decoder


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


class Converter:
    def __init__(self, cfg: Config, ctx: SourceContext, counts: collections.Counter | None = None):
        self.cfg = cfg
        self.ctx = ctx
        self._meta_path = Path(ctx.data_dir) / "mqtt-metadata.json"
        self.router = Router(cfg.subscriptions, metadata=MetadataStore(load_json(self._meta_path)))
        self._alias_path = Path(ctx.data_dir) / "sparkplug-aliases.json"
        self.decoder = Decoder(load_json(self._alias_path))
        self._q_logged_at = 0.0
        self._q_unlogged = 0
        self.counts: collections.Counter = collections.Counter() if counts is None else counts

    def convert(self, msgs: list[Msg]) -> tuple[list[tuple[int, bytes]], list[tuple]]:
        cfg = self.cfg
        items: list[tuple[int, bytes]] = []
        quarantines: list[tuple] = []
        name = cfg.name
        n_readings = 0
        for m in msgs:
            try:
                topic = m.topic.decode("utf-8")
            except UnicodeDecodeError:
                quarantines.append(self._quarantine(m, repr(m.topic[:200]), "topic is not valid UTF-8"))
                continue
            if len(m.payload) > cfg.max_payload_bytes:
                quarantines.append(self._quarantine(
                    m, topic, f"payload of {len(m.payload)} bytes exceeds max_payload_bytes ({cfg.max_payload_bytes})"))
                continue
            mapper = self.router.route(topic)
            if mapper is None:
                quarantines.append(self._quarantine(m, topic, "no subscription mapping matches this topic"))
                continue
            try:
                parsed = self._parse(mapper, topic, m.payload)
            except ParseError as exc:
                quarantines.append(self._quarantine(m, topic, str(exc)))
                continue
            except Exception as exc:  # a parser bug: keep the payload, keep going
                quarantines.append(self._quarantine(m, topic, f"internal parse error {type(exc).__name__}: {exc}"))
                continue
            try:
                bodies = [
                    (m.ts, encode_reading(
                        source=name, protocol="mqtt", point=p.point, value=p.value, quality=p.quality,
                        status_code=p.status_code, source_ts=p.source_ts, collected_ts=m.ts,
                        unit=p.unit, data_type=p.data_type,
                    ))
                    for p in parsed
                ]
            except Exception as exc:  # all of a message or none of it: the quarantine keeps it whole
                quarantines.append(self._quarantine(m, topic, f"cannot encode a reading: {type(exc).__name__}: {exc}"))
                continue
            items.extend(bodies)
            n_readings += len(bodies)
        self.counts["messages"] += len(msgs)
        self.counts["duplicates_flagged"] += sum(1 for m in msgs if m.dup)
        if n_readings:
            self.ctx.status.readings(n_readings)
        if quarantines:
            self.ctx.status.quarantined(len(quarantines))
        self.ctx.status.update(messages_total=self.counts["messages"], redelivered_total=self.counts["duplicates_flagged"])
        return items, quarantines

    def _parse(self, mapper: Mapper, topic: str, payload: bytes):
        if mapper.format != "sparkplug":
            parsed = mapper.parse(topic, payload)
            if self.router.metadata.changed:  # saved before the retained metadata message is acknowledged
                save_json(self._meta_path, self.router.metadata.snapshot())
            return parsed
        parsed, changed = self.decoder.parse(topic, payload)
        if changed:
            # Saved before the BIRTH can be acknowledged: after a restart the broker will
            # not send it again, and DATA messages name metrics only by alias.
            save_json(self._alias_path, self.decoder.snapshot())
        return parsed

    def _quarantine(self, m: Msg, topic: str, reason: str) -> tuple:
        limit = int(self.cfg.quarantine_max_bytes)
        meta = {
            "topic": topic[:1024], "qos": m.qos, "bytes": len(m.payload), "truncated": len(m.payload) > limit,
            "received_ts": m.ts, "dup": m.dup,
        }
        # A device sending garbage at 1 kHz must not flood the log: one line per second at most.
        now = time.monotonic()
        self._q_unlogged += 1
        if now - self._q_logged_at >= 1.0:
            more = f" (+{self._q_unlogged - 1} more since the last line)" if self._q_unlogged > 1 else ""
            self.ctx.log.warning("quarantined MQTT message on %s: %s%s", topic[:200], reason, more)
            self._q_logged_at, self._q_unlogged = now, 0
        return (self.cfg.name, reason, bytes(m.payload[:limit]), meta)
