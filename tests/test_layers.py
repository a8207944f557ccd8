"""finetune_kit's layers import one way: the folder names are the map, and this test holds it.

Every module of the package is read with ``ast``; each import of ours (at module level, inside
a function, or under ``if TYPE_CHECKING:``) is checked against the layer table:

    layer      modules                                  may import (besides its own layer)
    infra      errors, _version, _lazy, _retry, _steps,  nothing above it
               _urls, _interface, _served
    data       finetune_kit.data                        errors, _lazy
    graders    finetune_kit.graders                     data, errors, _lazy
    services   files, jobs, inference, azure            data, graders, infra
    facade     session, backends                        services, data, graders, infra, and
                                                        local (to start an in-process backend)
    local      finetune_kit.local                       data, graders, errors, _lazy, and the
                                                        leaves _version and _served
    entry      cli, quickstart                          the facade, the packages' public names
                                                        (finetune_kit, a package's __init__),
                                                        infra
    public     finetune_kit/__init__.py                 anything (its export table)

A type-checking import counts as much as a runtime one for the layers: a lower layer whose
signatures name an upper layer's types depends on it, even if nothing runs. For cycles only
what runs counts (module level and inside functions): a type-checking import never executes.
A name imported from a lazy package is followed to the module its export table names, since
that is the module the import really loads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetune_kit
from finetune_kit._lazy import read_export_table

ROOT = Path(finetune_kit.__file__).parent
PACKAGE = "finetune_kit"

INFRA = {"errors", "_version", "_lazy", "_retry", "_steps", "_urls", "_interface", "_served"}
LAYER_OF_TOP = {
    **dict.fromkeys(INFRA, "infra"),
    "data": "data",
    "graders": "graders",
    "files": "services",
    "jobs": "services",
    "inference": "services",
    "azure": "services",
    "session": "facade",
    "backends": "facade",
    "local": "local",
    "cli": "entry",
    "quickstart": "entry",
}
MAY_IMPORT: dict[str, set[str]] = {
    "infra": {"infra"},
    "data": {"data", "errors", "_lazy"},
    "graders": {"graders", "data", "errors", "_lazy"},
    "services": {"services", "data", "graders", "infra"},
    "facade": {"facade", "services", "data", "graders", "infra", "local"},
    "local": {"local", "data", "graders", "errors", "_lazy", "_version", "_served"},
}
# Imports the table does not allow, each with its reason; none may be added without one.
EXCEPTIONS = {
    # `finetune-kit local serve` words the exposure refusal with CLI flags before serving;
    # finetune_kit.local does not export the check (its owner may: then this entry goes).
    ("finetune_kit.cli", "finetune_kit.local.server.exposure"),
    # `local serve --resources-per-worker` is parsed by the server's own parser, which
    # finetune_kit.local does not export either (its owner may: then this entry goes).
    ("finetune_kit.cli", "finetune_kit.local.settings"),
}


# Deferred imports that close a cycle, each with its reason (none today; one needs a reason).
DEFERRED_EXCEPTIONS: set[tuple[str, str]] = set()
# Packages whose docstring does not yet say what they may import (none today).
UNDESCRIBED: set[str] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = _modules()
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def _layer(module: str) -> str:
    if module == PACKAGE:
        return "public"
    top = module.split(".")[1]
    assert top in LAYER_OF_TOP, f"{module}: a module at the top of finetune_kit no layer owns"
    return LAYER_OF_TOP[top]


def _export_tables() -> dict[str, dict[str, str]]:
    """Each lazy package's export table: name -> the module that defines it."""
    return {
        package: read_export_table(MODULES[package].read_text(encoding="utf-8"), package)
        for package in PACKAGES
    }


TABLES = _export_tables()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> Iterator[tuple[int, str, bool, bool]]:
    """Yield ``(line, imported module, runs, followed)`` for every import of ours in a module.

    ``followed``: the module a lazy package's name loads, beside the package the import names
    (the layers judge what is written; the cycles, what runs).
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            typing_only.update(id(c) for statement in node.body for c in ast.walk(statement))
    for node in ast.walk(tree):
        runs = id(node) not in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield node.lineno, alias.name, runs, False
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:  # from . import errors: the module errors
                    yield node.lineno, submodule, runs, False
                    continue
                yield node.lineno, target, runs, False
                if target in PACKAGES and alias.name in TABLES[target]:
                    # A lazy package's name: the import loads the module that defines it.
                    yield node.lineno, TABLES[target][alias.name], runs, True


def _allowed(module: str, target: str) -> bool:
    layer = _layer(module)
    if layer == "public" or (module, target) in EXCEPTIONS:
        return True
    target_layer = _layer(target) if target != PACKAGE else "public"
    top = target.split(".")[1] if target != PACKAGE else ""
    if layer == "entry":
        # The facade and public names: the package itself, a package's public surface (its
        # __init__), the infrastructure and the other entry points; never a package's insides.
        return (
            target == PACKAGE
            or target in PACKAGES
            or target_layer in ("infra", "entry")
            or target == f"{PACKAGE}.backends"
        )
    allowed = MAY_IMPORT[layer]
    return target_layer in allowed or top in allowed


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_what_its_layer_may(module: str) -> None:
    wrong = [
        f"line {line}: {target}"
        for line, target, _, followed in _imports(module)
        if not followed and target in MODULES and not _allowed(module, target)
    ]
    assert not wrong, f"{module} ({_layer(module)}) may not import: " + "; ".join(wrong)


def test_every_exception_is_still_needed() -> None:
    for module, target in EXCEPTIONS:
        assert target in {t for _, t, _, _ in _imports(module)}, (module, target)


def test_no_runtime_import_cycle() -> None:
    # What runs: module level and inside functions (a deferred import is a dependency all the
    # same). Importing a module also runs the __init__ of every package above it.
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for _, target, runs, _ in _imports(module):
            if not runs or target not in MODULES or target == module:
                continue
            if (module, target) in DEFERRED_EXCEPTIONS:
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


def test_no_import_of_ours_is_hidden_behind_importlib() -> None:
    # The export machinery (_lazy) imports by name on purpose, and a builder is loaded from its
    # entry point; any other module names what it imports in an import statement.
    hidden = []
    for module, path in MODULES.items():
        if module == f"{PACKAGE}._lazy":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name not in ("import_module", "__import__"):
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue  # a third-party name held in a variable (httpx or httpx2)
            if first.value.startswith((PACKAGE, ".")):
                hidden.append(f"{module} line {node.lineno}: {first.value}")
    assert not hidden, hidden


def test_the_top_of_the_package_holds_at_most_twelve_modules() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 12, top
    assert {p.removesuffix(".py") for p in top} <= set(LAYER_OF_TOP) | {"__init__"}


def test_each_package_says_what_it_owns_and_may_import() -> None:
    for package in sorted(PACKAGES - UNDESCRIBED):
        if package.count(".") != 1:
            continue  # folders inside a package are described by it
        doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8"))) or ""
        assert "May import" in doc or "may import" in doc, package
