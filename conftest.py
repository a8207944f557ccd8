"""Root pytest configuration, for the tests and the package's doctests alike.

- Doctests of exported classes are collected where they are defined. Every exported object's
  ``__module__`` is ``finetune_kit`` from the moment its module has run
  (``finetune_kit._lazy.claim_exports``). doctest keeps a class's docstring examples only when
  ``__module__`` names the module being collected, so it would skip every exported class's
  examples; it is told the defining module instead (``finetune_kit._lazy.defined_in``).
- An old top-level module path a test imported (``finetune_kit.metrics``, kept for one release)
  is forgotten after the test: importing it binds it on ``finetune_kit`` too, where the next
  test would see a name that is not the package's own. (Deeper old paths stay, as in a program:
  the tests of a moved package's submodules rely on the package's alias being there.)
"""

from __future__ import annotations

import doctest
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from finetune_kit._lazy import MOVED_MODULES, defined_in

_from_module = doctest.DocTestFinder._from_module  # type: ignore[attr-defined]  # private, stable since 2.4


def _from_defining_module(self: doctest.DocTestFinder, module: Any, obj: Any) -> bool:
    home = defined_in(obj)
    if home is not None:
        return bool(home == module.__name__)
    return bool(_from_module(self, module, obj))


doctest.DocTestFinder._from_module = _from_defining_module  # type: ignore[attr-defined]  # see above


@pytest.fixture(autouse=True)
def _forget_old_module_paths() -> Iterator[None]:
    yield
    package = sys.modules["finetune_kit"]
    for old in MOVED_MODULES:
        parent, _, child = old.rpartition(".")
        if parent != "finetune_kit":
            continue
        module = sys.modules.pop(old, None)
        if module is not None and vars(package).get(child) is module:
            delattr(package, child)
