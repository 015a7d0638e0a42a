"""The bronze table's schema, derived from the reading message (pure).

``proto/reading.proto`` is the single source of truth; ``proto/readings.sql`` is
the same schema written as Delta DDL for people, and tests/test_schema.py keeps
the file equal to what ``ddl()`` renders. Columns ending in ``_ts`` are
TIMESTAMP (int64 microseconds on the wire) and ``value_json`` is VARIANT (JSON
text on the wire), as ZeroBus maps them.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from edge.pb.reading_pb2 import Reading

_SCALAR = {
    FieldDescriptor.TYPE_STRING: "STRING",
    FieldDescriptor.TYPE_INT64: "BIGINT",
    FieldDescriptor.TYPE_INT32: "INT",
    FieldDescriptor.TYPE_DOUBLE: "DOUBLE",
    FieldDescriptor.TYPE_FLOAT: "FLOAT",
    FieldDescriptor.TYPE_BOOL: "BOOLEAN",
    FieldDescriptor.TYPE_BYTES: "BINARY",
}
VARIANT_COLUMNS = frozenset({"value_json"})


def columns(descriptor: Descriptor = Reading.DESCRIPTOR) -> list[tuple[str, str, bool]]:
    """(name, Delta type, NOT NULL) for every field, in field-number order."""
    out = []
    for f in sorted(descriptor.fields, key=lambda f: f.number):
        if f.name in VARIANT_COLUMNS:
            sql_type = "VARIANT"
        elif f.name.endswith("_ts") and f.type == FieldDescriptor.TYPE_INT64:
            sql_type = "TIMESTAMP"
        else:
            sql_type = _SCALAR[f.type]
        out.append((f.name, sql_type, f.is_required))
    return out


HEADER = """-- The bronze table that ZeroBus writes into. Replace {table} with
-- catalog.schema.table (`edge table ddl` does it for you). Must match
-- proto/reading.proto column for column: ZeroBus has no schema evolution.
"""


def ddl(table: str = "{table}", descriptor: Descriptor = Reading.DESCRIPTOR, header: bool = True) -> str:
    cols = ",\n".join(f"  {n} {t}{' NOT NULL' if req else ''}" for n, t, req in columns(descriptor))
    body = f"CREATE TABLE IF NOT EXISTS {table} (\n{cols}\n)\nUSING DELTA\nCLUSTER BY (appliance_id, seq);\n"
    return (HEADER if header else "") + body
