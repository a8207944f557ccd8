"""Import paths that moved, kept importable for one release with a ``DeprecationWarning``.

One table (``MOVED_MODULES``: old dotted path -> new) and one import hook serve every moved
module: importing an old path imports the new module, warns once naming the new path, and
registers the new module under the old name too. Both names then give the very same module
object, so a class is one class (``isinstance`` and ``except`` keep working) and module state is
never duplicated. A submodule of a moved package follows its package (``a.b.c`` moved with
``a.b``), unless the table names it.

The hook is a ``sys.meta_path`` finder put first, before the path finder: a moved package's
submodules are still files on disk, and the path finder would otherwise load them a second time
under the old name.

Example:
    >>> finder = MovedModuleFinder({"old.place": "json"})
    >>> finder.new_name("old.place"), finder.new_name("old.place.decoder")
    ('json', 'json.decoder')
    >>> finder.new_name("elsewhere") is None
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Mapping, Sequence

__all__ = ["MOVED_MODULES", "MovedModuleFinder", "install"]

MOVED_MODULES: Mapping[str, str] = {
    # engine/ (finetune_kit.local.engine itself is now the package, with the same names)
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
    # faults/
    "finetune_kit.local.fault_middleware": "finetune_kit.local.faults.middleware",
    "finetune_kit.local.faults_remote": "finetune_kit.local.faults.remote",
    # store/
    "finetune_kit.local.data_dir_lock": "finetune_kit.local.store.lock",
    "finetune_kit.local.ids": "finetune_kit.local.store.ids",
    "finetune_kit.local.store.models": "finetune_kit.local.store.tuned_models",
    # worker/ (finetune_kit.local.worker itself is now the package, with the same names)
    "finetune_kit.local.job_runner": "finetune_kit.local.worker.runner",
    "finetune_kit.local.worker_pool": "finetune_kit.local.worker.pool",
    # server/ (finetune_kit.local.server itself is now the package, with the same names)
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
"""Old dotted path -> new dotted path, for every module of the local backend that moved."""

# Frames skipped so the warning names the line that imported the old path (and "default" filters
# show it once per importing line): this module's and importlib's own (import_module).
_MACHINERY = (__file__, os.path.dirname(importlib.__file__))


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that serves old module paths from their new homes.

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
    ) -> importlib.machinery.ModuleSpec | None:
        """Return a spec that loads the new module for a moved path, else ``None``."""
        new = self.new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


class _AliasLoader(importlib.abc.Loader):
    """Gives the already-imported new module for an old name, with a ``DeprecationWarning``."""

    def __init__(self, new: str) -> None:
        self.new = new
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
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


def install(moved: Mapping[str, str] = MOVED_MODULES) -> MovedModuleFinder:
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
