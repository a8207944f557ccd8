"""Root pytest configuration: doctests of exported classes are collected where they are defined.

Every exported object's ``__module__`` is ``finetune_kit`` from the moment its module has run
(``finetune_kit._lazy.claim_exports``). doctest keeps a class's docstring examples only when
``__module__`` names the module being collected, so it would skip every exported class's
examples; it is told the defining module instead (``finetune_kit._lazy.defined_in``).
"""

from __future__ import annotations

import doctest
from typing import Any

from finetune_kit._lazy import defined_in

_from_module = doctest.DocTestFinder._from_module  # type: ignore[attr-defined]  # private, stable since 2.4


def _from_defining_module(self: doctest.DocTestFinder, module: Any, obj: Any) -> bool:
    home = defined_in(obj)
    if home is not None:
        return bool(home == module.__name__)
    return bool(_from_module(self, module, obj))


doctest.DocTestFinder._from_module = _from_defining_module  # type: ignore[attr-defined]  # see above
