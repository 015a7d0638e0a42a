"""Every duration and size in the schema must be positive, unless its class says what zero means."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from edge.config import SOURCE_TYPES, Config, parse
from edge.configtypes import ByteSize, ConfigError, Duration, fields_of, unwrap

BASE = {
    "appliance_id": "a",
    "spool": {}, "zerobus": {}, "admin": {}, "logging": {},
    "sources": [
        {"name": "syn", "type": "synthetic"},
        {"name": "m", "type": "mqtt", "subscriptions": [{"topic": "a/#"}]},
        {"name": "plc", "type": "modbus", "host": "10.0.0.5",
         "devices": [{"device_id": 1, "points": [{"name": "t", "address": "40001"}]}]},
        {"name": "ua", "type": "opcua", "endpoint": "opc.tcp://plc:4840", "security": {}, "backfill": {},
         "groups": [{"nodes": ["ns=2;s=A"], "folders": [{"root": "Objects"}]}]},
        {"name": "gw", "type": "http", "token": "0123456789abcdef"},
    ],
}


def _class_at(raw: dict, key: str, owner: type) -> type:
    if owner is Config and key == "sources":
        return None  # chosen per entry by its type
    if owner is Config and key == "admin":
        return importlib.import_module("edge.adminconfig").AdminConfig
    return unwrap(fields_of(owner)[key])


def quantities(raw: dict, owner: type, path: tuple = ()):
    """(path in the document, owning class, field) of every Duration/ByteSize field under ``raw``."""
    for name, tp in fields_of(owner).items():
        if unwrap(tp) in (Duration, ByteSize):
            yield path + (name,), owner, name
    for key, value in raw.items():
        if isinstance(value, dict):
            yield from quantities(value, _class_at(raw, key, owner), path + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                cls = (importlib.import_module(SOURCE_TYPES[item["type"]]).Config if owner is Config
                       else unwrap(fields_of(owner)[key]).__args__[0])
                if dataclasses.is_dataclass(cls):
                    yield from quantities(item, cls, path + (key, i))


def _set(doc, path, value):
    import copy

    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


CASES = list(quantities(BASE, Config))


def test_the_base_document_is_valid_and_reaches_every_config_class():
    parse(BASE, {})
    owners = {owner.__name__ for _, owner, _ in CASES}
    assert {"SpoolConfig", "ZerobusConfig", "AdminConfig", "DeviceConfig", "PointConfig", "GroupConfig",
            "BackfillConfig"} <= owners
    assert len(CASES) >= 40


@pytest.mark.parametrize("path, owner, name", CASES, ids=[_dotted(c[0]) for c in CASES])
def test_zero_is_refused_unless_the_class_says_what_it_means(path, owner, name):
    doc = _set(BASE, path, 0)
    if name in getattr(owner, "ZERO_OK", ()):
        parse(doc, {})
    else:
        with pytest.raises(ConfigError) as e:
            parse(doc, {})
        assert e.value.path == _dotted(path)


def test_zero_ok_names_only_real_quantities():
    for _, owner, _ in CASES:
        for name in getattr(owner, "ZERO_OK", ()):
            assert unwrap(fields_of(owner)[name]) in (Duration, ByteSize), (owner, name)


def _dataclasses_in(obj, out: list) -> list:
    """Every config dataclass instance in the tree under ``obj``, depth first."""
    if isinstance(obj, (list, tuple)):
        for x in obj:
            _dataclasses_in(x, out)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out.append(obj)
        for f in dataclasses.fields(obj):
            _dataclasses_in(getattr(obj, f.name), out)
    return out


def test_validate_changes_nothing_in_any_config_class():
    """Built without their checks, then checked: every object is as it was (``validate`` used to strip
    ``zerobus.workspace_url``'s trailing slash; normalising now happens before pydantic, in ``NORMALISE``)."""
    import copy

    from edge.adminconfig import AdminConfig
    from edge.configtypes import adapter, check

    top = {k: v for k, v in BASE.items() if k not in ("sources", "admin")}
    cfg = adapter(Config).validate_python({**top, "zerobus": {"workspace_url": "https://ws.example.com/"}})
    cfg.sources = [adapter(importlib.import_module(SOURCE_TYPES[s["type"]]).Config).validate_python(s)
                   for s in BASE["sources"]]
    cfg.admin = adapter(AdminConfig).validate_python({})
    objects = _dataclasses_in(cfg, [])
    kinds = {type(o).__name__ for o in objects}
    assert {"SpoolConfig", "ZerobusConfig", "AdminConfig", "DeviceConfig", "PointConfig", "GroupConfig", "FolderSpec",
            "BackfillConfig", "Subscription", "JsonMapping"} <= kinds, kinds
    before = copy.deepcopy(cfg)
    ids = [{k: id(v) for k, v in vars(o).items()} for o in objects]
    check(cfg, "")  # every validate(), innermost first, and the common checks
    assert cfg == before  # nothing changed in place (strings, lists, nested objects) ...
    assert [{k: id(v) for k, v in vars(o).items()} for o in objects] == ids  # ... nor replaced or added
    assert cfg.zerobus.workspace_url == "https://ws.example.com/"
    assert len(cfg.source("plc").blocks) == 1 and cfg.source("plc").points[0].name == "t"
