"""Block planning, address notation, overlap detection, config errors, report-by-exception."""

import pytest

from edge.configtypes import ConfigError, build
from edge.sources.modbus.collector import Config
from edge.sources.modbus.plan import PointSpec, ReportFilter, parse_address, plan_blocks


def cfg(points, **options):
    return build(Config, {"name": "p", "type": "modbus", "host": "127.0.0.1",
                          "devices": [{"device_id": 1, "points": points}], **options}, "sources[0]")


def pt(name, address, count=1, table="holding_registers", interval=1.0, device=1, bit=None):
    return PointSpec(name, f"x.{name}", device, table, address, count, "uint16", "ABCD", bit, 1.0, 0.0, None, interval, 0.0)


@pytest.mark.parametrize("value,table,base,expected", [
    (0, "holding_registers", 0, ("holding_registers", 0)),
    (1, "holding_registers", 1, ("holding_registers", 0)),
    (65536, "input_registers", 1, ("input_registers", 65535)),
    ("0x10", "coils", 0, ("coils", 16)),
    ("40001", None, 0, ("holding_registers", 0)),
    ("40001", None, 1, ("holding_registers", 0)),  # Modicon is 1-based whatever address_base says
    ("49999", "holding_registers", 0, ("holding_registers", 9998)),
    ("30010", None, 0, ("input_registers", 9)),
    ("10001", None, 0, ("discrete_inputs", 0)),
    ("00020", None, 0, ("coils", 19)),
    ("465536", None, 0, ("holding_registers", 65535)),
])
def test_address_notations(value, table, base, expected):
    assert parse_address(value, table, base, "pt") == expected


