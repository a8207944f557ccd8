"""Import paths that moved, kept importable for one release with a ``DeprecationWarning``.

One table (``MOVED_MODULES``: old dotted path -> new) and one import hook serve every moved
module of the package: importing an old path imports the new module, warns once naming the new
path (pointing at the line that imported it), and registers the new module under the old name
too. Both names then give the very same module object, so a class is one class (``isinstance``
and ``except`` keep working) and module state is never duplicated. A submodule of a moved
package follows its package (``a.b.c`` moved with ``a.b``), unless the table names it.

The hook is a ``sys.meta_path`` finder put first, before the path finder: a moved package's
submodules are still files on disk, and the path finder would otherwise load them a second time
under the old name. ``finetune_kit/__init__.py`` installs it, and every import of a
``finetune_kit`` module runs that first, so an old path never misses it.

A module that became a package of the same name (``finetune_kit.jobs``) is not in the table:
the package keeps the old module's public names. A renamed name inside a module is served by
:func:`finetune_kit._lazy.renamed_names`.

Example:
    >>> finder = MovedModuleFinder({"old.place": "json"})
    >>> finder.new_name("old.place"), finder.new_name("old.place.decoder")
    ('json', 'json.decoder')
    >>> finder.new_name("elsewhere") is None
    True
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    # Types only: importlib.abc pulls in importlib.resources (12 ms at every import).
    import importlib.abc

__all__ = ["MOVED_MODULES", "MovedModuleFinder", "install"]

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
}
"""Old dotted path -> new dotted path, for every module of the package that moved."""

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
