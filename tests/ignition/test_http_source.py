"""The http source against a real `edge run` process and a real spool file."""

from __future__ import annotations

import http.client
import json

from edge.encode import appliance_prefix, decode, frame
from edge.spool import SpoolReader

from .conftest import TOKEN

NOW_MS = 1_763_900_000_000


def event(i: int, **kw) -> dict:
    e = {"tagPath": f"Line1/Counter{i % 7}", "tagProvider": "default", "value": i, "quality": "Good",
         "qualityCode": 192, "timestamp": NOW_MS + i, "dataType": "long"}
    e.update(kw)
    return e


def spooled(path) -> list:
    with SpoolReader(path) as r:
        rows = r.peek(0, 1_000_000)
    prefix = appliance_prefix("plant-test")
    return [decode(frame(prefix, seq, body)) for seq, body in rows]


# What the Ignition 8.1 tag change script builds under Jython 2.7 and serialises with system.util.jsonEncode:
# a long timestamp, unicode text, None for a value that is not there, a dataset as nested lists.
JYTHON_BATCH = json.loads("""[
 {"tagPath": "Plant/Tank1/Level", "tagProvider": "default", "value": 73.25, "quality": "Good",
  "qualityCode": 192, "timestamp": 1763900000123, "dataType": "float"},
 {"tagPath": "Plant/Pump1/Running", "tagProvider": "default", "value": true, "quality": "Good",
  "qualityCode": 192, "timestamp": 1763900000124, "dataType": "bool"},
 {"tagPath": "Plant/Batch/Recipe", "tagProvider": "default", "value": "Cr\\u00e8me \\u2713", "quality": "Good",
  "qualityCode": 192, "timestamp": 1763900000125, "dataType": "unicode"},
 {"tagPath": "Plant/Batch/Count", "tagProvider": "default", "value": 9007199254740993, "quality": "Good",
  "qualityCode": 192, "timestamp": 1763900000126, "dataType": "long"},
 {"tagPath": "Plant/Sensor9/Temp", "tagProvider": "default", "value": null, "quality": "Bad_NotConnected",
  "qualityCode": 2149580800, "timestamp": 1763900000127, "dataType": "NoneType"},
 {"tagPath": "Plant/Report/Shift", "tagProvider": "default", "value": [["a", 1], ["b", 2]], "quality": "Good",
  "qualityCode": 192, "timestamp": 1763900000128.0, "dataType": "Dataset"}
]""")


def test_script_batch_lands_in_the_spool_typed(edge_http):
    edge = edge_http()
    status, body, _ = edge.post_batch(JYTHON_BATCH)
    assert status == 200, body
    assert body["success"] is True and body["accepted"] == 6 and body["quarantined"] == 0
    assert body["lastSeq"] - body["firstSeq"] == 5
    rows = {r.point: r for r in spooled(edge.spool_path)}
    assert rows["[default]Plant/Tank1/Level"].value_double == 73.25
    assert rows["[default]Plant/Pump1/Running"].value_bool is True
    assert rows["[default]Plant/Batch/Recipe"].value_string == "Cr\u00e8me \u2713"
    assert rows["[default]Plant/Batch/Count"].value_int == 9007199254740993
    bad = rows["[default]Plant/Sensor9/Temp"]
    assert bad.quality == "BAD" and bad.status_code == 2149580800 and not bad.HasField("value_double")
    assert rows["[default]Plant/Report/Shift"].value_json == '[["a",1],["b",2]]'
    assert rows["[default]Plant/Tank1/Level"].source_ts == 1763900000123000


