"""Failure classification, on the texts the SDK 1.10.0 really produces (captured against a local server)."""

import pytest

from edge.outcome import Blocked, RejectRecord, Retry, classify, grpc_code

CASES = [
    # (message, nonretriable, phase, expected type)
    ("Failed to create stream: code: 'The service is currently unavailable', message: \"down\".", False, "create", Retry),
    ("Stream is closed: code: 'The service is currently unavailable', message: \"boom\"", False, "ack", Retry),
    ("Stream is closed: code: 'Some resource has been exhausted', message: \"quota\"", False, "ack", Retry),
    ("Stream is closed: code: 'Internal error', message: \"Stream closed\"", False, "ingest", Retry),
    ("Stream is closed: code: 'Deadline expired before operation could complete', message: \"Server ack timeout\"", False, "ack", Retry),
    ("Stream is closed", False, "ingest", Retry),
    ("Stream is closed", True, "ingest", Retry),
    ("Token fetch failed: Unity catalog server error (503): down", False, "create", Retry),
    ("Token fetch failed: Unity catalog server error (500): oops", False, "create", Retry),
    ("Token fetch failed: error sending request for url (http://127.0.0.1:1/oidc/v1/token)", False, "create", Retry),
    ("Specified UC token is in invalid format: Client error (429): slow down", True, "create", Retry),
    ("Specified UC token is in invalid format: Client error (401): bad creds.", True, "create", Blocked),
    ("Specified UC token is in invalid format: Client error (403): forbidden", True, "create", Blocked),
    ("Failed to create stream: code: 'The caller does not have permission to execute the specified operation', message: \"no MODIFY\".", True, "create", Blocked),
    ("Failed to create stream: code: 'Some requested entity was not found', message: \"table main.edge.readings not found\".", True, "create", Blocked),
    ("Failed to create stream: code: 'The request does not have valid authentication credentials', message: \"expired\".", True, "create", Blocked),
    ("Failed to create stream: code: 'Operation is not implemented or not supported', message: \"\".", True, "create", Blocked),
    ("Failed to create stream: code: 'Client specified an invalid argument', message: \"descriptor does not match\".", True, "create", Blocked),
    ("Invalid argument: record 3 bad value.", True, "ack", RejectRecord),
    ("Stream is closed: code: 'Client specified an invalid argument', message: \"record rejected\"", True, "ack", RejectRecord),
    # The server's free text must not override the code: "not found" inside an INVALID_ARGUMENT message.
    ("Invalid argument: required field not found in record 7.", True, "ack", RejectRecord),
    ("Invalid argument: record does not match the table schema.", True, "ack", Blocked),
    # An INVALID_ARGUMENT from an ack anomaly is a server bug, not a bad record.
    ("Invalid argument: Acknowledgement claims offset 9 but only 3 were sent", True, "ack", Retry),
    ("status: PermissionDenied, message: \"nope\"", True, "ack", Blocked),
    ("something nobody has seen before", False, "ack", Retry),
    ("something nobody has seen before", True, "ack", Retry),
    ("", True, "ingest", Retry),
]


@pytest.mark.parametrize("message,nonretriable,phase,expected", CASES)
def test_classify(message, nonretriable, phase, expected):
    out = classify(message, nonretriable=nonretriable, phase=phase)
    assert type(out) is expected, out
    assert out.reason  # every outcome says why, for the state page


@pytest.mark.parametrize("message,graceful", [
    ("Stream is closed: code: 'The operation completed successfully', message: \"Stream closed by server without errors.\"", True),
    ("Stream closed gracefully by server", True),
    ("Stream is closed: code: 'The service is currently unavailable', message: \"boom\"", False),
    ("Stream is closed: code: 'Internal error', message: \"Stream closed\"", False),
])
def test_a_server_side_rotation_is_a_graceful_retry(message, graceful):
    out = classify(message, phase="ack")
    assert isinstance(out, Retry) and out.graceful is graceful


@pytest.mark.parametrize("message,throttled", [
    # What SDK 1.10 reports when the service refuses a stream over its quota (seen against the emulator).
    ("Stream is closed: code: 'Some resource has been exhausted', message: \"stream over its quota "
     "(3000 records/s, 0 bytes/s) at offset_id 16\"", True),
    ("Stream is closed: code: 'The service is currently unavailable', message: \"boom\"", False),
])
def test_a_quota_refusal_is_a_throttle_not_an_outage(message, throttled):
    out = classify(message, phase="ack")
    assert isinstance(out, Retry) and out.throttled is throttled and not out.graceful


def test_blocked_reason_keeps_the_server_message():
    out = classify("Failed to create stream: code: 'Some requested entity was not found', "
                   "message: \"table main.edge.readings not found\".", nonretriable=True, phase="create")
    assert "main.edge.readings not found" in out.reason


def test_reason_is_bounded():
    out = classify("x" * 10_000)
    assert len(out.reason) < 400


@pytest.mark.parametrize("text,code", [
    ("code: 'Client specified an invalid argument', message: \"x\"", "INVALID_ARGUMENT"),
    ("Invalid argument: x", "INVALID_ARGUMENT"),
    ("code: 'Some requested entity was not found'", "NOT_FOUND"),
    ("grpc status: RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"),
    ("no code here", None),
])
def test_grpc_code(text, code):
    assert grpc_code(text) == code
