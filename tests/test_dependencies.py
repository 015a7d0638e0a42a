"""Dependencies point one way: the core never imports the admin page, and no edge modules import each other in a circle.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a
function counts as much as one at the top: it is still a dependency. Imports under
``if TYPE_CHECKING:`` are left out: they name a type for the checker and never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The command line dispatches to every service, the admin page included: it sits above them all.
ENTRY_POINTS = {"edge.cli", "edge.__main__"}
# (core module, admin module) pairs allowed for now: none.
PENDING: set[tuple[str, str]] = set()


def module_files(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in (root / "edge").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The edge modules ``module`` imports: ``from pkg import sub`` counts as ``pkg.sub`` when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {id(n) for guard in ast.walk(tree) if isinstance(guard, ast.If) and _is_type_checking(guard.test)
                 for stmt in guard.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for a in node.names:
                names.add(f"{origin}.{a.name}" if f"{origin}.{a.name}" in mods else origin)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return {r for n in names if n.split(".")[0] == "edge" and (r := _resolve(n, mods)) and r != module}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = module_files(root)
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def core_to_admin(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in g.items() for t in targets
                  if not (m == "edge.admin" or m.startswith("edge.admin.")) and m not in ENTRY_POINTS
                  and (t == "edge.admin" or t.startswith("edge.admin.")) and (m, t) not in PENDING)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_core_does_not_import_the_admin_page():
    assert core_to_admin(graph()) == [], "core modules importing edge.admin (move the shared part to edge.control)"


def test_no_import_cycle_among_edge_modules():
    assert cycles(graph()) == []


def test_the_checks_see_what_they_look_for(tmp_path):
    """Both checks fail on a tree built to break them (so a passing run means something)."""
    pkg = tmp_path / "edge"
    (pkg / "admin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "admin" / "__init__.py").write_text("")
    (pkg / "admin" / "app.py").write_text("from edge.admin import views\n")
    (pkg / "admin" / "views.py").write_text("def f():\n    from edge.admin.app import x\n")
    (pkg / "runner.py").write_text("import importlib\nimportlib.import_module('edge.admin.app')\n")
    (pkg / "cli.py").write_text("from edge.admin import app\n")
    (pkg / "loop.py").write_text("from edge import pump\n")
    (pkg / "pump.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edge.loop import L\n")
    g = graph(tmp_path)
    assert core_to_admin(g) == [("edge.runner", "edge.admin.app")]
    assert cycles(g) == [["edge.admin.app", "edge.admin.views"]]


def test_ops_tools_and_the_kit_never_import_tests():
    """The benchmarks and drills use the shipped test kit (simulators/kit), never the tests package."""
    offenders = []
    for folder in ("ops", "simulators", "edge"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "tests"]
    assert offenders == []


def test_the_appliance_never_imports_the_simulators_or_ops():
    """edge/ is what a plant runs: the outside world's stand-ins and the tools depend on it, not the reverse."""
    offenders = []
    for path in sorted((ROOT / "edge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("simulators", "ops")]
    assert offenders == []


PROXY_VARS = {"grpc_proxy", "https_proxy", "http_proxy", "no_proxy", "no_grpc_proxy"}


def duplicated_jobs(root: Path = ROOT) -> dict[str, list[str]]:
    """Where a secret is masked by hand (a ``"***"`` outside edge/redact.py) and where proxy variable
    names are listed (a tuple/list/set of them outside edge/egress.py)."""
    found: dict[str, list[str]] = {"scrubber": [], "proxy list": []}
    for folder in ("edge", "ops"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value == "***" and rel != "edge/redact.py":
                    found["scrubber"].append(f"{rel}:{node.lineno}")
                elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and rel != "edge/egress.py" and any(
                        isinstance(e, ast.Constant) and str(e.value).lower() in PROXY_VARS for e in node.elts):
                    found["proxy list"].append(f"{rel}:{node.lineno}")
    return found


def test_one_secret_scrubber_and_one_proxy_variable_list():
    """Secrets are masked by edge/redact.py alone; the proxy variables are listed in edge/egress.py alone."""
    assert duplicated_jobs() == {"scrubber": [], "proxy list": []}


def test_the_duplicate_job_check_sees_what_it_looks_for(tmp_path):
    (tmp_path / "edge").mkdir()
    (tmp_path / "ops").mkdir()
    (tmp_path / "edge" / "doctor.py").write_text("def f(t, s):\n    return t.replace(s, '***')\n")
    (tmp_path / "ops" / "bench.py").write_text("VARS = ('HTTPS_PROXY', 'https_proxy')\n")
    assert duplicated_jobs(tmp_path) == {"scrubber": ["edge/doctor.py:2"], "proxy list": ["ops/bench.py:1"]}


def test_nothing_shipped_turns_tls_verification_off():
    """TLS verification is never turned off: no unverified context, CERT_NONE, check_hostname off or verify=False
    in the product, its tools, its simulators or what Compose runs (the healthchecks included)."""
    shapes = ("_create_unverified_context", "CERT_NONE", "check_hostname = False", "check_hostname=False",
              "verify=False", "--insecure", "curl -k ")
    files = [p for d in ("edge", "ops", "simulators") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".sh", ".yml", ".yaml") and ".cache" not in p.parts]
    files += list(ROOT.glob("docker-compose*.yml")) + [ROOT / "Dockerfile"]
    found = [f"{p.relative_to(ROOT)}: {shape}" for p in files for shape in shapes if shape in p.read_text(errors="replace")]
    assert found == []
