r"""How the package's names and module paths resolve: exports, renamed names, moved modules.

Lazy exports and one export table for the package; what was renamed or moved stays importable
for one release, with a ``DeprecationWarning``.

- :func:`lazy_exports`: a package's public names are imported from their modules on first use.
  ``import finetune_kit`` (and every ``import finetune_kit.<submodule>``, which runs the package's
  ``__init__`` first) then costs only what it uses: preflight's worker processes do not load the
  ``openai`` client, and nothing loads torch until the local backend is asked for.
- :func:`read_export_table`: the top-level package keeps its exports in one place, the imports of
  its ``if TYPE_CHECKING:`` block. Type checkers read those imports; at run time the same block
  is read with ``ast``, and ``__all__`` and the lazy loader are built from it.
- :func:`claim_exports`: every exported object's ``__module__`` becomes the package's
  (``finetune_kit.JobFailedError`` in a traceback, as httpx does) right after the module that
  defines it is imported, whatever the order: a post-import step on our modules' loaders.
- :func:`renamed_names`: a module's ``__getattr__`` that still serves a renamed name for one
  release, with a ``DeprecationWarning`` naming the new one.
- :data:`MOVED_MODULES` and :func:`install_moved_modules`: one table of module paths that moved
  (old dotted path -> new) and one import hook for all of them. Importing an old path imports
  the new module, warns once naming the new path (pointing at the line that imported it), and
  registers the new module under the old name too: both names give the very same module object,
  so a class is one class (``isinstance`` and ``except`` keep working) and module state is never
  duplicated. A submodule of a moved package follows its package (``a.b.c`` moved with
  ``a.b``) unless the table names it. The hook is a ``sys.meta_path`` finder put first, before
  the path finder (a moved package's submodules are still files on disk, which the path finder
  would load a second time under the old name); ``finetune_kit/__init__.py`` installs it, and
  every import of a ``finetune_kit`` module runs that first. A module that became a package of
  the same name (``finetune_kit.jobs``) is not in the table: the package keeps its names.

The finders and loaders here are classes by their methods, as the import system asks:
``importlib.abc`` is not imported, since it pulls in ``importlib.resources`` (12 ms at every
import of the package).

Examples:
    >>> table = read_export_table("from .a import X as X\nimport typing\n", "pkg")
    >>> table
    {}
    >>> source = "if TYPE_CHECKING:\n    from .a.b import X as X\n    from .c import Y as Y\n"
    >>> read_export_table(source, "pkg")
    {'X': 'pkg.a.b', 'Y': 'pkg.c'}
    >>> finder = MovedModuleFinder({"old.place": "json"})
    >>> finder.new_name("old.place"), finder.new_name("old.place.decoder")
    ('json', 'json.decoder')
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import importlib.abc  # types only (see the module's docstring)

__all__ = [
    "MOVED_MODULES",
    "ExportClaimer",
    "MovedModuleFinder",
    "claim_exports",
    "defined_in",
    "export_table",
    "install_moved_modules",
    "lazy_exports",
    "read_export_table",
    "renamed_names",
    "serve_lazily",
]


MOVED_MODULES: Mapping[str, str] = {
    # data/: the table of OpenAI's base models; the builders in one folder
    "finetune_kit.data.builders_builtin": "finetune_kit.data.builders.builtin",
    "finetune_kit.data.builders_rows": "finetune_kit.data.builders.rows",
    "finetune_kit.data.builders_template": "finetune_kit.data.builders.template",
    "finetune_kit.data.models": "finetune_kit.data.base_models",
    # files/ (finetune_kit.files itself is now the package, with the same names)
    "finetune_kit._upload_parts": "finetune_kit.files.parts",
    # jobs/ (finetune_kit.jobs itself is now the package, with the same names)
    "finetune_kit._watch": "finetune_kit.jobs.following",
    "finetune_kit.job_options": "finetune_kit.jobs.options",
    "finetune_kit.lifecycle": "finetune_kit.jobs.lifecycle",
    "finetune_kit.methods": "finetune_kit.jobs.methods",
    "finetune_kit.metrics": "finetune_kit.jobs.metrics",
    "finetune_kit.views": "finetune_kit.jobs.views",
    "finetune_kit.watcher": "finetune_kit.jobs.watcher",
    # inference/ (finetune_kit.inference itself is now the package, with the same names); the
    # scorers' names are in two modules now (ModelJudge in inference.judge): the package has all
    "finetune_kit._render": "finetune_kit.inference._render",
    "finetune_kit.evaluation": "finetune_kit.inference.evaluation",
    "finetune_kit.replies": "finetune_kit.inference.replies",
    "finetune_kit.scorers": "finetune_kit.inference",
    # azure/ (finetune_kit.azure itself is now the package, with the same names)
    "finetune_kit.azure_deploy": "finetune_kit.azure.deployer",
    "finetune_kit.azure_deployment": "finetune_kit.azure.deployments",
    # session/ (finetune_kit.session itself is now the package, with the same names)
    "finetune_kit.backend_tokenizer": "finetune_kit.session.backend_tokenizer",
    "finetune_kit.state": "finetune_kit.session.state",
    # local/engine/ (finetune_kit.local.engine itself is now the package, with the same names)
    "finetune_kit.local._quiet": "finetune_kit.local.engine._quiet",
    "finetune_kit.local.batch_decoding": "finetune_kit.local.engine.batch_decoding",
    "finetune_kit.local.chat_format": "finetune_kit.local.engine.chat_format",
    "finetune_kit.local.generation": "finetune_kit.local.engine.generation",
    "finetune_kit.local.packed_attention": "finetune_kit.local.engine.packed_attention",
    "finetune_kit.local.precision": "finetune_kit.local.engine.precision",
    "finetune_kit.local.registry": "finetune_kit.local.engine.registry",
    "finetune_kit.local.tiny_model": "finetune_kit.local.engine.tiny_model",
    "finetune_kit.local.tool_parsing": "finetune_kit.local.engine.tool_parsing",
    "finetune_kit.local.training": "finetune_kit.local.engine.training",
    "finetune_kit.local.training_data": "finetune_kit.local.engine.training_data",
    "finetune_kit.local.training_objectives": "finetune_kit.local.engine.objectives",
    "finetune_kit.local.training_types": "finetune_kit.local.engine.types",
    "finetune_kit.local.transformers_compat": "finetune_kit.local.engine.transformers_compat",
    # local/faults/
    "finetune_kit.local.fault_middleware": "finetune_kit.local.faults.middleware",
    "finetune_kit.local.faults_remote": "finetune_kit.local.faults.remote",
    # local/store/
    "finetune_kit.local.data_dir_lock": "finetune_kit.local.store.lock",
    "finetune_kit.local.ids": "finetune_kit.local.store.ids",
    "finetune_kit.local.store.models": "finetune_kit.local.store.tuned_models",
    # local/worker/ (finetune_kit.local.worker itself is now the package, with the same names)
    "finetune_kit.local.job_runner": "finetune_kit.local.worker.runner",
    "finetune_kit.local.worker_pool": "finetune_kit.local.worker.pool",
    # local/server/ (finetune_kit.local.server itself is now the package, with the same names)
    "finetune_kit.local.access_log": "finetune_kit.local.server.access_log",
    "finetune_kit.local.app": "finetune_kit.local.server.app",
    "finetune_kit.local.catalog": "finetune_kit.local.server.catalog",
    "finetune_kit.local.chat_service": "finetune_kit.local.server.chat_service",
    "finetune_kit.local.context": "finetune_kit.local.server.context",
    "finetune_kit.local.exposure": "finetune_kit.local.server.exposure",
    "finetune_kit.local.middleware": "finetune_kit.local.server.middleware",
    "finetune_kit.local.routes": "finetune_kit.local.server.routes",
    "finetune_kit.local.routes.faults_admin": "finetune_kit.local.server.routes.faults",
    "finetune_kit.local.validation": "finetune_kit.local.server.validator",
    "finetune_kit.local.validator": "finetune_kit.local.server.validator",
}
"""Old dotted path -> new dotted path, for every module of the package that moved."""


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any], *, rename: bool = True
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a package's ``__getattr__`` and ``__dir__`` for names living in its submodules.

    On first access a name is imported from its module and cached in the package's namespace;
    with ``rename``, its ``__module__`` is set to the package, so reprs and tracebacks read
    ``finetune_kit.Dataset``, not the private module (the top-level package does that at import
    instead, with :func:`claim_exports`, so the name does not depend on the access order).

    Args:
        package: The package's name (``__name__``).
        exports: Public name -> the absolute module it lives in.
        namespace: The package's ``globals()``.
        rename: Give the objects the package's name on first access.

    Returns:
        The ``__getattr__`` and ``__dir__`` functions to assign in the package.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        if rename and getattr(value, "__module__", "").startswith(f"{package}."):
            value.__module__ = package
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_


def export_table(package: str) -> dict[str, str]:
    """Read an imported package's export table from its own source (see :func:`read_export_table`).

    Args:
        package: The package's name; its ``__init__`` is running or has run.

    Returns:
        Public name -> the absolute module that defines it.
    """
    module = sys.modules[package]
    loader = getattr(module.__spec__, "loader", None)
    get_source = getattr(loader, "get_source", None)
    source = get_source(package) if get_source is not None else None
    if source is None:  # no source loader: read the file itself
        with open(module.__file__ or "", encoding="utf-8") as handle:
            source = handle.read()
    return read_export_table(source, package)


def serve_lazily(package: str, exports: Mapping[str, str]) -> None:
    """Give an imported package a ``__getattr__`` and ``__dir__`` serving ``exports`` lazily.

    They are set on the module object, not written in its source: a module-level
    ``__getattr__`` that type checkers see would make every misspelt name type-check.

    Args:
        package: The package's name; its ``__init__`` is running.
        exports: Public name -> the module that defines it (:func:`export_table`).
    """
    module = sys.modules[package]
    getattr_, dir_ = lazy_exports(package, exports, module.__dict__, rename=False)
    module.__getattr__ = getattr_  # type: ignore[method-assign]  # PEP 562: looked up on the module
    module.__dir__ = dir_  # type: ignore[method-assign]  # likewise


def read_export_table(source: str, package: str) -> dict[str, str]:
    """Read a package's export table: the ``from ... import X as X`` of its type-checking block.

    Only the module's top-level ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``) block
    is read, and in it only ``from`` imports, relative ones resolved against ``package``.

    Args:
        source: The package's ``__init__`` source.
        package: The package's name, for relative imports.

    Returns:
        Public name -> the absolute module it is imported from, in the block's order.
    """
    table: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for statement in node.body:
            if not isinstance(statement, ast.ImportFrom):
                continue
            module = statement.module or ""
            if statement.level:
                base = package.split(".")
                base = base[: len(base) - statement.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in statement.names:
                table[alias.asname or alias.name] = module
    return table


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


_DEFINED_IN: dict[Any, str] = {}
"""Exported object -> the module that defines it, for objects whose ``__module__`` was claimed."""


def defined_in(obj: Any) -> str | None:
    """The module that really defines an exported object whose ``__module__`` was claimed.

    ``__module__`` then names the package (``finetune_kit``); tools that need the defining
    module, such as the doctest collection in ``conftest.py``, ask here.

    Args:
        obj: Any object.

    Returns:
        The defining module's name, or ``None`` when ``obj`` was not claimed.
    """
    try:
        return _DEFINED_IN.get(obj)
    except TypeError:  # an unhashable object was never claimed
        return None


def _claim(module: types.ModuleType, names: Sequence[str], package: str) -> None:
    """Give the objects ``module`` defines under ``names`` the package's name."""
    for name in names:
        value = module.__dict__.get(name)
        # Only what this module defines: a name it imported is claimed where it is defined.
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if isinstance(value, type) or callable(value):
            _DEFINED_IN[value] = module.__name__
            value.__module__ = package


