"""edge.config.parse on random YAML-like trees: a Config or a ConfigError, never another exception."""

from __future__ import annotations

import dataclasses
import importlib

from hypothesis import example, given
from hypothesis import strategies as st

from edge import config as edge_config
from edge.configtypes import ConfigError

from .profile import fuzz

_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["1MiB", "0", "-1", "30s", "1e999", "drop_oldest", "block", "${VAR}", "${NOT_SET}", "$${X}",
                     "${", "127.0.0.1:0", "[::1]:80", "opc.tcp://h:4840", "http://x", "spBv1.0/#", "a/+/b", "#", "%"]),
)
_tree = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                     max_leaves=8)


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


_TOP = _fields(edge_config.Config)
_SECTIONS = {"spool": _fields(edge_config.SpoolConfig), "zerobus": _fields(edge_config.ZerobusConfig),
             "logging": _fields(edge_config.LoggingConfig)}
_SOURCE_FIELDS = {kind: _fields(importlib.import_module(mod).Config) for kind, mod in edge_config.SOURCE_TYPES.items()}


def _mapping(keys: list[str]):
    """Mostly the schema's own keys, with random values: the trees that get past the first checks."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), _tree, max_size=5)


@st.composite
def _sources(draw):
    kind = draw(st.one_of(st.sampled_from(sorted(_SOURCE_FIELDS)), st.text(max_size=5)))
    body = draw(_mapping(_SOURCE_FIELDS.get(kind, ["name"])))
    body.setdefault("name", draw(st.sampled_from(["a", "b", "", "x y"])))
    body["type"] = kind
    return body


_documents = st.one_of(
    _tree,
    st.fixed_dictionaries({}, optional={
        "appliance_id": st.one_of(st.sampled_from(["plant-1", "", "a/b"]), _leaf),
        **{name: _mapping(keys) for name, keys in _SECTIONS.items()},
        "sources": st.one_of(st.lists(_sources(), max_size=3), _tree),
        "admin": _tree,
    }).flatmap(lambda d: _mapping(_TOP).map(lambda extra: {**extra, **d})),
)


@fuzz
@given(_documents, st.sampled_from([{}, {"VAR": "1MiB"}, {"VAR": "${VAR}"}]))
@example({"sources": [{"type": "http", "name": "gw", "token": "x" * 20, "max_json_depth": 10**30}]}, {})
@example({"appliance_id": "a", "spool": {"max_bytes": "9" * 5000}}, {})
def test_config_parses_or_says_why(doc, env):
    try:
        cfg = edge_config.parse(doc, env=env)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(cfg, edge_config.Config)


def test_non_finite_sizes_and_durations_are_refused():
    """Found by the fuzzer: '9' * 5000 as a size overflowed to inf (OverflowError); .nan / .inf were taken as durations."""
    src = {"type": "http", "name": "gw", "token": "x" * 20}
    for doc in ({"spool": {"max_bytes": "9" * 400}}, {"sources": [{**src, "idle_timeout": float("nan")}]},
                {"sources": [{**src, "body_timeout": float("inf")}]}, {"sources": [{**src, "header_timeout": "9" * 400}]}):
        try:
            edge_config.parse({"appliance_id": "a", **doc}, env={})
        except ConfigError:
            continue
        raise AssertionError(f"accepted {doc}")
