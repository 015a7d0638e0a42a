"""An OPC-UA server on FreeOpcUa's python-opcua (``opcua`` 0.98.13, a stack we did not write).

    python -m simulators.foreign.pyopcua_server PORT TICKLOG [--period MS] [--user NAME:PASSWORD]
        [--cert CERT.der --key KEY.pem --uri APPLICATION_URI] [--history]

Same address space and tick log as open62541_server.c: Objects/Plant holds one variable per
built-in type (NodeId ns=2;s=<Type>), all written every PERIOD ms with simulators/foreign/values.py's
value for tick k and one SourceTimestamp; "k <SourceTimestamp in 100 ns ticks since 1601>" goes
to TICKLOG. Double has an EngineeringUnits property. --user: UserName login only. --cert/--key:
Basic256Sha256 Sign and SignAndEncrypt endpoints too (python-opcua accepts every client
certificate: it has no trust list). --history: python-opcua's in-memory history of every variable.
Runs until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import datetime, timedelta, timezone

from opcua import Server, ua

from simulators.foreign.values import EU_DISPLAY, TYPES, value

EPOCH_1601 = datetime(1601, 1, 1, tzinfo=timezone.utc)


def ticks_1601(naive_utc: datetime) -> int:
    return (naive_utc.replace(tzinfo=timezone.utc) - EPOCH_1601) // timedelta(microseconds=1) * 10


def variant(type_name: str, k: int) -> ua.Variant:
    v = value(type_name, k)
    if type_name == "DateTime":
        v = v.replace(tzinfo=None)  # python-opcua encodes naive datetimes as UTC
    return ua.Variant(v, getattr(ua.VariantType, type_name))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("ticklog")
    p.add_argument("--period", type=float, default=100)
    p.add_argument("--user")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--uri", default="urn:freeopcua:python:server")
    p.add_argument("--history", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    server = Server()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/")
    server.set_application_uri(args.uri)
    policies = [ua.SecurityPolicyType.NoSecurity]
    if args.cert:
        server.load_certificate(args.cert)
        server.load_private_key(args.key)
        policies += [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
    server.set_security_policy(policies)
    if args.user:
        name, password = args.user.split(":", 1)
        server.set_security_IDs(["Username"])
        server.user_manager.set_user_manager(lambda _session, u, pw: (u, pw) == (name, password))
    idx = server.register_namespace("urn:zerobus-edge:interop:pyopcua")
    plant = server.get_objects_node().add_object(f"ns={idx};s=Plant", f"{idx}:Plant")
    nodes = {t: plant.add_variable(f"ns={idx};s={t}", f"{idx}:{t}", variant(t, 0)) for t in TYPES}
    eu = ua.EUInformation()
    eu.NamespaceUri, eu.UnitId = "http://www.opcfoundation.org/UA/units/un/cefact", 4408652
    eu.DisplayName, eu.Description = ua.LocalizedText(EU_DISPLAY), ua.LocalizedText("degree Celsius")
    nodes["Double"].add_property(f"ns={idx};s=Double.EngineeringUnits", "0:EngineeringUnits", eu)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if args.history:
        for node in nodes.values():
            server.historize_node_data_change(node, count=100_000)
    try:
        with open(args.ticklog, "a") as log:
            k = 0
            while True:
                now = datetime.utcnow()
                for t, node in nodes.items():
                    node.set_value(ua.DataValue(variant(t, k), sourceTimestamp=now))
                log.write(f"{k} {ticks_1601(now)}\n")
                log.flush()
                if stop.wait(args.period / 1000):
                    break
                k += 1
    finally:
        server.stop()


if __name__ == "__main__":
    main()