def test_single_event_route(edge_http):
    edge = edge_http()
    status, body, _ = edge.request("POST", "/system/zerobus/ingest", event(1),
                                   {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 200 and body["accepted"] == 1
    assert len(spooled(edge.spool_path)) == 1


def test_auth_is_required(edge_http):
    edge = edge_http()
    assert edge.post_batch([event(1)], token=None)[0] == 401
    assert edge.post_batch([event(1)], token="wrong-token-wrong-token")[0] == 401
    assert edge.request("GET", "/system/zerobus/diagnostics")[0] == 401
    # The header Ignition's system.net.httpPost can send without building an Authorization value.
    status, body, _ = edge.post_batch([event(1)], token=TOKEN, header="X-Edge-Token")
    assert status == 200 and body["accepted"] == 1
    assert len(spooled(edge.spool_path)) == 1


def test_health_and_diagnostics_use_the_guide_field_names(edge_http):
    edge = edge_http()
    status, health, _ = edge.request("GET", "/system/zerobus/health")
    assert status == 200 and health["status"] == "ok" and health["moduleLoaded"] is True and health["version"]
    edge.post_batch([event(i) for i in range(10)])
    status, diag, _ = edge.request("GET", "/system/zerobus/diagnostics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    for key in ("moduleVersion", "enabled", "zerobusConnected", "totalEventsReceived", "totalEventsSent",
                "totalEventsFailed", "queueSize", "lastEventTime"):
        assert key in diag
    assert diag["totalEventsReceived"] == 10
    assert diag["queueSize"] == 10  # spool depth: nothing forwarded (forwarding is off here)
    assert diag["zerobusConnected"] is False


def test_invalid_events_are_quarantined_and_the_rest_accepted(edge_http):
    edge = edge_http()
    batch = [event(0), event(1, timestamp="yesterday"), event(2), {"value": 3}, "junk", event(5)]
    status, body, _ = edge.post_batch(batch)
    assert status == 200
    assert (body["accepted"], body["quarantined"]) == (3, 3)
    assert sorted(e["index"] for e in body["errors"]) == [1, 3, 4]
    assert len(spooled(edge.spool_path)) == 3
    with SpoolReader(edge.spool_path) as r:
        q = r.quarantined(10)
    assert len(q) == 3
    reasons = " | ".join(x["reason"] for x in q)
    assert "timestamp" in reasons and "tagPath" in reasons and "not an object" in reasons
    assert all(x["source"] == "gw" for x in q)


def test_a_body_that_is_not_json_is_quarantined_not_bounced(edge_http):
    edge = edge_http()
    status, body, _ = edge.post_batch(b'[{"tagPath": "x", "value": 1,,]')
    assert status == 200 and body["quarantined"] == 1 and body["accepted"] == 0
    status, body, _ = edge.post_batch(b"\xff\xfe not utf-8")
    assert status == 200 and body["quarantined"] == 1
    with SpoolReader(edge.spool_path) as r:
        q = r.quarantined(10)
    assert len(q) == 2 and all("JSON" in x["reason"] for x in q)
    assert q[-1]["raw"].startswith(b'[{"tagPath"')


def test_oversized_body_refused_cleanly_and_the_next_request_works(edge_http):
    edge = edge_http(http={"max_body_bytes": 4096})
    big = [event(i, tagPath="Line1/" + "x" * 200) for i in range(100)]
    status, body, resp = edge.post_batch(big)
    assert status == 413 and "smaller batches" in body["error"]
    assert edge.post_batch([event(1)])[0] == 200
    assert len(spooled(edge.spool_path)) == 1


def test_too_many_events_refused(edge_http):
    edge = edge_http(http={"max_batch_events": 50})
    assert edge.post_batch([event(i) for i in range(51)])[0] == 413
    assert spooled(edge.spool_path) == []


def test_keep_alive_connection_carries_many_batches(edge_http):
    edge = edge_http()
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    for b in range(20):
        status, body, _ = edge.post_batch([event(b * 50 + i) for i in range(50)], conn=conn)
        assert status == 200 and body["accepted"] == 50
    conn.close()
    assert len(spooled(edge.spool_path)) == 1000


def test_sigkill_between_requests_loses_nothing_answered_200(edge_http):
    edge = edge_http()
    answered: list[int] = []
    n = 0
    for round_ in range(4):
        for _ in range(5):
            batch = [event(n + i) for i in range(100)]
            status, body, _ = edge.post_batch(batch)
            assert status == 200
            answered.extend(range(n, n + 100))
            n += 100
        edge.kill()
        edge.start()
    values = sorted(r.value_int for r in spooled(edge.spool_path))
    assert values == answered


def test_full_spool_under_block_answers_503_with_retry_after(edge_http):
    edge = edge_http(spool={"max_bytes": "1MiB", "when_full": "block"})
    big = [event(i, tagPath=f"Line1/{'y' * 400}/{i}") for i in range(400)]
    statuses = []
    for _ in range(30):
        status, body, resp = edge.post_batch(big)
        statuses.append(status)
        if status == 503:
            assert resp.getheader("Retry-After") == "5"
            assert "spool full" in body["error"]
            break
    assert statuses[-1] == 503 and statuses[0] == 200
    accepted = 400 * (len(statuses) - 1)
    assert len(spooled(edge.spool_path)) == accepted  # nothing half-stored from the refused batch
