"""Register maps that are not written point by point: CSV exports of PLC tools, and contiguous arrays.

Both produce plain point mappings (the keys of ``devices[].points[]``) with the
config path each one is reported under, so ``config.build_points`` validates them
exactly like hand-written points. Pure except ``read_text`` (the one file read).

- ``parse_csv(text, filename)``: one point per row. Headers are matched
  case-insensitively, ignoring spaces, ``_`` and ``-`` (``Data Type``,
  ``data_type``, ``DATATYPE`` are all ``type``); values take the spellings PLC tools
  use (``Holding Register``, ``HR``, ``3`` for the table; ``INT``, ``DINT``, ``REAL``,
  ``WORD`` for the type). The path of a row is ``<file>:<line>``; an error names the
  column as written in the file.
- ``expand_array(fields, path)``: ``count`` points named by a ``{i}`` template, from
  ``start`` on, ``step`` registers apart (default: the width of the type).

The column and value spellings are the tables in modbus/README.md ("Register maps").
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterator

from edge.configtypes import ConfigError
from edge.sources.modbus import decode as dec

# canonical key -> header spellings (normalised: lower case, no spaces/_/-)
COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name", "tag", "tagname", "pointname", "point", "signal", "variable"),
    "address": ("address", "addr", "register", "registeraddress", "modbusaddress", "startaddress", "reg"),
    "table": ("table", "registertype", "area", "functioncode", "fc", "objecttype"),
    "type": ("type", "datatype", "dtype", "format", "valuetype"),
    "order": ("order", "byteorder", "wordorder", "endian", "endianness", "swap"),
    "length": ("length", "len", "stringlength", "size"),
    "bit": ("bit", "bitindex", "bitnumber", "bitoffset"),
    "scale": ("scale", "scaling", "scalefactor", "multiplier", "factor", "gain"),
    "offset": ("offset",),
    "unit": ("unit", "units", "engunit", "engineeringunit", "engineeringunits", "uom"),
    "poll_interval": ("pollinterval", "interval", "scanrate", "pollrate"),
    "deadband": ("deadband",),
}
# Informational columns of common exports: read and ignored.
IGNORED = ("description", "comment", "comments", "notes", "note", "access", "rw", "r/w", "readwrite", "id")

TABLE_VALUES = {
    "coils": ("coils", "coil", "co", "0", "1", "fc1", "01", "0x", "do", "digitaloutput", "digitaloutputs"),
    "discrete_inputs": ("discreteinputs", "discreteinput", "di", "2", "fc2", "02", "1x", "inputstatus",
                        "digitalinput", "digitalinputs"),
    "input_registers": ("inputregisters", "inputregister", "ir", "4", "fc4", "04", "3x"),
    "holding_registers": ("holdingregisters", "holdingregister", "holding", "hr", "3", "fc3", "03", "4x"),
}
TYPE_VALUES = {
    "bool": ("bool", "boolean", "bit", "coil"),
    "int16": ("int16", "int", "short", "s16", "i16", "signed", "signed16"),
    "uint16": ("uint16", "uint", "word", "ushort", "u16", "unsigned", "unsigned16"),
    "int32": ("int32", "dint", "long", "s32", "i32", "signed32"),
    "uint32": ("uint32", "udint", "dword", "ulong", "u32", "unsigned32"),
    "int64": ("int64", "lint", "s64", "i64"),
    "uint64": ("uint64", "ulint", "lword", "u64"),
    "float32": ("float32", "real", "float", "f32", "single", "ieee754"),
    "float64": ("float64", "lreal", "double", "f64"),
    "string": ("string", "str", "text", "ascii", "char"),
}
_MODICON = re.compile(r"^[0134][0-9]{4,5}$")
_DECIMAL_COMMA = re.compile(r"^-?[0-9]+,[0-9]+$")
MAX_ARRAY = 10000


def norm(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text.strip().lower())


_HEADER = {spelling: key for key, spellings in COLUMNS.items() for spelling in spellings}
_TABLE = {spelling: key for key, spellings in TABLE_VALUES.items() for spelling in spellings}
_TYPE = {spelling: key for key, spellings in TYPE_VALUES.items() for spelling in spellings}


def read_text(path: str, where: str) -> str:
    """The file's text (a UTF-8 BOM, as Excel writes it, dropped); ConfigError at ``where`` if unreadable."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(where, f"cannot read register map {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(where, f"register map {path} is not UTF-8 text (byte {exc.start}); export it as UTF-8 CSV") from None