class _ClaimingLoader:
    """Runs a module's own loader, then claims its exported objects for the package.

    A loader by its methods, as the import system asks (``importlib.abc.Loader`` is not
    subclassed: importing it costs more than the rest of the package's import).
    """

    def __init__(self, loader: importlib.abc.Loader, claim: Callable[[types.ModuleType], None]):
        self.loader = loader
        self.claim = claim

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        # The module keeps its real loader (inspect, importlib.resources and reload ask it).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.claim(module)


class ExportClaimer:
    """A ``sys.meta_path`` finder that claims exported objects as their modules are imported.

    A finder by its method, as :class:`_ClaimingLoader` is a loader. It finds nothing itself:
    for a module that defines exports, it asks the finders after it for the spec and wraps its
    loader, so that once the module has run, each exported object it defines gets the package
    as ``__module__``.

    Args:
        package: The package whose name the objects take.
        exports: Public name -> the module that defines it.
    """

    def __init__(self, package: str, exports: Mapping[str, str]) -> None:
        self.package = package
        self.names: dict[str, list[str]] = {}
        for name, module in exports.items():
            self.names.setdefault(module, []).append(name)

    def claim(self, module: types.ModuleType) -> None:
        """Claim the exported objects ``module`` defines."""
        _claim(module, self.names.get(module.__name__, ()), self.package)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return the spec the other finders give, its loader wrapped to claim the exports."""
        if fullname not in self.names:
            return None
        spec: ModuleSpec | None = None
        finders = sys.meta_path
        after = finders[finders.index(self) + 1 :] if self in finders else finders
        for finder in after:
            find = getattr(finder, "find_spec", None)
            if find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        if spec is not None and spec.loader is not None:
            spec.loader = cast("importlib.abc.Loader", _ClaimingLoader(spec.loader, self.claim))
        return spec


def claim_exports(package: str, exports: Mapping[str, str]) -> ExportClaimer:
    """Give every exported object the package's ``__module__`` as soon as it is defined.

    Installs an :class:`ExportClaimer` first in ``sys.meta_path`` (once per package) and
    claims at once the objects of the modules already imported.

    Args:
        package: The package's name.
        exports: Public name -> the module that defines it.

    Returns:
        The installed finder.
    """
    for finder in sys.meta_path:
        if isinstance(finder, ExportClaimer) and finder.package == package:
            claimer = finder
            break
    else:
        claimer = ExportClaimer(package, exports)
        sys.meta_path.insert(0, claimer)
    for module_name in claimer.names:
        module = sys.modules.get(module_name)
        if module is not None:
            claimer.claim(module)
    return claimer


def renamed_names(module: str, renamed: Mapping[str, str]) -> Callable[[str], Any]:
    """Build a module ``__getattr__`` serving renamed names for one release, with a warning.

    Define it under ``if not TYPE_CHECKING:`` so type checkers see only the new names.

    Args:
        module: The module's name (``__name__``).
        renamed: Old name -> new name, both in that module.

    Returns:
        The ``__getattr__`` to assign in the module.

    Examples:
        >>> import warnings
        >>> getattr_ = renamed_names("json", {"loadz": "loads"})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     getattr_("loadz").__name__
        'loads'
        >>> str(caught[0].message)
        'json.loadz is now json.loads; the old name goes in the next release.'
    """

    def getattr_(name: str) -> Any:
        new = renamed.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is now {module}.{new}; the old name goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(sys.modules[module], new)

    return getattr_


# Frames skipped so the warning names the line that imported the old path (and "default" filters
# show it once per importing line): this module's and importlib's own (import_module).
_MACHINERY = (__file__, os.path.dirname(importlib.__file__))


class MovedModuleFinder:
    """A ``sys.meta_path`` finder that serves old module paths from their new homes.

    A finder by its method (``importlib.abc`` is not imported: it costs more than the rest of
    the package's import), as :class:`_AliasLoader` is a loader.

    Args:
        moved: Old dotted path -> new dotted path.

    Example:
        >>> MovedModuleFinder({"a.b": "c.d"}).new_name("a.b.e")
        'c.d.e'
    """

    def __init__(self, moved: Mapping[str, str]) -> None:
        self.moved = dict(moved)

    def new_name(self, fullname: str) -> str | None:
        """Return where ``fullname`` lives now, or ``None`` when it did not move.

        Args:
            fullname: A dotted module path.

        Returns:
            The new dotted path: the table's entry, else its moved package's new path plus the
            rest of the name.
        """
        head = fullname
        while head:
            if head in self.moved:
                return self.moved[head] + fullname[len(head) :]
            head = head.rpartition(".")[0]
        return None

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return a spec that loads the new module for a moved path, else ``None``."""
        new = self.new_name(fullname)
        if new is None:
            return None
        return ModuleSpec(fullname, cast("importlib.abc.Loader", _AliasLoader(new)))


class _AliasLoader:
    """Gives the already-imported new module for an old name, with a ``DeprecationWarning``."""

    def __init__(self, new: str) -> None:
        self.new = new
        self._spec: ModuleSpec | None = None

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there (the old path goes in "
            "the next release).",
            DeprecationWarning,
            stacklevel=_importer_level(),
        )
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system has just set the module's __spec__ to the old name's spec; the module
        # keeps its own (reloading it, or pickling what it defines, goes by the real name).
        module.__spec__ = self._spec


def _importer_level() -> int:
    """Return the ``stacklevel`` of the first frame outside the import machinery."""
    level = 1
    frame = sys._getframe(1)  # create_module, seen from here
    while frame.f_back is not None and _is_machinery(frame.f_code.co_filename):
        frame = frame.f_back
        # warnings.warn does not count the import system's frozen frames: neither do we.
        if not _is_bootstrap(frame.f_code.co_filename):
            level += 1
    return level


def _is_bootstrap(filename: str) -> bool:
    # The test warnings.warn itself applies to skip the import system's frames.
    return "importlib" in filename and "_bootstrap" in filename


def _is_machinery(filename: str) -> bool:
    return _is_bootstrap(filename) or filename.startswith(_MACHINERY)


def install_moved_modules(moved: Mapping[str, str] = MOVED_MODULES) -> MovedModuleFinder:
    """Put a finder for ``moved`` first in ``sys.meta_path`` (once: a second call reuses it).

    Args:
        moved: Old dotted path -> new dotted path.

    Returns:
        The installed finder.
    """
    wanted = dict(moved)
    for finder in sys.meta_path:
        if isinstance(finder, MovedModuleFinder) and finder.moved == wanted:
            return finder
    finder = MovedModuleFinder(wanted)
    sys.meta_path.insert(0, finder)
    return finder
