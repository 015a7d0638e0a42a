"""Config groups -> concrete (point, NodeId) lists, by NodeId, browse path or recursive browse.

Runs at every connect, so a server whose NodeIds moved (restart, new project) is followed by
browse paths and folders. Browsing goes level by level with one Browse request per batch of
nodes, so a 50,000-node folder costs a few dozen round trips, not 50,000.

``read_properties`` then fills each target's unit (the first of ``unit_property`` the variable
has: EUInformation, LocalizedText or a plain string) and its metadata (``metadata_properties``,
by browse name in any namespace unless written ``2:Name``): one Browse of the HasProperty
references and one Read per batch of variables.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua

from .config import FolderSpec, GroupConfig
from .map import plain

_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_BROWSE_BATCH = 500


@dataclass
class Target:
    point: str
    nodeid: ua.NodeId
    unit: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Resolved:
    targets: list[Target] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (what was configured, why it failed)


@dataclass
class _Ref:
    nodeid: ua.NodeId
    name: str
    ns: int
    node_class: int


def _split_path(path: str) -> list[tuple[int | None, str]]:
    """``Objects/2:Plant/Line1`` -> [(None,'Objects'), (2,'Plant'), (None,'Line1')]; no ns = any namespace."""
    out = []
    for part in [p for p in path.strip().split("/") if p]:
        ns, sep, name = part.partition(":")
        if sep and ns.isdigit():
            out.append((int(ns), name))
        else:
            out.append((None, part))
    return out


async def _browse(client, nodeids: list[ua.NodeId], *, skip_properties: bool,
                  reference: ua.NodeId = _HIERARCHICAL) -> list[list[_Ref]]:
    """Forward hierarchical children (objects and variables) of each node, following continuation points
    (``reference``: HasProperty for a variable's properties)."""
    out: list[list[_Ref]] = []
    for i in range(0, len(nodeids), _BROWSE_BATCH):
        chunk = nodeids[i:i + _BROWSE_BATCH]
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 0
        for nid in chunk:
            d = ua.BrowseDescription()
            d.NodeId = nid
            d.BrowseDirection = ua.BrowseDirection.Forward
            d.ReferenceTypeId = reference
            d.IncludeSubtypes = True
            d.NodeClassMask = int(ua.NodeClass.Object) | int(ua.NodeClass.Variable)
            d.ResultMask = int(ua.BrowseResultMask.All)
            params.NodesToBrowse.append(d)
        results = await client.uaclient.browse(params)
        for res in results:
            refs: list = list(res.References or []) if res.StatusCode.is_good() else []
            cont = res.ContinuationPoint
            while cont:
                nxt = ua.BrowseNextParameters()
                nxt.ReleaseContinuationPoints = False
                nxt.ContinuationPoints = [cont]
                more = (await client.uaclient.browse_next(nxt))[0]
                refs.extend(more.References or [])
                cont = more.ContinuationPoint
            kids = []
            for r in refs:
                if skip_properties and r.ReferenceTypeId == _HAS_PROPERTY:
                    continue
                # ExpandedNodeId -> NodeId: the services below want the plain form.
                nid = ua.NodeId(r.NodeId.Identifier, r.NodeId.NamespaceIndex, r.NodeId.NodeIdType)
                kids.append(_Ref(nid, r.BrowseName.Name, r.BrowseName.NamespaceIndex, int(r.NodeClass)))
            out.append(kids)
    return out


async def resolve_paths(client, paths: list[str]) -> dict[str, ua.NodeId | str]:
    """Each browse path -> its NodeId, or an error string. Paths start at Objects unless they start with Root."""
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    root = ua.NodeId(ua.ObjectIds.RootFolder)
    state: dict[str, tuple[ua.NodeId, list]] = {}
    out: dict[str, ua.NodeId | str] = {}
    for p in paths:
        parts = _split_path(p)
        if parts and parts[0][1] == "Root":
            state[p] = (root, parts[1:])
        elif parts and parts[0][1] == "Objects":
            state[p] = (objects, parts[1:])
        else:
            state[p] = (objects, parts)
    depth = 0
    while state:
        done = [p for p, (_, rest) in state.items() if len(rest) <= depth]
        for p in done:
            out[p] = state.pop(p)[0]
        if not state:
            break
        parents = list({nid.to_string(): nid for nid, _ in state.values()}.values())
        children = dict(zip((n.to_string() for n in parents), await _browse(client, parents, skip_properties=False)))
        for p, (nid, rest) in list(state.items()):
            ns, name = rest[depth]
            match = [c for c in children[nid.to_string()] if c.name == name and (ns is None or c.ns == ns)]
            if not match:
                where = "/".join(f"{n}:{x}" if n is not None else x for n, x in rest[:depth + 1])
                out[p] = f"no child {name!r} at {where!r} (BadNoMatch)"
                state.pop(p)
            else:
                state[p] = (match[0].nodeid, rest)
        depth += 1
    return out


async def browse_folder(client, root: ua.NodeId, root_name: str, spec: FolderSpec) -> list[Target]:
    """Every variable below ``root`` whose path relative to root matches include and not exclude."""
    found: list[Target] = []
    seen = {root.to_string()}
    frontier: list[tuple[ua.NodeId, str]] = [(root, "")]
    for _ in range(spec.max_depth):
        if not frontier:
            break
        kids = await _browse(client, [n for n, _ in frontier], skip_properties=True)
        nxt = []
        for (_, rel), refs in zip(frontier, kids):
            for r in refs:
                key = r.nodeid.to_string()
                if key in seen:
                    continue
                seen.add(key)
                path = f"{rel}/{r.name}" if rel else r.name
                if r.node_class == int(ua.NodeClass.Variable):
                    if any(fnmatch.fnmatchcase(path, pat) for pat in spec.include) and not any(
                        fnmatch.fnmatchcase(path, pat) for pat in spec.exclude
                    ):
                        found.append(Target(f"{root_name}/{path}", r.nodeid))
                nxt.append((r.nodeid, path))
        frontier = nxt
    return found


async def resolve_group(client, group: GroupConfig) -> Resolved:
    res = Resolved()
    namespaces: list[str] | None = None
    for n in group.nodes:
        text = n.strip()
        try:
            if text.startswith("nsu="):
                # Namespace indexes may change with a server restart; the URI form is looked up each connect.
                uri, _, rest = text[4:].partition(";")
                if namespaces is None:
                    namespaces = await client.get_namespace_array()
                if uri not in namespaces:
                    res.errors.append((n, f"namespace {uri!r} is not on this server"))
                    continue
                text_ns = f"ns={namespaces.index(uri)};{rest}"
                res.targets.append(Target(text, ua.NodeId.from_string(text_ns)))
            else:
                res.targets.append(Target(text, ua.NodeId.from_string(text)))
        except Exception as exc:  # noqa: BLE001 - a bad NodeId string is reported, not fatal
            res.errors.append((n, f"not a NodeId: {exc}"))
    if group.browse_paths:
        for p, r in (await resolve_paths(client, group.browse_paths)).items():
            if isinstance(r, str):
                res.errors.append((p, r))
            else:
                res.targets.append(Target(_display(p), r))
    for spec in group.folders:
        root_s = spec.root.strip()
        try:
            root = ua.NodeId.from_string(root_s) if "=" in root_s else None
        except Exception:  # noqa: BLE001
            root = None
        if root is None:
            r = (await resolve_paths(client, [root_s]))[root_s]
            if isinstance(r, str):
                res.errors.append((f"folder {root_s}", r))
                continue
            root, name = r, _display(root_s).rsplit("/", 1)[-1]
        else:
            try:
                qn = await client.get_node(root).read_browse_name()
            except Exception as exc:  # noqa: BLE001 - an unknown root is reported
                res.errors.append((f"folder {root_s}", f"cannot read it: {exc}"))
                continue
            name = qn.Name
        found = await browse_folder(client, root, name, spec)
        if not found:
            res.errors.append((f"folder {root_s}", "no variable below it matches include/exclude"))
        res.targets.extend(found)
    # The same node configured twice would be subscribed twice and land twice.
    unique: dict[str, Target] = {}
    for t in res.targets:
        unique.setdefault(t.nodeid.to_string(), t)
    res.targets = list(unique.values())
    return res


def _display(path: str) -> str:
    """Point name of a browse path: the names without namespace prefixes and without a leading Objects."""
    names = [name for _, name in _split_path(path)]
    if names and names[0] == "Objects":
        names = names[1:]
    return "/".join(names)


def unit_text(value: Any) -> str | None:
    """A unit property's value as the unit column: EUInformation's DisplayName (else its
    Description), a LocalizedText's text, a string; None when empty."""
    if value is None:
        return None
    for attr in ("DisplayName", "Description"):
        text = getattr(getattr(value, attr, None), "Text", None)
        if text:
            return str(text)
    if hasattr(value, "Text"):  # LocalizedText
        return str(value.Text) if value.Text else None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip() or None
    return None


def _matches(ref: _Ref, wanted: str) -> bool:
    ((ns, name),) = _split_path(wanted)
    return ref.name == name and (ns is None or ref.ns == ns)


async def read_properties(client, targets: list[Target], unit_names: list[str], metadata_names: list[str],
                          batch: int = 500) -> None:
    """Fill Target.unit (the first of ``unit_names`` that has a value) and Target.metadata
    (every one of ``metadata_names`` the variable has, as plain JSON values) from properties."""
    names = list(dict.fromkeys([*unit_names, *metadata_names]))
    if not names:
        return
    for i in range(0, len(targets), batch):
        chunk = targets[i:i + batch]
        props = await _browse(client, [t.nodeid for t in chunk], skip_properties=False, reference=_HAS_PROPERTY)
        wanted: list[tuple[Target, str, ua.NodeId]] = []
        for t, refs in zip(chunk, props):
            for name in names:
                ref = next((r for r in refs if _matches(r, name)), None)
                if ref is not None:
                    wanted.append((t, name, ref.nodeid))
        if not wanted:
            continue
        params = ua.ReadParameters()
        for _, _, nid in wanted:
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = ua.AttributeIds.Value
            params.NodesToRead.append(rv)
        values = await client.uaclient.read(params)
        found: dict[int, dict[str, Any]] = {}
        for (t, name, _), dv in zip(wanted, values):
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                continue
            found.setdefault(id(t), {})[name] = dv.Value.Value if dv.Value is not None else None
        for t in chunk:
            got = found.get(id(t), {})
            t.unit = next((u for u in (unit_text(got.get(n)) for n in unit_names) if u), t.unit)
            t.metadata = {n: plain(got[n]) for n in metadata_names if got.get(n) is not None}


def metadata_snapshot(targets: list[Target]) -> dict[str, dict[str, Any]]:
    """point -> {unit, property: value, ...} for the targets that have any (the metadata file)."""
    out = {}
    for t in targets:
        meta = dict(t.metadata)
        if t.unit:
            meta["unit"] = t.unit
        if meta:
            out[t.point] = meta
    return out