@pytest.mark.parametrize("value,table,base,message", [
    (0, "holding_registers", 1, "pt.address: 0 is out of range 1..65536"),
    (-1, "coils", 0, "pt.address: -1 is out of range"),
    ("40000", None, 0, "register number must be 1..9999"),
    ("20001", None, 0, "Modicon notation"),
    ("4x0001", None, 0, "expected an integer"),
    (True, "coils", 0, "expected an address"),
])
def test_bad_addresses_name_the_field(value, table, base, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as info:
        parse_address(value, table, base, "pt")
    assert info.value.path.startswith("pt.")


def test_blocks_are_contiguous_and_respect_limits():
    points = [pt(f"r{i}", i) for i in range(300)]
    blocks = plan_blocks(points)
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    bits = [pt(f"c{i}", i, table="coils") for i in range(2500)]
    assert [(b.start, b.count) for b in plan_blocks(bits)] == [(0, 2000), (2000, 500)]
    # a multi-register value never straddles two reads
    wide = [pt("a", 0, 4), pt("b", 4, 4)] + [pt(f"w{i}", 8 + 4 * i, 4) for i in range(40)]
    for b in plan_blocks(wide):
        assert b.count <= 125 and all(b.start <= p.address and p.end <= b.start + b.count for p in b.points)


def test_gaps_split_blocks_unless_allowed():
    points = [pt("a", 0), pt("b", 5), pt("c", 200)]
    assert [(b.start, b.count) for b in plan_blocks(points)] == [(0, 1), (5, 1), (200, 1)]
    assert [(b.start, b.count) for b in plan_blocks(points, max_gap=10)] == [(0, 6), (200, 1)]


def test_blocks_split_by_device_table_and_interval():
    points = [pt("a", 0), pt("b", 1, interval=0.1), pt("c", 2, device=2), pt("d", 3, table="input_registers")]
    keys = {(b.device_id, b.table, b.interval) for b in plan_blocks(points)}
    assert len(keys) == 4


def test_config_plans_blocks_and_inherits_options():
    c = cfg([
        {"name": "t1", "address": "40001", "type": "float32"},
        {"name": "t2", "address": "40003", "type": "float32", "order": "CDAB"},
        {"name": "fast", "address": "40010", "poll_interval": "100ms"},
        {"name": "v", "address": "00001"},
    ], order="DCBA", poll_interval="2s")
    by = {p.name: p for p in c.points}
    assert by["t1"].order == "DCBA" and by["t2"].order == "CDAB"
    assert by["t1"].interval == 2.0 and by["fast"].interval == 0.1
    assert by["v"].dtype == "bool" and by["v"].table == "coils"
    assert sorted((b.table, b.start, b.count) for b in c.blocks) == [
        ("coils", 0, 1), ("holding_registers", 0, 4), ("holding_registers", 9, 1)]


@pytest.mark.parametrize("points,options,message", [
    ([{"name": "a", "address": "40001", "type": "float32"}, {"name": "b", "address": "40002"}], {},
     "sources[0].devices[0].points[1].address: b (PDU holding_registers 1..1) overlaps a"),
    ([{"name": "a", "address": "40001", "type": "bool", "bit": 1}, {"name": "b", "address": "40001", "type": "bool", "bit": 1}], {},
     "sources[0].devices[0].points[1].bit: b reads the same bit 1"),
    ([{"name": "a", "address": "40001"}, {"name": "a", "address": "40002"}], {},
     "sources[0].devices[0].points[1].name: duplicate point name 'a'"),
    ([{"name": "a", "address": "40001", "type": "float33"}], {}, "sources[0].devices[0].points[0].type: must be one of"),
    ([{"name": "a", "address": "40001", "order": "ADCB"}], {}, "sources[0].devices[0].points[0].order: must be one of"),
    ([{"name": "a", "address": "40001", "scale": 0}], {}, "sources[0].devices[0].points[0].scale: must not be 0"),
    ([{"name": "a", "address": "40001", "length": 3}], {}, "sources[0].devices[0].points[0].length: only applies to type string"),
    ([{"name": "a", "address": "40001", "type": "string", "length": 126}], {}, "points[0].length: must be 1..125"),
    ([{"name": "a", "address": "40001"}], {"host": ""}, "sources[0].host: is required"),
    ([{"name": "a", "address": "40001"}], {"port": 70000}, "sources[0].port: must be 1..65535"),
    ([{"name": "a", "address": "40001"}], {"max_block_registers": 200}, "sources[0].max_block_registers: must be 1..125"),
    ([{"name": "a", "address": "40001"}], {"connections": 0}, "sources[0].connections: must be 1..16"),
    ([{"name": "a", "address": "40001"}], {"isolate_reads": -1}, "sources[0].isolate_reads: must be 0..1000"),
    ([{"name": "a", "address": "40001"}], {"reprobe_interval": "0.1ms"}, "sources[0].reprobe_interval"),
    ([{"name": "a", "address": "40001"}], {"address_base": 2}, "sources[0].address_base: must be one of 0, 1"),
    ([{"name": "a", "adress": "40001"}], {}, "sources[0].devices[0].points[0].adress: unknown key"),
    ([{"name": "a"}], {}, "sources[0].devices[0].points[0].address: is required"),
])
def test_bad_config_names_the_field(points, options, message):
    with pytest.raises(ConfigError) as info:
        cfg(points, **options)
    assert message in str(info.value)


def test_bits_of_one_register_may_share_it_but_not_with_a_word():
    c = cfg([{"name": "a", "address": "40001", "type": "bool", "bit": 0},
             {"name": "b", "address": "40001", "type": "bool", "bit": 15}])
    assert len(c.blocks) == 1 and c.blocks[0].count == 1
    with pytest.raises(ConfigError, match="overlaps"):
        cfg([{"name": "a", "address": "40001", "type": "bool", "bit": 0}, {"name": "w", "address": "40001"}])


def test_duplicate_device_ids_rejected():
    with pytest.raises(ConfigError, match=r"sources\[0\]\.devices\[1\]\.device_id: device 1 is already configured"):
        build(Config, {"name": "p", "type": "modbus", "host": "h", "devices": [
            {"device_id": 1, "points": [{"name": "a", "address": "40001"}]},
            {"device_id": 1, "points": [{"name": "b", "address": "40001"}]}]}, "sources[0]")


def test_report_filter_on_change_deadband_heartbeat():
    p = PointSpec("t", "x", 1, "holding_registers", 0, 2, "float32", "ABCD", None, 1.0, 0.0, None, 1.0, 0.5)
    f = ReportFilter("on_change", heartbeat=10.0, bad_repeat=5.0)
    assert f.want(p, 20.0, "GOOD", None, 0.0)
    f.sent(p, 20.0, "GOOD", None, 0.0)
    assert not f.want(p, 20.4, "GOOD", None, 1.0)  # inside the deadband
    assert f.want(p, 20.6, "GOOD", None, 1.0)
    assert f.want(p, 20.0, "GOOD", None, 10.0)  # heartbeat
    assert f.want(p, None, "BAD", 1001, 2.0)  # quality change always goes out
    f.sent(p, None, "BAD", 1001, 2.0)
    assert not f.want(p, None, "BAD", 1001, 3.0)
    assert f.want(p, None, "BAD", 2, 3.0)  # new status code
    assert f.want(p, None, "BAD", 1001, 7.0)  # repeat while still bad
    assert f.want(p, 20.0, "GOOD", None, 3.0)  # recovery


def test_report_filter_always_sends_good_but_limits_bad():
    p = PointSpec("t", "x", 1, "coils", 0, 1, "bool", "ABCD", None, 1.0, 0.0, None, 1.0, 0.0)
    f = ReportFilter("always", heartbeat=60.0, bad_repeat=10.0)
    f.sent(p, True, "GOOD", None, 0.0)
    assert f.want(p, True, "GOOD", None, 0.1)
    f.sent(p, None, "BAD", 1002, 1.0)
    assert not f.want(p, None, "BAD", 1002, 5.0) and f.want(p, None, "BAD", 1002, 11.0)
