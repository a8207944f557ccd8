"""The local backend's folders import one way: the folder names are its map.

Every module of ``finetune_kit/local`` is read with ``ast`` (imports inside functions and
``TYPE_CHECKING`` blocks count too) and its imports are checked against this table:

    engine   the models: training, generation      imports nothing of local
    store    SQLite and the blob folder            imports the shared leaves
    faults   fault injection                       imports the shared leaves
    worker   job processes: pool, loop, runner     store, engine, shared leaves
    server   HTTP: app, routes, context            store, engine, worker, faults, shared leaves
    entry    local/__init__, backend (LocalBackend)  anything in local
    shared   settings, api_errors, _moved          nothing of local (leaves)

and, outside ``local``, only what sits below it: ``finetune_kit.data``, ``finetune_kit.graders``,
``finetune_kit.errors``, and two leaves of shared infrastructure: ``_version`` (the version
string) and ``_served`` (the ``server.json`` record that ``local serve`` writes and a client
session reads without importing the local backend).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetune_kit.local

LOCAL = Path(finetune_kit.local.__file__).parent
PACKAGE = "finetune_kit.local"

ALLOWED: dict[str, set[str]] = {
    "engine": {"engine"},
    "store": {"store", "shared"},
    "faults": {"faults", "shared"},
    "worker": {"worker", "store", "engine", "shared"},
    "server": {"server", "store", "engine", "worker", "faults", "shared"},
    "entry": {"entry", "server", "store", "engine", "worker", "faults", "shared"},
    "shared": set(),
}
SHARED = {"settings", "api_errors", "_moved"}
ENTRY = {"", "backend"}
OUTSIDE = (
    "finetune_kit.data",
    "finetune_kit.graders",
    "finetune_kit.errors",
    "finetune_kit._version",
    "finetune_kit._served",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(LOCAL.rglob("*.py")):
        parts = path.relative_to(LOCAL).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = _modules()


def _group(module: str) -> str:
    rest = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    head = rest.split(".")[0]
    if head in ALLOWED:
        return head
    if head in SHARED:
        return "shared"
    assert head in ENTRY, f"{module}: a module at the top of local/ that no folder owns"
    return "entry"


def _imports(module: str, *, runtime_only: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line, imported module)`` for every import of ours in a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if runtime_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("finetune_kit"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("finetune_kit"):
                continue
            for alias in node.names:
                # ``from .routes import chat`` imports the module routes.chat.
                submodule = f"{target}.{alias.name}"
                yield node.lineno, submodule if submodule in MODULES else target


def test_every_module_of_local_belongs_to_a_folder_or_is_named() -> None:
    for module in MODULES:
        _group(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_what_its_folder_may(module: str) -> None:
    group = _group(module)
    wrong = []
    for line, target in _imports(module):
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            if _group(target) not in ALLOWED[group] | {group}:
                wrong.append(f"line {line}: {target} ({_group(target)})")
        elif not target.startswith(OUTSIDE):
            wrong.append(f"line {line}: {target} (above the local backend)")
    assert not wrong, f"{module} ({group}) may not import: " + "; ".join(wrong)


def test_no_import_cycle_among_the_modules_of_local() -> None:
    # Module-level imports only: those run when a module is imported. Importing a module also
    # runs the __init__ of every package above it that the importer is not itself inside.
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for _, target in _imports(module, runtime_only=True):
            if target not in MODULES:
                continue
            graph[module].add(target)
            parent = target.rpartition(".")[0]
            while parent.startswith(PACKAGE) and not module.startswith(parent + "."):
                if parent != module:
                    graph[module].add(parent)
                parent = parent.rpartition(".")[0]
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_layout_test_sees_every_folder() -> None:
    folders = {p.name for p in LOCAL.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ALLOWED) - {"entry", "shared"}