def _dialect(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _header(row: list[str], filename: str) -> list[str | None]:
    keys: list[str | None] = []
    seen: dict[str, str] = {}
    for col, raw in enumerate(row, 1):
        spelled = norm(raw)
        if not spelled or spelled in IGNORED:
            keys.append(None)
            continue
        key = _HEADER.get(spelled)
        if key is None:
            raise ConfigError(
                f"{filename}:1", f"column {col} {raw.strip()!r} is not a register map column; accepted: "
                f"{', '.join(COLUMNS)} (and their spellings in modbus/README.md); ignored: description, comment, notes, access")
        if key in seen:
            raise ConfigError(f"{filename}:1", f"columns {seen[key]!r} and {raw.strip()!r} both mean {key}")
        seen[key] = raw.strip()
        keys.append(key)
    for required in ("name", "address"):
        if required not in seen:
            raise ConfigError(f"{filename}:1", f"no {required} column (header row: {', '.join(c.strip() for c in row)})")
    return keys


_SPELLINGS = {
    "table": (_TABLE, "is not a table (coils, discrete_inputs, holding_registers, input_registers, or a function code 1..4)"),
    "type": (_TYPE, f"is not a type (one of {', '.join(dec.TYPES)}, or INT, DINT, REAL, WORD, ...)"),
}


def _value(key: str, text: str, delimiter: str, where: str, header: str) -> Any:
    if key in _SPELLINGS:
        spellings, problem = _SPELLINGS[key]
        value = spellings.get(norm(text))
        if value is None:
            raise ConfigError(where, f"column {header!r}: {text!r} {problem}")
        return value
    if key == "order":
        return text.strip().upper()
    if key == "address":
        text = text.strip()
        if text.isdigit() and not _MODICON.match(text):
            return int(text)
        return text  # Modicon notation ('40001'), hex ('0x10'), or an error parse_address names
    if key in ("scale", "offset", "deadband") and delimiter != "," and _DECIMAL_COMMA.match(text.strip()):
        return text.strip().replace(",", ".")
    return text.strip()


def parse_csv(text: str, filename: str) -> Iterator[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """-> (path ``file:line``, name, point mapping, key -> column header as written) per row.

    Empty rows and rows whose first cell starts with ``#`` are skipped; an empty cell
    means "not given" (the default applies).
    """
    delimiter = _dialect(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    keys: list[str | None] | None = None
    headers: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if keys is None:
            keys = _header(row, filename)
            headers = {k: row[i].strip() for i, k in enumerate(keys) if k}
            continue
        where = f"{filename}:{line}"
        if len(row) > len(keys) and any(cell.strip() for cell in row[len(keys):]):
            raise ConfigError(where, f"{len(row)} cells but the header has {len(keys)} columns")
        point: dict[str, Any] = {}
        for key, cell in zip(keys, row):
            if key and cell.strip():
                point[key] = _value(key, cell, delimiter, where, headers[key])
        for required in ("name", "address"):
            if required not in point:
                raise ConfigError(where, f"column {headers[required]!r} is empty")
        yield where, point["name"], point, headers
    if keys is None:
        raise ConfigError(filename, "the register map is empty (a header row and one row per point)")


def offset_address(value: Any, k: int) -> Any:
    """``value`` moved by ``k`` registers, in the same notation (integer, hex or Modicon)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value + k
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith("0x"):
            try:
                return int(text, 16) + k
            except ValueError:
                return value
        if _MODICON.match(text):
            return f"{text[0]}{int(text[1:]) + k:05d}"  # 6-digit form: register numbers up to 65536
    return value  # not an address: parse_address names the problem


def expand_array(fields: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """An ``arrays[]`` entry -> (path, point mapping) for each element; ConfigError names the field."""
    template, start, count = fields["name"], fields["start"], fields["count"]
    step, first = fields.get("step"), fields.get("first_index", 0)
    if "{i" not in template:
        raise ConfigError(f"{path}.name", f"must contain {{i}} (the element number), got {template!r}")
    if not 1 <= count <= MAX_ARRAY:
        raise ConfigError(f"{path}.count", f"must be 1..{MAX_ARRAY}, got {count}")
    dtype = fields.get("type") or ("bool" if fields.get("table") in ("coils", "discrete_inputs") else None)
    width = 1 if dtype in (None, "bool") else dec.register_count(dtype, fields.get("length") or 1)
    if step is None:
        step = width
    if step < 1:
        raise ConfigError(f"{path}.step", f"must be at least 1, got {step}")
    rest = {k: v for k, v in fields.items() if k not in ("name", "start", "count", "step", "first_index") and v is not None}
    out = []
    for k in range(count):
        try:
            name = template.format(i=first + k)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{path}.name", f"{template!r} is not a name template with {{i}}: {exc}") from None
        out.append((f"{path}[{k}]", {**rest, "name": name, "address": offset_address(start, k * step)}))
    return out


__all__ = ["COLUMNS", "IGNORED", "TABLE_VALUES", "TYPE_VALUES", "expand_array", "norm", "offset_address", "parse_csv", "read_text"]
