"""Package boundaries: a lower package never imports a higher one.

The layers, bottom up (docs/ARCHITECTURE.md draws them): the shared base; the network policy and
the image builder; the sandbox layer; the domain packages (accounts, repos, environments, git
proxy, agents, forges, sessions, …); the daemon's wiring; the web app and the CLI on top. Imports
are read from the source with `ast` (also the ones inside functions), so a lazy import that runs
upward is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("appliance_base", "netpolicy", "vmimages", "appliance", "webui")

# unit → layer number; a unit may import units of its own layer or lower ones.
LAYERS: dict[str, int] = {
    "appliance_base": 0,
    "netpolicy": 1, "vmimages": 1,
    "appliance": 2,  # appliance/*.py shims and shared models (errors, config, db, models, logs)
    "appliance.migrations": 2,
    "appliance.sandbox": 3,
    "appliance.accounts": 4, "appliance.repos": 4, "appliance.environments": 4, "appliance.gitproxy": 4,
    "appliance.agents": 4, "appliance.forges": 4, "appliance.client": 4,
    "appliance.sessions": 5, "appliance.prloop": 5,
    "appliance.metrics": 6, "appliance.services": 6, "appliance.doctor": 6, "appliance.backup": 6,
    "appliance.template_admin": 6,  # warm start as admins see it: guest templates, the warm pool
    "appliance.cluster": 6,  # more than one host: turns as jobs (control's admission, the worker's task)
    "webui": 7,
    "appliance.daemon": 8, "appliance.cli": 8,  # the wiring: they build the services and serve webui
}
# Inside one layer some packages still lean on each other one way only.
SAME_LAYER_ORDER = [
    ("appliance.repos", "appliance.accounts"), ("appliance.environments", "appliance.accounts"),
    ("appliance.gitproxy", "appliance.repos"), ("appliance.forges", "appliance.repos"),
    ("appliance.forges", "appliance.accounts"), ("appliance.forges", "appliance.gitproxy"),
    ("appliance.client", "appliance.agents"), ("appliance.cli", "appliance.daemon"),
    ("appliance.prloop", "appliance.sessions"),
    ("appliance.metrics", "appliance.template_admin"), ("appliance.doctor", "appliance.template_admin"),
]


def unit_of(module: str) -> str | None:
    """The layer unit a dotted module name belongs to (None: not ours)."""
    parts = module.split(".")
    if parts[0] not in TOP_LEVEL:
        return None
    if parts[0] != "appliance" or len(parts) == 1:
        return parts[0]
    sub = "appliance." + parts[1]
    return sub if sub in LAYERS else "appliance"


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """unit → the other units it imports."""
    graph: dict[str, set[str]] = {}
    for top in TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else []:
            unit = unit_of(module_name(path, root))
            targets = {unit_of(m) for m in imports_of(path, root)} - {None, unit}
            graph.setdefault(unit, set()).update(targets)
    return graph


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    allowed_same = set(SAME_LAYER_ORDER)
    for unit, targets in import_graph(root).items():
        for target in targets:
            lu, lt = LAYERS[unit], LAYERS[target]
            if lt > lu or (lt == lu and unit != target and target != "appliance"
                           and (unit, target) not in allowed_same and unit != "appliance"):
                bad.append(f"{unit} (layer {lu}) imports {target} (layer {lt})")
    return sorted(bad)


def test_every_package_has_a_layer():
    assert set(import_graph()) <= set(LAYERS), set(import_graph()) - set(LAYERS)


def test_no_package_imports_a_higher_one():
    assert upward_imports() == []


def test_the_shared_base_imports_nothing_of_ours():
    assert import_graph().get("appliance_base", set()) == set()


def test_the_web_reaches_guests_and_egress_only_through_the_services():
    assert import_graph()["webui"].isdisjoint({"appliance.sandbox", "netpolicy"})


def test_the_sandbox_layer_reaches_egress_only_through_its_facade():
    """EgressPolicy (netpolicy.service) and the Policy value it takes; no bridge, nft or proxy parts."""
    used = set()
    for path in (ROOT / "appliance" / "sandbox").rglob("*.py"):
        used |= {m for m in imports_of(path) if m.split(".")[0] == "netpolicy"}
    modules = {".".join(m.split(".")[:2]) for m in used}
    assert modules <= {"netpolicy.service", "netpolicy.allowlist"}, modules


def test_the_checker_sees_upward_and_sideways_imports(tmp_path):
    """The walker itself: a lazy import running up, and a relative one, are both reported."""
    (tmp_path / "netpolicy").mkdir()
    (tmp_path / "netpolicy" / "x.py").write_text("def f():\n    from appliance.sessions import models\n")
    (tmp_path / "appliance" / "sandbox").mkdir(parents=True)
    (tmp_path / "appliance" / "sandbox" / "y.py").write_text("from ..sessions.models import Session\n")
    assert upward_imports(tmp_path) == [
        "appliance.sandbox (layer 3) imports appliance.sessions (layer 5)",
        "netpolicy (layer 1) imports appliance.sessions (layer 5)",
    ]


if __name__ == "__main__":  # the import graph, for notes and reviews
    for unit, targets in sorted(import_graph().items(), key=lambda kv: (LAYERS.get(kv[0], 99), kv[0])):
        print(f"{unit} -> {', '.join(sorted(targets)) or '(nothing)'}")
