"""Table schemas: Delta DDL -> columns, and the 1:1 check of a stream's protobuf descriptor.

Pure functions, no I/O beyond reading the DDL text handed in. The type mapping is
the one ZeroBus documents (Delta -> proto2); NOT NULL columns need proto2
``required`` fields and nullable columns ``optional`` ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto
PROTO_TYPE_NAMES = {
    F.TYPE_DOUBLE: "double",
    F.TYPE_FLOAT: "float",
    F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32",
    F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32",
    F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string",
    F.TYPE_GROUP: "group",
    F.TYPE_MESSAGE: "message",
    F.TYPE_BYTES: "bytes",
    F.TYPE_UINT32: "uint32",
    F.TYPE_ENUM: "enum",
    F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64",
    F.TYPE_SINT32: "sint32",
    F.TYPE_SINT64: "sint64",
}

# Delta type -> proto2 scalar type (ZeroBus documentation, 2026).
DELTA_TO_PROTO = {
    "TINYINT": F.TYPE_INT32,
    "SMALLINT": F.TYPE_INT32,
    "INT": F.TYPE_INT32,
    "INTEGER": F.TYPE_INT32,
    "DATE": F.TYPE_INT32,
    "BIGINT": F.TYPE_INT64,
    "LONG": F.TYPE_INT64,
    "TIMESTAMP": F.TYPE_INT64,
    "TIMESTAMP_NTZ": F.TYPE_INT64,
    "FLOAT": F.TYPE_FLOAT,
    "REAL": F.TYPE_FLOAT,
    "DOUBLE": F.TYPE_DOUBLE,
    "STRING": F.TYPE_STRING,
    "VARIANT": F.TYPE_STRING,
    "BOOLEAN": F.TYPE_BOOL,
    "BINARY": F.TYPE_BYTES,
}

# Python types a JSON record may carry for each proto type.
_JSON_TYPES = {
    F.TYPE_INT32: (int,),
    F.TYPE_INT64: (int, str),  # proto3 JSON writes int64 as a string
    F.TYPE_FLOAT: (int, float),
    F.TYPE_DOUBLE: (int, float),
    F.TYPE_STRING: (str,),
    F.TYPE_BOOL: (bool,),
    F.TYPE_BYTES: (str,),
}

_INT_RANGE = {F.TYPE_INT32: (-(1 << 31), (1 << 31) - 1), F.TYPE_INT64: (-(1 << 63), (1 << 63) - 1)}

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class SchemaError(ValueError):
    """The DDL cannot be used as a table schema."""


@dataclass(frozen=True)
class Column:
    name: str
    delta_type: str  # as written, upper case, e.g. BIGINT or ARRAY<STRING>
    not_null: bool
    proto_type: int
    repeated: bool = False

    def describe(self) -> str:
        return f"{self.delta_type}{' NOT NULL' if self.not_null else ''}"

    def expected_field(self) -> str:
        label = "repeated" if self.repeated else ("required" if self.not_null else "optional")
        return f"{label} {PROTO_TYPE_NAMES[self.proto_type]}"


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _split_top_level(body: str) -> list[str]:
    parts, depth, cur, quoted = [], 0, [], False
    for ch in body:
        if ch == "'":
            quoted = not quoted
        elif quoted:
            pass
        elif ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_ddl(sql: str) -> list[Column]:
    """Columns of the first CREATE TABLE statement in ``sql`` (Delta dialect, scalar and ARRAY types)."""
    text = _strip_comments(sql)
    m = re.search(r"CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s*\(", text, re.I)
    if not m:
        raise SchemaError("no CREATE TABLE ... ( found in the DDL")
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    if depth:
        raise SchemaError("unbalanced parentheses in the CREATE TABLE column list")
    columns: list[Column] = []
    for item in _split_top_level(text[m.end() : i - 1]):
        if re.match(r"(CONSTRAINT|PRIMARY\s+KEY|FOREIGN\s+KEY)\b", item, re.I):
            continue
        columns.append(_parse_column(item))
    if not columns:
        raise SchemaError("the CREATE TABLE column list is empty")
    names = [c.name.lower() for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaError(f"duplicate column names: {', '.join(dupes)}")
    return columns


def _parse_column(item: str) -> Column:
    m = re.match(r"`?([^`\s]+)`?\s+(.+)$", item, re.S)
    if not m:
        raise SchemaError(f"cannot read column definition {item!r}")
    name, rest = m.group(1), m.group(2)
    if not _NAME.match(name):
        raise SchemaError(f"column name {name!r}: ZeroBus allows ASCII letters, digits and underscores only")
    rest = re.sub(r"\s+COMMENT\s+'(?:[^']|'')*'", "", rest, flags=re.I)
    not_null = bool(re.search(r"\bNOT\s+NULL\b", rest, re.I))
    type_text = re.sub(r"\bNOT\s+NULL\b", "", rest, flags=re.I).strip().upper().replace(" ", "")
    repeated = False
    inner = type_text
    am = re.fullmatch(r"ARRAY<(.+)>", type_text)
    if am:
        repeated, inner = True, am.group(1)
    if inner not in DELTA_TO_PROTO:
        raise SchemaError(f"column {name!r}: type {type_text} is not supported by the emulator (scalar types and ARRAY<scalar>)")
    return Column(name, type_text, not_null, DELTA_TO_PROTO[inner], repeated)


def load_ddl(path: str) -> list[Column]:
    """Columns from a DDL file; when our own proto/readings.sql is not on disk (an installed
    package), the same DDL rendered from the reading message (edge.schema: the source of truth)."""
    if not os.path.exists(path) and os.path.basename(path) == "readings.sql":
        from edge.schema import ddl

        return parse_ddl(ddl())
    with open(path, encoding="utf-8") as fh:
        return parse_ddl(fh.read())


def _field_label(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return {F.LABEL_REQUIRED: "required", F.LABEL_REPEATED: "repeated"}.get(field.label, "optional")


def compare_descriptor(columns: list[Column], descriptor: descriptor_pb2.DescriptorProto) -> list[str]:
    """Every difference between a stream's message and the table, in column order. Empty when 1:1."""
    diffs: list[str] = []
    fields = list(descriptor.field)
    if len(fields) != len(columns):
        diffs.append(f"message {descriptor.name!r} has {len(fields)} fields, the table has {len(columns)} columns")
    by_name = {f.name.lower(): f for f in fields}
    col_names = {c.name.lower() for c in columns}
    for col in columns:
        field = by_name.get(col.name.lower())
        if field is None:
            diffs.append(f"column {col.name!r} ({col.describe()}) has no field in the message")
            continue
        got_type = PROTO_TYPE_NAMES.get(field.type, str(field.type))
        if field.type != col.proto_type:
            diffs.append(
                f"field {field.name!r} is {got_type}, column {col.name!r} is {col.delta_type} "
                f"(needs {PROTO_TYPE_NAMES[col.proto_type]})"
            )
        label = _field_label(field)
        want = "repeated" if col.repeated else ("required" if col.not_null else "optional")
        if label != want:
            null_word = "NOT NULL" if col.not_null else "nullable"
            if col.repeated or label == "repeated":
                null_word = col.delta_type
            diffs.append(f"field {field.name!r} is {label}, column {col.name!r} is {null_word} (needs {want})")
    for field in fields:
        if field.name.lower() not in col_names:
            diffs.append(
                f"field {field.name!r} ({_field_label(field)} {PROTO_TYPE_NAMES.get(field.type, field.type)}) "
                "has no column in the table"
            )
    return diffs


