"""Register maps from CSV exports and from arrays: the same points as written by hand, and errors naming file:line and column."""

from pathlib import Path

import pytest

from edge.configtypes import ConfigError, build
from edge.sources.modbus.config import Config


def cfg(device: dict, **options) -> Config:
    return build(Config, {"name": "p", "type": "modbus", "host": "127.0.0.1",
                          "devices": [{"device_id": 1, **device}], **options}, "sources[0]")


def same(points):
    """A point as planned, without the config path it came from."""
    return [(p.name, p.table, p.address, p.count, p.dtype, p.order, p.bit, p.scale, p.offset, p.unit, p.interval)
            for p in points]


def write(tmp_path: Path, text: str, name: str = "plc1.csv", encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


HAND_WRITTEN = [
    {"name": "press/temperature", "address": "40001", "type": "int16", "scale": 0.1, "unit": "degC"},
    {"name": "press/pressure", "address": "40002", "type": "float32", "order": "CDAB", "unit": "bar"},
    {"name": "press/parts", "address": "40004", "type": "uint32"},
    {"name": "press/state", "address": "40006", "type": "string", "length": 4},
    {"name": "press/alarm", "address": "40010", "type": "bool", "bit": 3},
    {"name": "pump/flow", "address": "30001", "type": "float64", "scale": 0.5, "offset": -1.5, "unit": "m3/h"},
    {"name": "pump/running", "address": "00001"},
    {"name": "pump/fault", "address": "10001", "poll_interval": "5s"},
]


def test_a_csv_export_gives_the_same_points_as_the_hand_written_map(tmp_path):
    # What a PLC tool writes: Excel's BOM, European ';' and decimal commas, its own header spellings,
    # IEC type names, informational columns, a comment line and an empty line.
    text = (
        "\ufeffTag Name;Address;Data Type;Byte Order;Length;Bit;Scale;Offset;Units;Poll Interval;Description\n"
        "# exported by PLC-Tool 4.2\n"
        "press/temperature;40001;INT;;;;0,1;;degC;;Ram temperature\n"
        "press/pressure;40002;REAL;cdab;;;;;bar;;\n"
        "press/parts;40004;UDINT;;;;;;;;\n"
        "\n"
        "press/state;40006;String;;4;;;;;;\n"
        "press/alarm;40010;BOOL;;;3;;;;;bit 3 of the status word\n"
        "pump/flow;30001;LREAL;;;;0,5;-1,5;m3/h;;\n"
        "pump/running;00001;;;;;;;;;\n"
        "pump/fault;10001;;;;;;;;5s;\n"
    )
    from_csv = cfg({"register_map": write(tmp_path, text)})
    by_hand = cfg({"points": HAND_WRITTEN})
    assert same(from_csv.points) == same(by_hand.points)
    assert [(b.table, b.start, b.count) for b in from_csv.blocks] == [(b.table, b.start, b.count) for b in by_hand.blocks]
    assert from_csv.points[0].path.endswith("plc1.csv:3]")  # line 3 of the file (header, comment, row)


def test_table_column_with_plc_tool_spellings_and_function_codes(tmp_path):
    text = (
        "NAME,Register Type,REGISTER,DataType,Scale Factor,UOM\n"
        "a,Holding Register,0,DINT,,\n"
        "b,HR,2,word,0.01,bar\n"
        "c,4,7,int,,\n"
        "d,Coil,5,,,\n"
        "e,discrete input,6,,,\n"
        "f,input_registers,0x10,Float,,\n"
    )
    points = {p.name: p for p in cfg({"register_map": write(tmp_path, text)}).points}
    assert (points["a"].table, points["a"].address, points["a"].dtype) == ("holding_registers", 0, "int32")
    assert (points["b"].dtype, points["b"].scale, points["b"].unit) == ("uint16", 0.01, "bar")
    assert (points["c"].table, points["c"].address, points["c"].dtype) == ("input_registers", 7, "int16")  # FC4
    assert (points["d"].table, points["d"].dtype) == ("coils", "bool")
    assert points["e"].table == "discrete_inputs"
    assert (points["f"].table, points["f"].address, points["f"].dtype) == ("input_registers", 16, "float32")


def test_csv_rows_join_hand_written_points_and_are_checked_against_them(tmp_path):
    path = write(tmp_path, "name,address,type\nx,40005,int16\n")
    both = cfg({"points": [{"name": "y", "address": "40001"}], "register_map": path})
    assert [p.name for p in both.points] == ["y", "x"]
    with pytest.raises(ConfigError, match=r"duplicate point name 'y' \(also at sources\[0\]\.devices\[0\]\.points\[0\]\)"):
        cfg({"points": [{"name": "y", "address": "40001"}], "register_map": write(tmp_path, "name,address\ny,40009\n", "b.csv")})
    with pytest.raises(ConfigError, match=r"b\.csv:2\]\.address: x \(PDU holding_registers 0\.\.0\) overlaps y"):
        cfg({"points": [{"name": "y", "address": "40001"}], "register_map": write(tmp_path, "name,address\nx,40001\n", "b.csv")})


@pytest.mark.parametrize("text,message", [
    ("Name,Adress,Type\nx,40001,int16\n",
     r"register_map\[.*m\.csv:1\]: column 2 'Adress' is not a register map column; accepted: name, address, table"),
    ("Name,Type\nx,int16\n", r"m\.csv:1\]: no address column"),
    ("Tag,Address,Register,Type\nx,40001,2,int16\n", r"m\.csv:1\]: columns 'Address' and 'Register' both mean address"),
    ("Tag,Address,Data Type\nx,40001,int16\ny,40002,INTEGER\n",
     r"m\.csv:3\]: column 'Data Type': 'INTEGER' is not a type \(one of bool, int16"),
    ("Tag,Address,Type,Scale\nx,40001,int16,0\n", r"m\.csv:2\]: column 'Scale': must not be 0"),
    ("Tag,Address,Type,Scale\nx,40001,int16,ten\n", r"m\.csv:2\]: column 'Scale': expected a number"),
    ("Tag,Address,Type,Bit\nx,40001,bool,\n", r"m\.csv:2\]: column 'Bit': is required for type bool on a register"),
    ("Tag,Address,Type,Bit\nx,40001,bool,16\n", r"m\.csv:2\]: column 'Bit': must be 0\.\.15, got 16"),
    ("Tag,Address,Type,Order\nx,40001,float32,ACBD\n", r"m\.csv:2\]: column 'Order': "),
    ("Tag,Address,Register Type\nx,5,holding\ny,5,Memory\n", r"m\.csv:3\]: column 'Register Type': 'Memory' is not a table"),
    ("Tag,Address\nx,5\n", r"m\.csv:2\]: column 'table': is required for a numeric address"),
    ("Tag,Address\nx,40001\n,40002\n", r"m\.csv:3\]: column 'Tag' is empty"),
    ("Tag,Address\nx,40001,extra\n", r"m\.csv:2\]: 3 cells but the header has 2 columns"),
    ("\n\n", r"m\.csv\]: the register map is empty"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        cfg({"register_map": write(tmp_path, text, "m.csv")})


def test_unreadable_register_map_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"devices\[0\]\.register_map: cannot read register map .*nope\.csv: No such file"):
        cfg({"register_map": str(tmp_path / "nope.csv")})
    with pytest.raises(ConfigError, match=r"is not UTF-8 text .* export it as UTF-8 CSV"):
        cfg({"register_map": write(tmp_path, "name,address\nTemp\xb0,40001\n", "latin.csv", "latin-1")})


def test_an_array_expands_to_the_points_written_by_hand():
    array = cfg({"arrays": [{"name": "temp_{i}", "start": "40001", "count": 67, "type": "int16", "scale": 0.1, "unit": "degC"}]})
    by_hand = cfg({"points": [{"name": f"temp_{i}", "address": f"4{i + 1:04d}", "type": "int16", "scale": 0.1, "unit": "degC"}
                              for i in range(67)]})
    assert len(array.points) == 67 and same(array.points) == same(by_hand.points)
    assert [(b.start, b.count) for b in array.blocks] == [(0, 67)]  # one block read
    assert array.points[5].path.endswith(".devices[0].arrays[0][5]")


def test_arrays_of_wide_types_steps_indexes_and_numeric_addresses():
    c = cfg({"arrays": [
        {"name": "zone{i:02d}/flow", "start": 100, "table": "input_registers", "count": 3, "type": "float32", "order": "CDAB"},
        {"name": "zone{i}/setpoint", "start": "0x200", "table": "holding_registers", "count": 3, "type": "int32",
         "step": 4, "first_index": 1},
        {"name": "valve{i}", "start": "00001", "count": 4},
    ]}, address_base=1)
    got = {p.name: (p.table, p.address, p.count, p.order) for p in c.points}
    assert got["zone00/flow"] == ("input_registers", 99, 2, "CDAB")  # address_base 1: 100 is PDU 99
    assert got["zone02/flow"] == ("input_registers", 103, 2, "CDAB")
    assert [got[f"zone{i}/setpoint"][1] for i in (1, 2, 3)] == [0x1FF, 0x203, 0x207]
    assert [got[f"valve{i}"][:2] for i in range(4)] == [("coils", i) for i in range(4)]


@pytest.mark.parametrize("array,message", [
    ({"name": "temp", "start": "40001", "count": 2}, r"arrays\[0\]\.name: must contain \{i\}"),
    ({"name": "t{i}", "start": "40001", "count": 0}, r"arrays\[0\]\.count: must be 1\.\.10000"),
    ({"name": "t{i}", "start": "40001", "count": 2, "step": 0}, r"arrays\[0\]\.step: must be at least 1"),
    ({"name": "t{i:q}", "start": "40001", "count": 2}, r"arrays\[0\]\.name: 't\{i:q\}' is not a name template"),
    ({"name": "t{i}", "start": "465535", "count": 3}, r"arrays\[0\]\[2\]\.address: '465537': register number must be 1\.\.65536"),
    ({"name": "t{i}", "start": "40001", "count": 2, "type": "float32", "step": 1},
     r"arrays\[0\]\[1\]\.address: t1 \(PDU holding_registers 1\.\.2\) overlaps t0"),
    ({"name": "t{i}", "start": "40001", "count": 2, "type": "int17"}, r"arrays\[0\]\.type"),
    ({"name": "t{i}", "start": "40001", "count": 2, "type": "bool"}, r"arrays\[0\]\[0\]\.bit: is required"),
])
def test_array_errors_name_the_array_or_the_element(array, message):
    with pytest.raises(ConfigError, match=message):
        cfg({"arrays": [array]})


def test_a_device_without_any_point_source_is_refused():
    with pytest.raises(ConfigError, match=r"devices\[0\]\.points: a device needs at least one point \(points, arrays or register_map\)"):
        cfg({})
