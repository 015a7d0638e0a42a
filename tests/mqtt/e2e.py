"""What the end-to-end MQTT tests read back from the emulator (the appliance process itself: simulators/kit/mqtt.py)."""

from __future__ import annotations

import json


def landed(emulator, appliance_id: str = "edge-e2e") -> dict[str, list[int]]:
    """Per-publisher simulator seqs of every row in the emulator's table, duplicates included."""
    out: dict[str, list[int]] = {}
    from_seq = 0
    while True:
        rows = emulator.rows(appliance_id=appliance_id, from_seq=from_seq, limit=5000)
        if not rows:
            return out
        for r in rows:
            from_seq = max(from_seq, int(r["seq"]) + 1)
            point = r.get("point") or ""
            parts = point.split("/")
            if r.get("kind") != "reading":
                continue
            if point.startswith("plant/") and r.get("value_json") is not None:
                v = r["value_json"]
                v = json.loads(v) if isinstance(v, str) else v
                out.setdefault(parts[1], []).append(int(v["seq"]))
            elif parts[-1] == "msg_seq":
                out.setdefault(parts[1], []).append(int(r["value_int"]))