def check_json_record(columns: list[Column], obj: object) -> str | None:
    """Why a decoded JSON record does not fit the table, or None when it does."""
    if not isinstance(obj, dict):
        return f"a JSON record must be an object, got {type(obj).__name__}"
    by_name = {c.name: c for c in columns}
    unknown = sorted(k for k in obj if k not in by_name)
    if unknown:
        return f"unknown column(s) {', '.join(unknown)}"
    for col in columns:
        value = obj.get(col.name)
        if value is None:
            if col.not_null:
                return f"missing NOT NULL column {col.name!r}"
            continue
        allowed = _JSON_TYPES[col.proto_type]
        values = value if col.repeated else [value]
        if col.repeated and not isinstance(value, list):
            return f"column {col.name!r} ({col.delta_type}) needs a JSON array"
        for v in values:
            bad = not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed)
            if not bad and isinstance(v, str) and col.proto_type == F.TYPE_INT64:
                bad = not re.fullmatch(r"-?\d{1,19}", v)
            if not bad and col.proto_type in _INT_RANGE and not isinstance(v, bool) and isinstance(v, (int, str)):
                lo, hi = _INT_RANGE[col.proto_type]
                bad = not lo <= int(v) <= hi
            if bad:
                return f"column {col.name!r} ({col.delta_type}) cannot hold {type(v).__name__} {v!r:.40}"
    return None
