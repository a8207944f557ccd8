"""The public API is exactly what finetune_kit.__all__ exports: a tested contract."""

from __future__ import annotations

import finetune_kit


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in finetune_kit.__all__ if not n.startswith("__")]
    assert names == sorted(names)
    assert len(set(finetune_kit.__all__)) == len(finetune_kit.__all__)


def test_every_public_name_exists_and_nothing_else_is_public() -> None:
    exported = set(finetune_kit.__all__)
    for name in exported:
        assert hasattr(finetune_kit, name), name
    public = {
        name
        for name in vars(finetune_kit)
        if not name.startswith("_")
        # subpackages are importable but are not names of the top-level API
        and getattr(getattr(finetune_kit, name), "__name__", "") != f"finetune_kit.{name}"
    }
    assert public <= exported, public - exported


def test_exported_objects_belong_to_the_top_level_module() -> None:
    for name in finetune_kit.__all__:
        obj = getattr(finetune_kit, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "finetune_kit", name


def test_importing_the_package_does_not_load_the_local_extra() -> None:
    import subprocess
    import sys

    heavy = "('torch', 'transformers', 'fastapi', 'pandas')"
    code = f"import sys, finetune_kit; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_backend_is_exported_lazily() -> None:
    from finetune_kit.local import LocalBackend

    assert finetune_kit.LocalBackend is LocalBackend
    assert LocalBackend.__module__ == "finetune_kit"


def test_lazy_table_matches_what_type_checkers_see() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(finetune_kit.__file__).read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If):  # the TYPE_CHECKING block
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    seen[alias.name] = f"finetune_kit.{statement.module}"
    assert seen == finetune_kit._EXPORTS


def test_data_package_reexports_its_layer() -> None:
    import finetune_kit.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert data.Dataset is finetune_kit.Dataset
    assert data.preflight is finetune_kit.preflight


def test_the_export_table_names_each_objects_defining_module() -> None:
    # The table names where an object is defined, so it is claimed as soon as that module runs.
    from finetune_kit._lazy import defined_in

    for name, module in finetune_kit._EXPORTS.items():
        obj = getattr(finetune_kit, name)
        if isinstance(obj, type) or callable(obj):
            assert defined_in(obj) == module, (name, module, defined_in(obj))


def test_exported_objects_take_the_package_name_as_soon_as_their_module_runs() -> None:
    # A fresh interpreter imports each defining module directly, never through the package's
    # names, and reads the objects from the module itself: whatever the order, they are
    # finetune_kit's at once.
    import subprocess
    import sys

    code = """
import importlib, sys
import finetune_kit
wrong = []
for name, module in sorted(finetune_kit._EXPORTS.items(), key=lambda item: item[1], reverse=True):
    obj = getattr(importlib.import_module(module), name)
    if (isinstance(obj, type) or callable(obj)) and obj.__module__ != "finetune_kit":
        wrong.append(f"{module}.{name}: {obj.__module__}")
assert not any(name in vars(finetune_kit) for name in finetune_kit._EXPORTS)
print(wrong)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Names each part of the library documents as public (its docs page, the API page): each must
# be exported from the top, the same object as in its package.
DOCUMENTED = {
    "finetune_kit.graders": [
        "CompiledGrader",
        "GraderModel",
        "GraderRunResult",
        "GraderValidationError",
        "OpenAIGraderModel",
        "compile_grader",
        "run_grader",
        "validate_grader",
    ],
}


def test_documented_names_are_exported_from_the_top() -> None:
    import importlib

    for package, names in DOCUMENTED.items():
        module = importlib.import_module(package)
        for name in names:
            assert name in finetune_kit.__all__, name
            assert getattr(finetune_kit, name) is getattr(module, name), name


def test_a_grader_validation_error_is_a_configuration_error_of_the_one_tree() -> None:
    from finetune_kit.errors import ConfigurationError, GraderValidationError

    assert finetune_kit.GraderValidationError is GraderValidationError
    assert issubclass(GraderValidationError, ConfigurationError)
    assert GraderValidationError.__module__ == "finetune_kit"
