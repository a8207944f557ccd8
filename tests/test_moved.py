"""Every module path that moved still imports, for one release, as the very same module.

The old path gives the new module object (one class, one module state) and warns once with a
DeprecationWarning that names the new path and points at the line that imported it; the names
a user imported from the old path are the same objects as from the new one. Renamed names
inside a module likewise still resolve, with a warning naming the new name.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings

import pytest

from finetune_kit._lazy import MOVED_MODULES, MovedModuleFinder, install_moved_modules

TOP_LEVEL_MOVES = sorted(
    (old, new) for old, new in MOVED_MODULES.items() if not old.startswith("finetune_kit.local.")
)


def _forget(name: str) -> None:
    # The alias, not the module: the new path stays imported, as in a real program.
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in vars(package):
        delattr(package, child)


@pytest.mark.parametrize(("old", "new"), TOP_LEVEL_MOVES)
def test_an_old_path_imports_the_new_module_with_a_deprecation_warning(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new}")) as caught:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is module
    assert module.__name__ == new
    assert module.__spec__ is not None
    assert module.__spec__.name == new
    # The warning points at the importing line, so a user sees where to change the import.
    assert {w.filename for w in caught} == {__file__}
    # Every name the new module offers is the same object under the old path.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in getattr(module, "__all__", ()):
            assert getattr(sys.modules[old], name) is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize(("old", "new"), TOP_LEVEL_MOVES)
def test_an_old_path_warns_once_and_then_is_plain_sys_modules(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(old) is importlib.import_module(new)


def test_new_paths_import_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for new in sorted(set(MOVED_MODULES.values())):
            importlib.import_module(new)


def test_the_hook_is_installed_once_first_by_the_package() -> None:
    finders = [f for f in sys.meta_path if isinstance(f, MovedModuleFinder)]
    assert len(finders) == 1
    assert install_moved_modules() is finders[0]
    assert sys.meta_path.index(finders[0]) < sys.meta_path.index(
        next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")
    )


RENAMED_NAMES = [
    ("finetune_kit.data.base_models", "TrainingMethod", "MethodName"),
    ("finetune_kit.data.rules", "ExampleKind", "LineKind"),
    ("finetune_kit.data.rules", "detect_kind", "detect_line_kind"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED_NAMES)
def test_a_renamed_name_still_resolves_with_a_warning(module: str, old: str, new: str) -> None:
    imported = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{module}.{old} is now {module}.{new}")):
        value = getattr(imported, old)
    assert value is getattr(imported, new)
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        _ = imported.Nonexistent
