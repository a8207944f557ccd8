"""Every module path of the local backend that moved still imports, for one release.

The old path gives the very same module object as the new one (one class, one module state)
and warns once with a DeprecationWarning that names the new path and points at the line that
imported it.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings

import pytest

import finetune_kit.local
from finetune_kit._lazy import MOVED_MODULES, MovedModuleFinder
from finetune_kit._lazy import install_moved_modules as install


def _forget(name: str) -> None:
    # The alias, not the module: the new path stays imported, as in a real program.
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in vars(package):
        delattr(package, child)


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_path_imports_the_new_module_with_a_deprecation_warning(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new}")) as caught:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is module
    # The module keeps its own name and spec: pickling and reloading go by the new path.
    assert module.__name__ == new
    assert module.__spec__ is not None
    assert module.__spec__.name == new
    # The warning points at the importing line, so a user sees where to change the import.
    assert {w.filename for w in caught} == {__file__}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_path_warns_once_and_then_is_plain_sys_modules(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(old) is importlib.import_module(new)


def test_from_import_of_an_old_path_gives_the_same_objects() -> None:
    old, new = "finetune_kit.local.faults_remote", "finetune_kit.local.faults.remote"
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        from finetune_kit.local.faults_remote import RemoteFaults
    assert RemoteFaults is finetune_kit.local.RemoteFaults


def test_the_hook_is_installed_once_and_first() -> None:
    finders = [f for f in sys.meta_path if isinstance(f, MovedModuleFinder)]
    assert len(finders) == 1
    assert install() is finders[0]
    assert len([f for f in sys.meta_path if isinstance(f, MovedModuleFinder)]) == 1
    # First, so a moved package's submodules (still files on disk) are never loaded twice.
    assert sys.meta_path.index(finders[0]) < sys.meta_path.index(
        next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")
    )


def test_a_submodule_of_a_moved_package_follows_its_package() -> None:
    finder = MovedModuleFinder({"pkg.old": "pkg.new", "pkg.old.renamed": "pkg.new.other"})
    assert finder.new_name("pkg.old.child") == "pkg.new.child"
    assert finder.new_name("pkg.old.renamed") == "pkg.new.other"
    assert finder.new_name("pkg.older") is None
    assert finder.new_name("pkg") is None


def test_new_paths_and_unmoved_paths_import_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for new in sorted(set(MOVED_MODULES.values())):
            importlib.import_module(new)
        importlib.import_module("finetune_kit.local.settings")


# Modules that became packages of the same name keep the old module's public names.
OLD_MODULE_NAMES = {
    "finetune_kit.local.engine": [
        "BASE_LEARNING_RATE",
        "DEFAULT_BASE_MODEL",
        "DEFAULT_DPO_BETA",
        "OPENAI_MODEL_NAMES",
        "STATE_FILE",
        "TINY_MODEL_NAME",
        "ChatChoice",
        "ChatDelta",
        "ChatResult",
        "ChatStream",
        "CheckpointInfo",
        "Generator",
        "Hyperparameters",
        "LoraSettings",
        "ModelRef",
        "ModelRegistry",
        "NoCallbacks",
        "StepMetrics",
        "StopSignal",
        "TrainingCallbacks",
        "TrainingRequest",
        "TrainingResult",
        "TrainingStatus",
        "resolve_hyperparameters",
        "train",
    ],
    "finetune_kit.local.faults": [
        "Fault",
        "FaultControl",
        "FaultDecision",
        "FaultInjector",
        "FaultKind",
        "FaultSpec",
        "RequestRecord",
        "compile_path",
    ],
    "finetune_kit.local.server": ["default_data_dir", "serve"],
    "finetune_kit.local.worker": ["main", "parse_args", "run_worker"],
}


@pytest.mark.parametrize(("package", "names"), sorted(OLD_MODULE_NAMES.items()))
def test_a_module_that_became_a_package_keeps_its_names(package: str, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(package)
        for name in names:
            assert getattr(module, name) is not None, name


def test_the_engines_renamed_training_method_warns_and_is_engine_method() -> None:
    import finetune_kit.local.engine as engine

    with pytest.warns(DeprecationWarning, match="EngineMethod") as caught:
        old = engine.TrainingMethod
    assert old is engine.EngineMethod
    assert {w.filename for w in caught} == {__file__}
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        _ = engine.Nonexistent
